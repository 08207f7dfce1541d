//! The registry of writes in flight on this node: GC never deletes a chunk
//! condemned after the oldest of them started (see fulcrum-catalog's gc).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use fulcrum_catalog::now_ms;

#[derive(Debug, Default, Clone)]
pub struct Inflight {
    starts: Arc<Mutex<BTreeMap<i64, usize>>>,
}

/// Held for the whole life of one write; dropping it ends the write.
#[derive(Debug)]
pub struct InflightGuard {
    starts: Arc<Mutex<BTreeMap<i64, usize>>>,
    start: i64,
}

impl Inflight {
    pub fn begin(&self) -> InflightGuard {
        let start = now_ms();
        let mut m = self.starts.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(start).or_default() += 1;
        InflightGuard {
            starts: self.starts.clone(),
            start,
        }
    }

    /// When the oldest write in flight started, or now when there is none.
    pub fn oldest(&self) -> i64 {
        let m = self.starts.lock().unwrap_or_else(|p| p.into_inner());
        m.keys().next().copied().unwrap_or_else(now_ms)
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let mut m = self.starts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.start) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.start);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_tracks_live_guards() {
        let f = Inflight::default();
        let a = f.begin();
        std::thread::sleep(std::time::Duration::from_millis(3));
        let b = f.begin();
        assert_eq!(f.oldest(), a.start);
        drop(a);
        assert_eq!(f.oldest(), b.start);
        drop(b);
        assert!(f.oldest() >= now_ms() - 5);
    }
}
