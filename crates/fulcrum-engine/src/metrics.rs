//! Prometheus metrics of the engine and the protocols on it: requests,
//! bytes in and out, commit latency and batch sizes, corrupt chunks,
//! recalls from the archive tier and what tier moves wrote there. Rendered in the text exposition format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub protocol: String,
    pub op: String,
    pub status: String,
}

/// All counters and histograms of one process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    /// Plaintext bytes of the chunks reads decoded and verified: above
    /// `bytes_out` when reads need small parts of large chunks.
    pub chunk_bytes_read: Counter,
    /// Chunks reads found in the read cache, and those they decoded.
    pub read_cache_hits: Counter,
    pub read_cache_misses: Counter,
    pub chunks_new: Counter,
    pub chunks_deduplicated: Counter,
    pub corrupt_chunks: Counter,
    pub packs_written: Counter,
    pub commit_seconds: Histogram,
    pub commit_batch_writes: Histogram,
    pub archive_recalls: Counter,
    pub archive_recalled_bytes: Counter,
    pub archive_promotions: Counter,
    pub archived_bytes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("fulcrum");
        let requests = Family::<RequestLabels, Counter>::default();
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        let chunk_bytes_read = Counter::default();
        let read_cache_hits = Counter::default();
        let read_cache_misses = Counter::default();
        let chunks_new = Counter::default();
        let chunks_deduplicated = Counter::default();
        let corrupt_chunks = Counter::default();
        let packs_written = Counter::default();
        let commit_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        let commit_batch_writes = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        let archive_recalls = Counter::default();
        let archive_recalled_bytes = Counter::default();
        let archive_promotions = Counter::default();
        let archived_bytes = Counter::default();
        registry.register(
            "archive_recalls",
            "Object reads served (in part) from the archive tier",
            archive_recalls.clone(),
        );
        registry.register(
            "archive_recalled_bytes",
            "Stored bytes read from the archive tier's backend",
            archive_recalled_bytes.clone(),
        );
        registry.register(
            "archive_promotions",
            "Objects moved back to the hot tier after a read",
            archive_promotions.clone(),
        );
        registry.register(
            "archived_bytes",
            "Pack bytes written to the archive tier by tier moves",
            archived_bytes.clone(),
        );
        registry.register(
            "requests",
            "Requests handled, by protocol, operation and status",
            requests.clone(),
        );
        registry.register(
            "bytes_in",
            "Body bytes received from clients",
            bytes_in.clone(),
        );
        registry.register("bytes_out", "Body bytes sent to clients", bytes_out.clone());
        registry.register(
            "read_cache_hits",
            "Chunks reads took from the read cache",
            read_cache_hits.clone(),
        );
        registry.register(
            "read_cache_misses",
            "Chunks reads decoded from packs while the read cache was on",
            read_cache_misses.clone(),
        );
        registry.register(
            "chunk_bytes_read",
            "Plaintext bytes of chunks decoded and verified by reads",
            chunk_bytes_read.clone(),
        );
        registry.register(
            "chunks_new",
            "Chunks stored because no copy existed",
            chunks_new.clone(),
        );
        registry.register(
            "chunks_deduplicated",
            "Chunks not stored because a copy existed",
            chunks_deduplicated.clone(),
        );
        registry.register(
            "corrupt_chunks",
            "Chunks whose hash did not verify on read",
            corrupt_chunks.clone(),
        );
        registry.register(
            "packs_written",
            "Pack files written durably",
            packs_written.clone(),
        );
        registry.register(
            "commit_seconds",
            "Group commit latency (pack flush and catalog transaction)",
            commit_seconds.clone(),
        );
        registry.register(
            "commit_batch_writes",
            "Writes acknowledged per group commit",
            commit_batch_writes.clone(),
        );
        Self {
            registry,
            requests,
            bytes_in,
            bytes_out,
            chunk_bytes_read,
            read_cache_hits,
            read_cache_misses,
            chunks_new,
            chunks_deduplicated,
            corrupt_chunks,
            packs_written,
            commit_seconds,
            commit_batch_writes,
            archive_recalls,
            archive_recalled_bytes,
            archive_promotions,
            archived_bytes,
        }
    }
}

impl Metrics {
    pub fn request(&self, protocol: &str, op: &str, status: &str) {
        self.requests
            .get_or_create(&RequestLabels {
                protocol: protocol.to_string(),
                op: op.to_string(),
                status: status.to_string(),
            })
            .inc();
    }

    /// The metrics in Prometheus text format, followed by `gauges`
    /// computed at scrape time.
    pub fn render(&self, gauges: &[Gauge]) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut out, &self.registry).is_err() {
            out.clear();
        }
        for g in gauges.iter().filter(|g| !g.samples.is_empty()) {
            let name = g.name;
            out.push_str(&format!(
                "# HELP fulcrum_{name} {}\n# TYPE fulcrum_{name} gauge\n",
                g.help
            ));
            for (labels, value) in &g.samples {
                match labels.as_str() {
                    "" => out.push_str(&format!("fulcrum_{name} {value}\n")),
                    l => out.push_str(&format!("fulcrum_{name}{{{l}}} {value}\n")),
                }
            }
        }
        out.push_str("# EOF\n");
        out
    }
}

/// A gauge computed at scrape time: `samples` are (labels as
/// `job="backup"`, or empty, and value).
pub struct Gauge {
    pub name: &'static str,
    pub help: &'static str,
    pub samples: Vec<(String, f64)>,
}

impl Gauge {
    /// A gauge with one unlabelled value.
    pub fn one(name: &'static str, help: &'static str, value: f64) -> Self {
        Self {
            name,
            help,
            samples: vec![(String::new(), value)],
        }
    }
}
