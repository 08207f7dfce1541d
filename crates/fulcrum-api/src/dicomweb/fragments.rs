//! Parsed fragment tables of encapsulated Pixel Data, kept for the next
//! frame request. A whole-slide image has tens of thousands of frames, and
//! a viewer asks for its tiles one by one: parsing the instance's table
//! (JSON, one item per fragment) for each tile was most of the time of a
//! frame request (8 ms for 20,000 frames). Tables are keyed by the stored
//! object and its ETag, so a replaced instance is never served from an
//! old table; only large ones are kept, and at most `MAX_ITEMS` items.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex};

use fulcrum_dicom::InstanceRecord;

/// A fragment item (value offset, length) list, Basic Offset Table first,
/// and which items open a frame's codestream.
pub(crate) type Table = (Vec<(i64, u32)>, Vec<bool>);

/// Tables with fewer items parse in microseconds: not kept.
const MIN_ITEMS: usize = 256;
/// Items kept over all tables (about 17 bytes each).
const MAX_ITEMS: usize = 2_000_000;

type Key = (String, String);

#[derive(Default)]
struct Kept {
    tables: HashMap<Key, Arc<Table>>,
    /// Keys, oldest first.
    order: VecDeque<Key>,
    items: usize,
}

static KEPT: LazyLock<Mutex<Kept>> = LazyLock::new(Default::default);

/// `rec`'s table, kept or parsed by `parse` (and kept when large).
pub(crate) fn table(
    rec: &InstanceRecord,
    parse: fn(&InstanceRecord) -> Option<Table>,
) -> Option<Arc<Table>> {
    let key = (rec.object_key.clone(), rec.etag.clone());
    let lock = || KEPT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(t) = lock().tables.get(&key) {
        return Some(t.clone());
    }
    let t = Arc::new(parse(rec)?);
    let n = t.0.len();
    if (MIN_ITEMS..=MAX_ITEMS).contains(&n) {
        let mut k = lock();
        if k.tables.insert(key.clone(), t.clone()).is_none() {
            k.order.push_back(key);
            k.items += n;
        }
        while k.items > MAX_ITEMS {
            let Some(old) = k.order.pop_front() else {
                break;
            };
            if let Some(gone) = k.tables.remove(&old) {
                k.items -= gone.0.len();
            }
        }
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static PARSED: AtomicUsize = AtomicUsize::new(0);

    fn parse(rec: &InstanceRecord) -> Option<Table> {
        PARSED.fetch_add(1, Ordering::SeqCst);
        let n: usize = rec.fragments.as_deref()?.parse().ok()?;
        Some(((0..n as i64).map(|i| (i * 8, 8)).collect(), Vec::new()))
    }

    fn rec(key: &str, etag: &str, items: usize) -> InstanceRecord {
        InstanceRecord {
            object_key: key.into(),
            etag: etag.into(),
            fragments: Some(items.to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn large_tables_are_parsed_once_per_stored_object() {
        let big = rec("test-fragments/a", "e1", 20_000);
        let before = PARSED.load(Ordering::SeqCst);
        let first = table(&big, parse).expect("parsed");
        let again = table(&big, parse).expect("kept");
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(PARSED.load(Ordering::SeqCst) - before, 1);
        // The instance replaced by other bytes: another ETag, parsed anew.
        let replaced = rec("test-fragments/a", "e2", 30_000);
        assert_eq!(table(&replaced, parse).expect("parsed").0.len(), 30_000);
        // Small tables are parsed each time, not kept.
        let small = rec("test-fragments/b", "e1", 3);
        table(&small, parse);
        let before = PARSED.load(Ordering::SeqCst);
        table(&small, parse);
        assert_eq!(PARSED.load(Ordering::SeqCst) - before, 1);
    }
}
