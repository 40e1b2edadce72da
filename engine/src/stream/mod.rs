//! The streaming engine: materialized views kept up to date incrementally.
//!
//! [`plan`] turns a view's query into a pipeline of operators ([`changes`] for the stateless
//! ones, [`aggregate`] for GROUP BY, [`topn`] for top-N); [`window`] provides TUMBLE and HOP;
//! [`epoch`] runs each view's epoch loop; [`view`] holds a view and reads its committed
//! results; [`subscribe`] streams its changes; [`state`] is the RocksDB store that holds every
//! view's state, results, changelog and progress. [`Views`] is the registry the engine owns.

mod accumulator;
pub mod aggregate;
pub mod changelog;
pub mod changes;
pub(crate) mod ddl;
pub mod epoch;
pub mod keyed;
pub mod plan;
pub mod read_cache;
mod result_log;
pub mod session;
pub mod state;
pub mod subscribe;
pub mod topn;
mod touched;
pub mod view;
pub mod window;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use streamhouse_catalog::ViewMeta;

pub use state::StateStore;
pub use view::{EpochTiming, Progress, ViewHandle, ViewTableProvider};

use crate::Result;

/// Materialized views of this node.
pub struct Views {
    store: StateStore,
    views: RwLock<BTreeMap<String, Arc<ViewHandle>>>,
    /// Views whose definition could not be planned at start, with why (they can be dropped).
    broken: RwLock<BTreeMap<String, (ViewMeta, String)>>,
    /// Every view in the catalog, running or not, by id.
    metas: RwLock<BTreeMap<u64, ViewMeta>>,
    pub timing: EpochTiming,
    checkpoint_interval: Duration,
    /// Complete reads of views, kept until their next commit (see [`read_cache`]).
    read_cache: Arc<read_cache::ReadCache>,
}

impl std::fmt::Debug for Views {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Views").field("store", &self.store).finish()
    }
}

impl Views {
    /// Opens the state store under `dir` with a block cache of `block_cache_bytes`; views' reads
    /// are cached up to `read_cache_bytes`.
    pub fn open(dir: &Path, timing: EpochTiming, checkpoint_interval: Duration, block_cache_bytes: usize, read_cache_bytes: usize) -> Result<Self> {
        Ok(Self {
            read_cache: Arc::new(read_cache::ReadCache::new(read_cache_bytes)),
            store: StateStore::open(dir, block_cache_bytes)?,
            views: RwLock::new(BTreeMap::new()),
            broken: RwLock::new(BTreeMap::new()),
            metas: RwLock::new(BTreeMap::new()),
            timing,
            checkpoint_interval,
        })
    }

    pub(crate) fn read_cache(&self) -> &Arc<read_cache::ReadCache> {
        &self.read_cache
    }

    pub fn store(&self) -> &StateStore {
        &self.store
    }

    pub fn get(&self, name: &str) -> Option<Arc<ViewHandle>> {
        self.views.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Running views, by name.
    pub fn list(&self) -> Vec<Arc<ViewHandle>> {
        self.views.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Views that failed to start, with the reason.
    pub fn broken(&self) -> Vec<(ViewMeta, String)> {
        self.broken.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    pub(crate) fn insert_meta(&self, meta: ViewMeta) {
        self.metas.write().unwrap_or_else(|p| p.into_inner()).insert(meta.id, meta);
    }

    pub(crate) fn remove_meta(&self, id: u64) {
        self.metas.write().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    /// Every view in the catalog.
    pub(crate) fn metas(&self) -> Vec<ViewMeta> {
        self.metas.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// The oldest epoch of view `upstream`'s changelog that a view reading it has yet to read
    /// (`u64::MAX` if none needs any). A reader that is not running yet counts by its last
    /// committed progress, so starting views in any order trims nothing still needed.
    pub(crate) fn changes_needed(&self, upstream: u64) -> u64 {
        let readers: Vec<ViewMeta> = self
            .metas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|m| m.source_views.contains(&upstream))
            .cloned()
            .collect();
        let mut needed = u64::MAX;
        for reader in readers {
            let next = match self.get(&reader.name) {
                Some(handle) => handle.progress().offsets.first().copied().unwrap_or(0),
                None => match self.store.get(&state::meta_key(reader.id)) {
                    Ok(Some(bytes)) => view::decode_offsets(&bytes).first().copied().unwrap_or(0),
                    Ok(None) => 0,
                    // Unreadable progress: keep everything.
                    Err(_) => return 0,
                },
            };
            // Offset 0: the reader starts from a snapshot and needs no changes.
            if next > 0 {
                needed = needed.min(next);
            }
        }
        needed
    }

    /// The lowest offset of a keyed table's partition that some view reading it (of `metas`,
    /// every view in the catalog) has not consumed, `u64::MAX` if none reads it. Compaction keeps
    /// tombstones from there on: a view that has seen a key must see its deletion.
    pub(crate) fn tombstone_floor(&self, metas: &[ViewMeta], topic: u64, partition: u32) -> u64 {
        let mut floor = u64::MAX;
        for reader in metas.iter().filter(|m| m.sources.contains(&topic)) {
            let consumed = match self.get(&reader.name) {
                Some(handle) => handle
                    .source
                    .position_of(topic, partition)
                    .and_then(|position| handle.progress().offsets.get(position).copied())
                    .unwrap_or(0),
                // Not running: its positions are unknown here, so the least of its offsets.
                None => match self.store.get(&state::meta_key(reader.id)) {
                    Ok(Some(bytes)) => view::decode_offsets(&bytes).into_iter().min().unwrap_or(0),
                    Ok(None) => 0,
                    Err(_) => return 0,
                },
            };
            floor = floor.min(consumed);
        }
        floor
    }

    pub(crate) fn insert(&self, handle: Arc<ViewHandle>) {
        self.views.write().unwrap_or_else(|p| p.into_inner()).insert(handle.meta.name.clone(), handle);
    }

    pub(crate) fn insert_broken(&self, meta: ViewMeta, reason: String) {
        self.broken.write().unwrap_or_else(|p| p.into_inner()).insert(meta.name.clone(), (meta, reason));
    }

    pub(crate) fn remove(&self, name: &str) -> Option<Arc<ViewHandle>> {
        self.views.write().unwrap_or_else(|p| p.into_inner()).remove(name)
    }

    pub(crate) fn remove_broken(&self, name: &str) -> Option<ViewMeta> {
        self.broken.write().unwrap_or_else(|p| p.into_inner()).remove(name).map(|(meta, _)| meta)
    }

    /// Deletes state of views that no longer exist (dropped while the node was down, or
    /// between the catalog delete and the state delete of a DROP).
    pub(crate) fn sweep(&self, live: &[u64]) -> Result<()> {
        let mut next = 0u64;
        let mut ids = live.to_vec();
        ids.sort_unstable();
        for id in ids {
            self.store.delete_views(next, id)?;
            next = id.saturating_add(1);
        }
        self.store.delete_views(next, u64::MAX)
    }

    /// Syncs the state store's WAL on the checkpoint interval until `shutdown` turns true.
    pub(crate) async fn checkpoint(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.checkpoint_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            let store = self.store.clone();
            match tokio::task::spawn_blocking(move || store.sync()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "syncing the state store failed"),
                Err(error) => tracing::error!(%error, "state store sync task failed"),
            }
        }
    }

    /// Stops every view and syncs the state store.
    pub async fn shutdown(&self) {
        for view in self.list() {
            view.stop().await;
        }
        if let Err(error) = self.store.sync() {
            tracing::error!(%error, "syncing the state store at shutdown failed");
        }
    }
}

/// Prometheus text of every view's progress.
pub fn render_metrics(views: &Views, out: &mut String) {
    use std::fmt::Write;
    let list = views.list();
    let metrics: [(&str, &str, &str, fn(&ViewHandle, &Progress) -> f64); 5] = [
        ("streamhouse_view_epochs_total", "counter", "Epochs a materialized view has committed.", |_, p| p.epoch as f64),
        ("streamhouse_view_rows", "gauge", "Rows in a materialized view.", |_, p| p.rows as f64),
        ("streamhouse_view_late_rows_total", "counter", "Rows a view dropped for being behind the watermark.", |_, p| {
            p.late_rows as f64
        }),
        ("streamhouse_view_lag_rows", "gauge", "Source rows a view has not processed yet.", |v, p| {
            v.source_targets().iter().zip(&p.offsets).map(|(t, o)| t.saturating_sub(*o)).sum::<u64>() as f64
        }),
        ("streamhouse_view_failed", "gauge", "1 if a view stopped on an error.", |_, p| if p.failed.is_some() { 1.0 } else { 0.0 }),
    ];
    for (name, kind, help, value) in metrics {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for view in &list {
            let progress = view.progress();
            let label = view.meta.name.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "{name}{{view=\"{label}\"}} {}", value(view, &progress));
        }
    }
    let cache = &views.read_cache;
    let counters = &cache.counters;
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
    for (name, kind, help, value) in [
        ("streamhouse_view_read_cache_hits_total", "counter", "View reads answered from the read cache.", load(&counters.hits)),
        ("streamhouse_view_read_cache_misses_total", "counter", "View reads that went to the state store.", load(&counters.misses)),
        ("streamhouse_view_read_cache_evictions_total", "counter", "Cached view reads evicted to make room.", load(&counters.evictions)),
        ("streamhouse_view_read_cache_bytes", "gauge", "Bytes of view reads the read cache holds.", cache.bytes() as u64),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    }
}
