//! Retention and garbage: deletes whole segments past a topic's retention (object first, then
//! catalog row, advancing the low watermark), the objects of dropped topics, and, at start,
//! orphan objects that were PUT but never registered.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use streamhouse_catalog::Catalog;

use crate::object::topic_prefix;
use crate::{now_us, Result, Storage, TopicMap};

pub(crate) async fn run(storage: Storage) {
    let mut shutdown = storage.inner.shutdown.subscribe();
    let interval = Duration::from_millis(storage.inner.config.retention_check_interval_ms.max(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = storage.inner.retention_wakeup.notified() => {}
            _ = shutdown.changed() => return,
        }
        if let Err(error) = enforce_once(&storage).await {
            tracing::warn!(%error, "retention pass failed; will retry");
        }
    }
}

/// One pass: dropped topics' objects, then every topic's retention.
pub(crate) async fn enforce_once(storage: &Storage) -> Result<()> {
    let inner = &storage.inner;
    for topic_id in inner.catalog.list_dropped_topics()? {
        delete_prefix(&inner.store, &topic_prefix(topic_id)).await?;
        inner.catalog.forget_dropped_topic(topic_id)?;
        tracing::info!(topic_id, "deleted objects of dropped topic");
    }
    // Taken again if a DROP gave it back and there is room now.
    inner.reserve.take();
    for topic in storage.topics() {
        let retention = &topic.meta().retention;
        // A keyed table's old segments hold live keys: compaction, not retention, shrinks it.
        if topic.is_keyed() || (retention.time_ms.is_none() && retention.bytes.is_none()) {
            continue;
        }
        let cutoff_us = retention.time_ms.map(|ms| now_us() - (ms as i64) * 1000);
        for partition in 0..topic.partition_count() {
            let segments = inner.catalog.segments(topic.id(), partition, 0, u64::MAX)?;
            let mut total: u64 = segments.iter().map(|s| s.bytes).sum();
            for segment in segments {
                let expired = cutoff_us.is_some_and(|cutoff| segment.max_timestamp_us < cutoff);
                let over_size = retention.bytes.is_some_and(|max| total > max);
                if !expired && !over_size {
                    break;
                }
                inner.store.delete(&ObjectPath::from(segment.object_key.as_str())).await?;
                inner.catalog.delete_oldest_segment(topic.id(), partition, segment.base_offset)?;
                inner.cache.remove(&segment.object_key);
                if let Some(log) = topic.partition(partition) {
                    log.low_watermark.fetch_max(segment.last_offset + 1, Ordering::AcqRel);
                }
                total -= segment.bytes;
                inner.metrics.segments_deleted.add(1);
            }
        }
    }
    Ok(())
}

async fn delete_prefix(store: &std::sync::Arc<dyn ObjectStore>, prefix: &str) -> Result<()> {
    let prefix = ObjectPath::from(prefix);
    let objects: Vec<_> = store.list(Some(&prefix)).try_collect().await?;
    for object in objects {
        match store.delete(&object.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// Deletes segment objects that no catalog row names: PUT by a sealer that crashed before
/// registering them, or left by a topic whose deletion was interrupted.
pub(crate) async fn sweep_orphans(
    store: &std::sync::Arc<dyn ObjectStore>,
    catalog: &dyn Catalog,
    topics: &TopicMap,
) -> Result<()> {
    let live: Vec<_> = topics.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
    let mut swept = 0usize;
    for topic in live {
        let mut registered = HashSet::new();
        for partition in 0..topic.partition_count() {
            for segment in catalog.segments(topic.id(), partition, 0, u64::MAX)? {
                registered.insert(segment.object_key);
            }
        }
        let prefix = ObjectPath::from(topic_prefix(topic.id()).as_str());
        let objects: Vec<_> = store.list(Some(&prefix)).try_collect().await?;
        for object in objects {
            if !registered.contains(object.location.as_ref()) {
                store.delete(&object.location).await?;
                swept += 1;
            }
        }
    }
    if swept > 0 {
        tracing::info!(objects = swept, "swept orphan segment objects");
    }
    Ok(())
}
