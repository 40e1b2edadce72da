//! Reads of a partition as stored (`read_stored`): a sealed segment's batches are handed on as
//! their stored IPC messages, other rows decoded, and what a reader decodes from them is
//! exactly what a decoding scan of the same offsets returns, in the topic's full schema. The
//! expected rows come from `scan_partition`, which decodes every segment.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Int64Array, StringArray};
use arrow::buffer::Buffer;
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use streamhouse_catalog::{RetentionPolicy, SqliteCatalog, TopicDefinition};
use streamhouse_storage::scan::{scan_partition, PruneBounds, ScanProjection};
use streamhouse_storage::{read_stored, rows_within, Storage, StorageConfig, StoredPiece};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("name", DataType::Utf8, true)]))
}

fn rows(ids: Range<i64>, version: &str) -> RecordBatch {
    let names = StringArray::from_iter(ids.clone().map(|i| (i % 3 != 0).then(|| format!("{version}-{i}"))));
    RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from_iter_values(ids)), Arc::new(names)]).unwrap()
}

async fn open(dir: &std::path::Path) -> Storage {
    let catalog = Arc::new(SqliteCatalog::open(&dir.join("catalog.db")).unwrap());
    let mut config = StorageConfig::new(dir);
    config.segment_age_max_ms = 3_600_000;
    config.compaction_interval_ms = 3_600_000;
    config.tombstone_retention_ms = 0;
    Storage::open(config, catalog).await.unwrap()
}

fn definition(name: &str, keyed: bool) -> TopicDefinition {
    let key = if keyed { vec!["id".to_string()] } else { Vec::new() };
    TopicDefinition {
        name: name.into(),
        schema: schema(),
        partitions: 1,
        partition_key: key.clone(),
        retention: RetentionPolicy::default(),
        watermark: None,
        primary_key: key,
    }
}

/// What a decoding scan returns for offsets `range` of partition 0, as one batch.
async fn scanned(storage: &Storage, name: &str, range: &Range<u64>) -> RecordBatch {
    let topic = storage.topic(name).unwrap();
    let projection = ScanProjection::new(&topic, None).unwrap();
    let schema = projection.schema().clone();
    let offset_column = topic.schema().fields().len() + 1;
    let mut receiver = scan_partition(storage, topic.clone(), storage.snapshot(&topic, 0).unwrap(), projection, PruneBounds::default());
    let mut batches = Vec::new();
    while let Some(batch) = receiver.recv().await {
        batches.extend(rows_within(&batch.unwrap(), offset_column, range));
    }
    concat_batches(&schema, &batches).unwrap()
}

/// What a reader decodes from a stored read of offsets `range` of partition 0, as one batch,
/// and how many pieces came as stored messages.
async fn stored(storage: &Storage, name: &str, range: &Range<u64>, message_bytes_max: usize) -> (RecordBatch, usize) {
    let topic = storage.topic(name).unwrap();
    let schema = topic.full_schema().clone();
    let snapshot = storage.snapshot(&topic, 0).unwrap();
    let mut receiver = read_stored(storage, topic, snapshot, range.clone(), message_bytes_max);
    let (mut batches, mut messages) = (Vec::new(), 0);
    while let Some(piece) = receiver.recv().await {
        match piece.unwrap() {
            StoredPiece::Message { metadata, body, rows } => {
                assert!(metadata.len() + body.len() <= message_bytes_max);
                let message = arrow_ipc::root_as_message(&metadata).unwrap();
                let layout = message.header_as_record_batch().unwrap();
                assert!(layout.compression().is_some(), "a stored message keeps its compressed buffers");
                let body = Buffer::from_vec(body);
                let batch =
                    arrow_ipc::reader::read_record_batch(&body, layout, schema.clone(), &Default::default(), None, &message.version())
                        .unwrap();
                assert_eq!(batch.num_rows() as u64, rows);
                batches.push(batch);
                messages += 1;
            }
            StoredPiece::Batch(batch) => batches.push(batch),
        }
    }
    (concat_batches(&schema, &batches).unwrap(), messages)
}

/// Checks a stored read of `range` against a scan; returns the stored messages it took.
async fn check(storage: &Storage, name: &str, range: Range<u64>, message_bytes_max: usize) -> usize {
    let (actual, messages) = stored(storage, name, &range, message_bytes_max).await;
    assert_eq!(actual, scanned(storage, name, &range).await, "{name} {range:?} limit {message_bytes_max}");
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_segment_batches_go_as_stored_and_the_rest_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path()).await;
    let topic = storage.create_topic(&definition("t", false)).unwrap();
    // Segment A holds batches [0, 1000) and [1000, 3000); segment B [3000, 6000); the tail
    // [6000, 6500).
    storage.append(&topic, vec![rows(0..1000, "a")]).await.unwrap();
    storage.append(&topic, vec![rows(1000..3000, "b")]).await.unwrap();
    storage.seal_all().await.unwrap();
    storage.append(&topic, vec![rows(3000..6000, "c")]).await.unwrap();
    storage.seal_all().await.unwrap();
    storage.append(&topic, vec![rows(6000..6500, "d")]).await.unwrap();
    let whole = usize::MAX;
    assert_eq!(check(&storage, "t", 0..6500, whole).await, 3, "every sealed batch as stored");
    assert_eq!(scanned(&storage, "t", &(0..6500)).await.num_rows(), 6500);
    assert_eq!(check(&storage, "t", 500..5800, whole).await, 1, "the batches cut by the range are decoded");
    assert_eq!(check(&storage, "t", 1000..6200, whole).await, 2);
    assert_eq!(check(&storage, "t", 6000..6500, whole).await, 0, "the tail is decoded");
    assert_eq!(check(&storage, "t", 3000..3000, whole).await, 0);
    assert_eq!(check(&storage, "t", 0..6500, 1024).await, 0, "messages over the limit are decoded");
    storage.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_table_segments_read_as_stored_before_and_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path()).await;
    let topic = storage.create_topic(&definition("kv", true)).unwrap();
    storage.append(&topic, vec![rows(0..100, "v1")]).await.unwrap();
    storage.seal_all().await.unwrap();
    storage.append(&topic, vec![rows(0..50, "v2")]).await.unwrap();
    let guard = topic.lock_writes().await;
    storage.append_changes(&topic, &guard, vec![(rows(40..60, "gone"), true)]).await.unwrap();
    drop(guard);
    storage.seal_all().await.unwrap();
    // Before compaction every segment is dense: its batches go as stored, `_deleted` last.
    assert_eq!(check(&storage, "kv", 0..170, usize::MAX).await, 3);
    assert_eq!(check(&storage, "kv", 0..170, 1024).await, 0);
    storage.compact_now().await.unwrap();
    // A compacted segment has gaps in its offsets: its batches are decoded and cut by offset.
    let compacted = scanned(&storage, "kv", &(0..170)).await;
    assert!(compacted.num_rows() < 170, "compaction dropped superseded rows");
    for range in [0..170, 30..120, 100..101] {
        check(&storage, "kv", range, usize::MAX).await;
    }
    storage.shutdown().await;
}
