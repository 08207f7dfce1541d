//! Our own binary formats, read back from storage or a backup repository:
//! the catalog dump of a snapshot, the hot pack trailer, and a backup
//! pack's tail and (opened) index.

#![no_main]

use fulcrum_backup::{pack_tail, parse_pack_index};
use fulcrum_catalog::snapshot::Dump;
use fulcrum_store::pack::parse_trailer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Dump::parse(data);
    let _ = parse_trailer("fuzz", data);
    if let Ok((start, index)) = pack_tail("fuzz", data) {
        let _ = parse_pack_index("fuzz", index, start as u64);
    }
    let _ = parse_pack_index("fuzz", data, data.len() as u64);
});
