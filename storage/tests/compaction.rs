//! Compaction of keyed tables on a local directory: after compaction a partition's sealed
//! segments hold exactly the latest row of every key (tombstones dropped once old enough and
//! no reader needs them), offsets are those the rows were appended at, and the result survives
//! a restart. Expected rows come from a model that applies the same changes to a map.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{AsArray, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use arrow::record_batch::RecordBatch;
use streamhouse_catalog::{RetentionPolicy, SqliteCatalog, TopicDefinition};
use streamhouse_storage::scan::{scan_partition, PruneBounds, ScanProjection};
use streamhouse_storage::{Storage, StorageConfig};

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("name", DataType::Utf8, true)]))
}

fn rows(ids: impl Iterator<Item = i64>, version: &str) -> RecordBatch {
    let ids: Vec<i64> = ids.collect();
    let names: Vec<String> = ids.iter().map(|i| format!("{version}-{i}")).collect();
    RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(names))]).unwrap()
}

async fn open(dir: &std::path::Path, tombstone_retention_ms: u64) -> Storage {
    let catalog = Arc::new(SqliteCatalog::open(&dir.join("catalog.db")).unwrap());
    let mut config = StorageConfig::new(dir);
    config.segment_age_max_ms = 3_600_000;
    config.compaction_interval_ms = 3_600_000; // only when the test asks
    config.tombstone_retention_ms = tombstone_retention_ms;
    Storage::open(config, catalog).await.unwrap()
}

/// One log row: (partition, offset, id, name, deleted).
type LogRow = (u32, i64, i64, String, bool);

async fn read_log(storage: &Storage) -> Vec<LogRow> {
    let topic = storage.topic("kv").unwrap();
    let user = topic.schema().fields().len();
    let mut out = Vec::new();
    for partition in 0..topic.partition_count() {
        let snapshot = storage.snapshot(&topic, partition).unwrap();
        // id, name, _offset, _deleted
        let projection = ScanProjection::new(&topic, Some(&[0, 1, user + 1, user + 3])).unwrap();
        let mut receiver = scan_partition(storage, topic.clone(), snapshot, projection, PruneBounds::default());
        while let Some(batch) = receiver.recv().await {
            let batch = batch.unwrap();
            for row in 0..batch.num_rows() {
                out.push((
                    partition,
                    batch.column(2).as_primitive::<Int64Type>().value(row),
                    batch.column(0).as_primitive::<Int64Type>().value(row),
                    batch.column(1).as_string::<i32>().value(row).to_string(),
                    batch.column(3).as_boolean().value(row),
                ));
            }
        }
    }
    out
}

/// The latest row of every key as a reader sees it: highest offset wins, tombstones hide.
fn current(log: &[LogRow]) -> BTreeMap<i64, String> {
    let mut latest: HashMap<i64, &LogRow> = HashMap::new();
    for row in log {
        if latest.get(&row.2).is_none_or(|r| r.1 < row.1) {
            latest.insert(row.2, row);
        }
    }
    latest.into_values().filter(|r| !r.4).map(|r| (r.2, r.3.clone())).collect()
}

/// Appends the changes of the scenario, sealing between steps; returns the model's table.
async fn write_scenario(storage: &Storage) -> BTreeMap<i64, String> {
    let topic = storage.topic("kv").unwrap();
    let mut model = BTreeMap::new();
    storage.append(&topic, vec![rows(0..100, "v1")]).await.unwrap();
    model.extend((0..100).map(|i| (i, format!("v1-{i}"))));
    storage.seal_all().await.unwrap();
    storage.append(&topic, vec![rows(0..50, "v2")]).await.unwrap();
    model.extend((0..50).map(|i| (i, format!("v2-{i}"))));
    storage.seal_all().await.unwrap();
    let guard = topic.lock_writes().await;
    storage.append_changes(&topic, &guard, vec![(rows(40..60, "gone"), true)]).await.unwrap();
    drop(guard);
    for i in 40..60 {
        model.remove(&i);
    }
    storage.seal_all().await.unwrap();
    storage.append(&topic, vec![rows(45..50, "v3")]).await.unwrap();
    model.extend((45..50).map(|i| (i, format!("v3-{i}"))));
    storage.seal_all().await.unwrap();
    // Unsealed: compaction leaves the tail alone.
    storage.append(&topic, vec![rows(0..1, "v4")]).await.unwrap();
    model.insert(0, "v4-0".into());
    model
}

async fn create(storage: &Storage) {
    storage
        .create_topic(&TopicDefinition {
            name: "kv".into(),
            schema: schema(),
            partitions: 2,
            partition_key: vec!["id".into()],
            retention: RetentionPolicy::default(),
            watermark: None,
            primary_key: vec!["id".into()],
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_the_latest_row_of_every_key_and_drops_old_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let model = {
        let storage = open(dir.path(), 0).await;
        create(&storage).await;
        let model = write_scenario(&storage).await;
        let before = read_log(&storage).await;
        assert_eq!(before.len(), 100 + 50 + 20 + 5 + 1);
        assert_eq!(current(&before), model);
        storage.compact_now().await.unwrap();
        let after = read_log(&storage).await;
        assert_eq!(current(&after), model);
        // Sealed data: one row per live key (the tail adds the second version of key 0), no
        // tombstone, each row at the offset it was appended at.
        assert_eq!(after.len(), model.len() + 1);
        assert!(after.iter().all(|r| !r.4));
        let offsets_before: HashMap<(u32, i64), &LogRow> = before.iter().map(|r| ((r.0, r.1), r)).collect();
        for row in &after {
            assert_eq!(offsets_before.get(&(row.0, row.1)).map(|r| (r.2, &r.3)), Some((row.2, &row.3)));
        }
        let topic = storage.topic("kv").unwrap();
        for partition in 0..2 {
            let snapshot = storage.snapshot(&topic, partition).unwrap();
            assert_eq!(snapshot.segments.len(), 1);
            let offsets: Vec<i64> = after.iter().filter(|r| r.0 == partition).map(|r| r.1).collect();
            assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offsets ascend");
        }
        storage.stop_without_sealing().await;
        model
    };
    // After a restart the compacted segments are read again (the orphan sweep must not have
    // taken them), and new writes compact with them.
    let storage = open(dir.path(), 0).await;
    assert_eq!(current(&read_log(&storage).await), model);
    let objects = walk(&dir.path().join("topics"));
    assert_eq!(objects.iter().filter(|name| name.ends_with(".arrow")).count(), 2, "{objects:?}");
    let topic = storage.topic("kv").unwrap();
    storage.append(&topic, vec![rows(90..110, "v5")]).await.unwrap();
    storage.seal_all().await.unwrap();
    storage.compact_now().await.unwrap();
    let mut expected = model;
    expected.extend((90..110).map(|i| (i, format!("v5-{i}"))));
    let log = read_log(&storage).await;
    assert_eq!(current(&log), expected);
    assert_eq!(log.len(), expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_stay_while_young_or_while_a_reader_has_not_passed_them() {
    for (retention_ms, floor) in [(3_600_000, u64::MAX), (0, 0)] {
        let dir = tempfile::tempdir().unwrap();
        let storage = open(dir.path(), retention_ms).await;
        storage.set_compaction_floor(Arc::new(move |_, _| floor));
        create(&storage).await;
        let model = write_scenario(&storage).await;
        storage.compact_now().await.unwrap();
        let log = read_log(&storage).await;
        assert_eq!(current(&log), model);
        // Keys 40..45 and 50..60 end deleted: their tombstones remain, superseded rows do not.
        let tombstones: Vec<i64> = log.iter().filter(|r| r.4).map(|r| r.2).collect();
        let mut sorted = tombstones.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (40..45).chain(50..60).collect::<Vec<_>>(), "retention {retention_ms}, floor {floor}");
        assert_eq!(log.len(), model.len() + 1 + tombstones.len());
    }
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path.display().to_string());
            }
        }
    }
    out
}
