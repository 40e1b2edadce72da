//! A bounded in-memory cache of segment files fetched from the object store, least recently
//! used first out. Segment files are immutable, so an entry never goes stale.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::metrics::StorageMetrics;
use crate::Result;

struct CacheState {
    entries: HashMap<String, (Bytes, u64)>,
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
        Self {
            store,
            bytes_max,
            state: Arc::new(Mutex::new(CacheState { entries: HashMap::new(), bytes: 0, clock: 0 })),
            metrics,
        }
    }

    fn lookup(&self, key: &str) -> Option<Bytes> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.clock += 1;
        let clock = state.clock;
        state.entries.get_mut(key).map(|(bytes, used)| {
            *used = clock;
            bytes.clone()
        })
    }

    fn insert(&self, key: &str, bytes: Bytes) {
        let size = bytes.len() as u64;
        if size > self.bytes_max {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.entries.contains_key(key) {
            return;
        }
        while state.bytes + size > self.bytes_max {
            let Some(oldest) = state.entries.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((evicted, _)) = state.entries.remove(&oldest) {
                state.bytes -= evicted.len() as u64;
            }
        }
        state.clock += 1;
        let clock = state.clock;
        state.entries.insert(key.to_string(), (bytes, clock));
        state.bytes += size;
        self.metrics.cache_bytes.set(state.bytes);
    }

    /// The bytes of a segment object, from the cache or the store.
    pub async fn get(&self, key: &str) -> Result<Bytes> {
        if let Some(bytes) = self.lookup(key) {
            self.metrics.cache_hits.add(1);
            return Ok(bytes);
        }
        self.metrics.cache_misses.add(1);
        let bytes = self.store.get(&ObjectPath::from(key)).await?.bytes().await?;
        self.insert(key, bytes.clone());
        Ok(bytes)
    }

    /// Starts fetching a segment in the background if it is not cached (read-ahead).
    pub fn prefetch(&self, key: &str) {
        if self.lookup(key).is_some() {
            return;
        }
        let cache = self.clone();
        let key = key.to_string();
        tokio::spawn(async move {
            if let Err(error) = cache.get(&key).await {
                tracing::debug!(%key, %error, "segment read-ahead failed");
            }
        });
    }

    /// Records a segment just written, so the first read after sealing is a hit.
    pub fn put_written(&self, key: &str, bytes: Bytes) {
        self.insert(key, bytes);
    }

    /// Forgets a deleted segment.
    pub fn remove(&self, key: &str) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((bytes, _)) = state.entries.remove(key) {
            state.bytes -= bytes.len() as u64;
            self.metrics.cache_bytes.set(state.bytes);
        }
    }
}
