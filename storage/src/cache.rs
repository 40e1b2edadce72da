//! A bounded in-memory cache of decoded segment columns, least recently used first out.
//!
//! Entries are keyed by segment object and column, so a query caches only the columns it reads
//! and a warm scan reads Arrow arrays straight from memory, with no decompression or decoding.
//! Segment files are immutable, so an entry never goes stale; a deleted segment's entries are
//! dropped by retention.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::ArrayRef;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::metrics::StorageMetrics;
use crate::segment::read_segment;
use crate::Result;

/// One column of a segment: an array per record batch of the file, in order.
pub type CachedColumn = Arc<Vec<ArrayRef>>;

struct Entry {
    column: CachedColumn,
    bytes: u64,
    used: u64,
}

#[derive(Default)]
struct CacheState {
    entries: HashMap<(String, usize), Entry>,
    bytes: u64,
    clock: u64,
}

/// The segment cache. Cheap to clone.
#[derive(Clone)]
pub(crate) struct SegmentCache {
    store: Arc<dyn ObjectStore>,
    bytes_max: u64,
    state: Arc<Mutex<CacheState>>,
    metrics: Arc<StorageMetrics>,
}

impl SegmentCache {
    pub fn new(store: Arc<dyn ObjectStore>, bytes_max: u64, metrics: Arc<StorageMetrics>) -> Self {
        Self { store, bytes_max, state: Arc::default(), metrics }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lookup(&self, key: &str, column: usize) -> Option<CachedColumn> {
        let mut state = self.lock();
        state.clock += 1;
        let clock = state.clock;
        state.entries.get_mut(&(key.to_string(), column)).map(|entry| {
            entry.used = clock;
            entry.column.clone()
        })
    }

    fn insert(&self, key: &str, column: usize, arrays: CachedColumn) {
        let size: u64 = arrays.iter().map(|a| a.get_array_memory_size() as u64).sum();
        if size > self.bytes_max {
            return;
        }
        let mut state = self.lock();
        if state.entries.contains_key(&(key.to_string(), column)) {
            return;
        }
        while state.bytes + size > self.bytes_max {
            let Some(oldest) = state.entries.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone()) else {
                break;
            };
            if let Some(evicted) = state.entries.remove(&oldest) {
                state.bytes -= evicted.bytes;
            }
        }
        state.clock += 1;
        let used = state.clock;
        state.entries.insert((key.to_string(), column), Entry { column: arrays, bytes: size, used });
        state.bytes += size;
        self.metrics.cache_bytes.set(state.bytes);
    }

    /// The given columns (indices into the segment file's schema) of a segment, from the cache
    /// or decoded from the object store. Returned in the order asked.
    pub async fn columns(&self, key: &str, columns: &[usize]) -> Result<Vec<CachedColumn>> {
        let mut found: Vec<Option<CachedColumn>> = columns.iter().map(|&c| self.lookup(key, c)).collect();
        let mut missing: Vec<usize> = columns.iter().zip(&found).filter(|(_, f)| f.is_none()).map(|(&c, _)| c).collect();
        if missing.is_empty() {
            self.metrics.cache_hits.add(1);
        } else {
            self.metrics.cache_misses.add(1);
            missing.sort_unstable();
            missing.dedup();
            let bytes = self.store.get(&ObjectPath::from(key)).await?.bytes().await?;
            let projection = missing.clone();
            let decoded = tokio::task::spawn_blocking(move || -> Result<Vec<Vec<ArrayRef>>> {
                let mut per_column: Vec<Vec<ArrayRef>> = vec![Vec::new(); projection.len()];
                for batch in read_segment(bytes, Some(projection))? {
                    let batch = batch?;
                    for (slot, array) in per_column.iter_mut().zip(batch.columns()) {
                        slot.push(array.clone());
                    }
                }
                Ok(per_column)
            })
            .await
            .map_err(|e| crate::StorageError::WalFailed(format!("segment decoder panicked: {e}")))??;
            for (column, arrays) in missing.iter().zip(decoded) {
                let arrays: CachedColumn = Arc::new(arrays);
                self.insert(key, *column, arrays.clone());
                for (slot, &wanted) in found.iter_mut().zip(columns) {
                    if wanted == *column && slot.is_none() {
                        *slot = Some(arrays.clone());
                    }
                }
            }
        }
        Ok(found.into_iter().map(|c| c.unwrap_or_default()).collect())
    }

    /// Starts decoding columns of a segment a reader will need next (read-ahead).
    pub fn prefetch(&self, key: &str, columns: &[usize]) {
        if columns.iter().all(|&c| self.lookup(key, c).is_some()) {
            return;
        }
        let cache = self.clone();
        let key = key.to_string();
        let columns = columns.to_vec();
        tokio::spawn(async move {
            if let Err(error) = cache.columns(&key, &columns).await {
                tracing::debug!(%key, %error, "segment read-ahead failed");
            }
        });
    }

    /// Forgets every column of a deleted segment.
    pub fn remove(&self, key: &str) {
        let mut state = self.lock();
        let doomed: Vec<(String, usize)> = state.entries.keys().filter(|(k, _)| k == key).cloned().collect();
        for entry in doomed {
            if let Some(removed) = state.entries.remove(&entry) {
                state.bytes -= removed.bytes;
            }
        }
        self.metrics.cache_bytes.set(state.bytes);
    }
}
