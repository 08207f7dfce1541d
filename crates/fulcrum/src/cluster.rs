//! Settings every node of a cluster must share: the DICOM duplicate policy
//! and default character set. Nodes given different ones answered one
//! re-send 409 on one node and 200 on another, and indexed one study's
//! names in another character set than the others read them in. Each node
//! records its own beside its heartbeat and compares them with the other
//! live nodes' now and then, warning once of each difference.

use std::collections::{BTreeMap, HashSet};

use fulcrum::config::Settings;
use fulcrum_engine::Engine;
use tracing::warn;

/// How many heartbeats pass between two comparisons.
const EVERY: u32 = 5;

pub(crate) struct SettingsCheck {
    ours: String,
    recorded: bool,
    beats: u32,
    warned: HashSet<String>,
}

impl SettingsCheck {
    pub(crate) fn new(s: &Settings) -> Self {
        let ours = [
            ("dicom_duplicates", format!("{:?}", s.dicom.duplicates)),
            (
                "dicom_default_charset",
                s.dicom.default_charset.clone().unwrap_or_default(),
            ),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
        Self {
            ours,
            recorded: false,
            beats: 0,
            warned: HashSet::new(),
        }
    }

    /// Call after each heartbeat.
    pub(crate) async fn after_heartbeat(&mut self, engine: &Engine) {
        let me = &engine.config().node_id;
        if !self.recorded {
            match engine.catalog().set_node_settings(me, &self.ours).await {
                Ok(()) => self.recorded = true,
                Err(e) => warn!(error = %e, "recording this node's settings failed"),
            }
        }
        self.beats += 1;
        if self.beats % EVERY != 1 {
            return;
        }
        let Ok(nodes) = engine.catalog().live_node_settings().await else {
            return;
        };
        let ours = pairs(&self.ours);
        for (node, theirs) in nodes {
            let Some(theirs) = theirs.filter(|_| &node != me) else {
                continue;
            };
            for (key, value) in pairs(&theirs) {
                let mine = ours.get(key).copied().unwrap_or_default();
                if mine != value && self.warned.insert(format!("{node}/{key}={value}")) {
                    warn!(
                        other_node = %node,
                        setting = key,
                        this_node = mine,
                        that_node = value,
                        "nodes of this cluster run with different settings that must be the same on every node: give them all one value and restart them"
                    );
                }
            }
        }
    }
}

fn pairs(text: &str) -> BTreeMap<&str, &str> {
    text.lines().filter_map(|l| l.split_once('=')).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_text_reads_back_as_pairs() {
        let p = pairs("dicom_duplicates=Reject\ndicom_default_charset=\n");
        assert_eq!(p.get("dicom_duplicates"), Some(&"Reject"));
        assert_eq!(p.get("dicom_default_charset"), Some(&""));
    }
}
