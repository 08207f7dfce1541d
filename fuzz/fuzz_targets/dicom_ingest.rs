//! The DICOM ingest path on arbitrary bytes: Part 10 prelude, element
//! scanner, header split and index extraction exactly as a STOW-RS part,
//! an import or an S3 upload of a DICOM file goes through them (with the
//! archive's header cap and with a tiny one, which cuts the header at the
//! last element boundary); the scanner fed in pieces must agree with the
//! scanner fed at once; and the DIMSE parsers of command sets and C-FIND /
//! C-MOVE / C-GET identifiers on the same bytes.

#![no_main]

use fulcrum_dicom::dimse::command::CommandSet;
use fulcrum_dicom::dimse::plan_identifier;
use fulcrum_dicom::part10::parse_prelude;
use fulcrum_dicom::scan::{Framing, Walker};
use fulcrum_dicom::{inspect_file, ArchiveConfig};
use libfuzzer_sys::fuzz_target;

const IMPLICIT_LE: &str = "1.2.840.10008.1.2";

fuzz_target!(|data: &[u8]| {
    let _ = inspect_file(data, ArchiveConfig::default().header_cap);
    let _ = inspect_file(data, 200);
    // The prelude as bytes arrive: a prefix either asks for more or is refused.
    for cut in [1, 64, 131, 132, 200, data.len() / 2] {
        if let Some(prefix) = data.get(..cut) {
            let _ = parse_prelude(prefix, false);
        }
    }
    let (dataset, ts) = match parse_prelude(data, true) {
        Ok(Some(p)) => (&data[p.len..], p.transfer_syntax),
        _ => (data, IMPLICIT_LE.to_string()),
    };
    if let Some(framing) = Framing::of(&ts) {
        same_in_pieces(dataset, framing, data.len() % 13 + 1);
    }
    let _ = CommandSet::decode(data);
    let _ = CommandSet::decode(dataset);
    let _ = plan_identifier(dataset, &ts, data.len() % 2 == 0);
});

/// Feeds the scanner all at once and in pieces of `piece` bytes: the
/// outcome, the Pixel Data found and the end-of-stream verdict must agree.
fn same_in_pieces(dataset: &[u8], framing: Framing, piece: usize) {
    let run = |piece: usize| {
        let mut w = Walker::new(framing);
        let fed = dataset.chunks(piece).try_for_each(|p| w.feed(p));
        let done = fed.is_ok().then(|| w.finish());
        (fed, done, w.pixel().cloned(), w.opaque_at())
    };
    let whole = run(dataset.len().max(1));
    let pieces = run(piece);
    assert_eq!(whole, pieces, "scanner differs in pieces of {piece}");
}
