//! Counters and histograms of the storage layer, rendered in Prometheus text format by the
//! binary. Lock-free: every update is one atomic add.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn increment(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn decrement(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A histogram of seconds with fixed buckets from 50 µs to 10 s.
#[derive(Debug)]
pub struct Histogram {
    buckets: Vec<(f64, AtomicU64)>,
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

const SECONDS_BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 10.0,
];

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: SECONDS_BUCKETS.iter().map(|&b| (b, AtomicU64::new(0))).collect(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        for (bound, count) in &self.buckets {
            if seconds <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in &self.buckets {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", count.load(Ordering::Relaxed));
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Everything the storage layer counts.
#[derive(Debug, Default)]
pub struct StorageMetrics {
    pub rows_appended: Counter,
    pub bytes_appended: Counter,
    pub wal_bytes_written: Counter,
    pub wal_group_commits: Counter,
    pub wal_fsync_seconds: Histogram,
    pub wal_writes_refused_disk_full: Counter,
    pub seal_failures: Counter,
    pub segments_sealed: Counter,
    pub segment_bytes_uploaded: Counter,
    pub segments_deleted: Counter,
    pub segments_compacted: Counter,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub cache_bytes: Gauge,
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
}

impl StorageMetrics {
    /// Appends the Prometheus text form of every metric to `out`.
    pub fn render(&self, out: &mut String) {
        counter(out, "streamhouse_rows_appended_total", "Rows acknowledged into topics.", self.rows_appended.get());
        counter(out, "streamhouse_bytes_appended_total", "Arrow bytes acknowledged into topics.", self.bytes_appended.get());
        counter(out, "streamhouse_wal_bytes_written_total", "Bytes written to the WAL.", self.wal_bytes_written.get());
        counter(out, "streamhouse_wal_group_commits_total", "WAL fsyncs, each serving every waiting writer.", self.wal_group_commits.get());
        self.wal_fsync_seconds.render("streamhouse_wal_fsync_seconds", "Time to write and fsync one WAL group.", out);
        counter(out, "streamhouse_wal_writes_refused_disk_full_total", "Writes refused because the WAL's disk was full (none of them stored).", self.wal_writes_refused_disk_full.get());
        counter(out, "streamhouse_seal_failures_total", "Sealing passes that failed (object store or disk), each retried after a backoff.", self.seal_failures.get());
        counter(out, "streamhouse_segments_sealed_total", "Segments sealed, uploaded and registered.", self.segments_sealed.get());
        counter(out, "streamhouse_segment_bytes_uploaded_total", "Bytes of segments uploaded to the object store.", self.segment_bytes_uploaded.get());
        counter(out, "streamhouse_segments_deleted_total", "Segments deleted by retention.", self.segments_deleted.get());
        counter(out, "streamhouse_segments_compacted_total", "Keyed-table segments rewritten by compaction.", self.segments_compacted.get());
        counter(out, "streamhouse_segment_cache_hits_total", "Segment reads served by the cache.", self.cache_hits.get());
        counter(out, "streamhouse_segment_cache_misses_total", "Segment reads that went to the object store.", self.cache_misses.get());
        let _ = writeln!(out, "# HELP streamhouse_segment_cache_bytes Bytes held by the segment cache.\n# TYPE streamhouse_segment_cache_bytes gauge\nstreamhouse_segment_cache_bytes {}", self.cache_bytes.get());
    }
}
