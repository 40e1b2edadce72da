//! The node's cache of view reads: the rows of a view at one committed epoch, as the Arrow
//! batches a read of the state store produced, so that reading the view again before its next
//! commit costs no RocksDB scan.
//!
//! A view's stored results are a multiset of arrow-row keys in RocksDB (see [`super::state`]):
//! reading them back walks every key, merges its count operands and skips rows whose count fell
//! to zero, about 1.3 M rows/s here, which is most of what a client waits for when it reads a
//! large view whole (a 1 M-row view: 750 ms of the server's read against some 40 ms to send the
//! same rows over Flight). The rows of a committed epoch never change, and an epoch only commits
//! when the view's sources have new rows or its watermark moves, so a view that has not
//! committed since its last read can be answered from that read.
//!
//! Entries are keyed by view id and epoch: a lookup for an epoch other than the cached one
//! misses (and the next complete read replaces the entry), so a reader never sees rows of
//! another epoch than the progress it asked with. The cache holds at most its byte bound
//! (`view_read_cache_bytes`, the batches' Arrow memory), evicting the least recently used
//! views first; a read larger than the whole bound, or one its reader stopped early, is not
//! kept.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::record_batch::RecordBatch;

/// A view's rows at one epoch.
struct Entry {
    epoch: u64,
    batches: Arc<[RecordBatch]>,
    bytes: usize,
    /// When it was last read (a tick of the cache's clock).
    used: u64,
}

#[derive(Default)]
struct Entries {
    by_view: HashMap<u64, Entry>,
    bytes: usize,
    clock: u64,
}

/// Reads served from the cache and from the state store, and entries evicted.
#[derive(Debug, Default)]
pub struct ReadCacheCounters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub evictions: AtomicU64,
}

/// The node's cache of view reads, shared by every view.
pub struct ReadCache {
    bytes_max: usize,
    entries: Mutex<Entries>,
    pub counters: ReadCacheCounters,
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache").field("bytes_max", &self.bytes_max).field("bytes", &self.bytes()).finish()
    }
}

impl ReadCache {
    /// A cache of at most `bytes_max` bytes of batches (0: nothing is kept).
    pub fn new(bytes_max: usize) -> Self {
        Self { bytes_max, entries: Mutex::new(Entries::default()), counters: ReadCacheCounters::default() }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The largest read worth collecting: one that fits the whole cache.
    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.entries().bytes
    }

    /// View `view`'s rows at `epoch`, if a complete read of that epoch is held.
    pub fn get(&self, view: u64, epoch: u64) -> Option<Arc<[RecordBatch]>> {
        let mut entries = self.entries();
        entries.clock += 1;
        let now = entries.clock;
        let found = match entries.by_view.get_mut(&view) {
            Some(entry) if entry.epoch == epoch => {
                entry.used = now;
                Some(entry.batches.clone())
            }
            _ => None,
        };
        let counter = if found.is_some() { &self.counters.hits } else { &self.counters.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Keeps a complete read of view `view` at `epoch` (replacing what the view had), evicting
    /// the least recently read views until it fits. A read of an epoch older than the one held
    /// is dropped: a slow reader must not replace a newer read.
    pub fn put(&self, view: u64, epoch: u64, batches: Vec<RecordBatch>, bytes: usize) {
        if bytes > self.bytes_max {
            return;
        }
        let mut entries = self.entries();
        if let Some(held) = entries.by_view.get(&view) {
            if held.epoch > epoch {
                return;
            }
            let held = held.bytes;
            entries.bytes -= held;
            entries.by_view.remove(&view);
        }
        while entries.bytes + bytes > self.bytes_max {
            let Some((&oldest, _)) = entries.by_view.iter().min_by_key(|(_, entry)| entry.used) else { break };
            if let Some(evicted) = entries.by_view.remove(&oldest) {
                entries.bytes -= evicted.bytes;
                self.counters.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        entries.clock += 1;
        let used = entries.clock;
        entries.bytes += bytes;
        entries.by_view.insert(view, Entry { epoch, batches: batches.into(), bytes, used });
    }

    /// Forgets view `view` (dropped).
    pub fn remove(&self, view: u64) {
        let mut entries = self.entries();
        if let Some(entry) = entries.by_view.remove(&view) {
            entries.bytes -= entry.bytes;
        }
    }
}

/// Collects the batches of one read for the cache, until they pass its bound.
pub(crate) struct Collector {
    batches: Option<Vec<RecordBatch>>,
    bytes: usize,
    bytes_max: usize,
}

impl Collector {
    pub(crate) fn new(cache: &ReadCache) -> Self {
        let bytes_max = cache.bytes_max();
        Self { batches: (bytes_max > 0).then(Vec::new), bytes: 0, bytes_max }
    }

    /// Notes a batch the read produced.
    pub(crate) fn push(&mut self, batch: &RecordBatch) {
        if let Some(batches) = &mut self.batches {
            self.bytes += batch.get_array_memory_size();
            if self.bytes > self.bytes_max {
                self.batches = None;
            } else {
                batches.push(batch.clone());
            }
        }
    }

    /// Hands a complete read to the cache.
    pub(crate) fn finish(self, cache: &ReadCache, view: u64, epoch: u64) {
        if let Some(batches) = self.batches {
            cache.put(view, epoch, batches, self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    fn batch(values: &[i64]) -> RecordBatch {
        RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from(values.to_vec())) as _)]).unwrap()
    }

    fn values(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
            .collect()
    }

    #[test]
    fn a_read_is_served_only_for_its_epoch_and_the_least_recently_read_view_goes_first() {
        let size = batch(&[1, 2, 3]).get_array_memory_size();
        let cache = ReadCache::new(2 * size);
        cache.put(1, 5, vec![batch(&[1, 2, 3])], size);
        assert_eq!(values(&cache.get(1, 5).unwrap()), [1, 2, 3]);
        // Another epoch of the same view: a miss.
        assert!(cache.get(1, 6).is_none());
        cache.put(2, 1, vec![batch(&[4, 5, 6])], size);
        // Reading view 1 leaves view 2 the least recently read.
        assert!(cache.get(1, 5).is_some());
        // A third view evicts view 2, the least recently read.
        cache.put(3, 9, vec![batch(&[7, 8, 9])], size);
        assert!(cache.get(2, 1).is_none());
        assert_eq!(values(&cache.get(1, 5).unwrap()), [1, 2, 3]);
        assert_eq!(values(&cache.get(3, 9).unwrap()), [7, 8, 9]);
        assert_eq!(cache.bytes(), 2 * size);
        // A newer read of view 1 replaces its entry; an older one does not.
        cache.put(1, 7, vec![batch(&[10, 11, 12])], size);
        cache.put(1, 6, vec![batch(&[0, 0, 0])], size);
        assert!(cache.get(1, 6).is_none());
        assert_eq!(values(&cache.get(1, 7).unwrap()), [10, 11, 12]);
        assert_eq!(cache.bytes(), 2 * size);
        assert_eq!(cache.counters.evictions.load(Ordering::Relaxed), 1);
        cache.remove(1);
        assert!(cache.get(1, 7).is_none());
        assert_eq!(cache.bytes(), size);
    }

    #[test]
    fn reads_past_the_bound_are_not_kept() {
        let size = batch(&[1, 2, 3]).get_array_memory_size();
        let cache = ReadCache::new(size + size / 2);
        let mut collector = Collector::new(&cache);
        collector.push(&batch(&[1, 2, 3]));
        collector.push(&batch(&[4, 5, 6]));
        collector.finish(&cache, 1, 1);
        assert!(cache.get(1, 1).is_none());
        assert_eq!(cache.bytes(), 0);
        let mut collector = Collector::new(&cache);
        collector.push(&batch(&[1, 2, 3]));
        collector.finish(&cache, 1, 1);
        assert_eq!(values(&cache.get(1, 1).unwrap()), [1, 2, 3]);
        // A cache of no bytes keeps nothing.
        let off = ReadCache::new(0);
        let mut collector = Collector::new(&off);
        collector.push(&batch(&[1]));
        collector.finish(&off, 1, 1);
        assert!(off.get(1, 1).is_none());
    }
}
