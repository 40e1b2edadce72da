//! The log end to end on a local directory: append, read, seal, restart, torn WAL tails,
//! retention and dropped topics.

use std::sync::Arc;

use arrow::array::{Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use streamhouse_catalog::{RetentionPolicy, SqliteCatalog, TopicDefinition};
use streamhouse_storage::scan::{scan_partition, PruneBounds, ScanProjection};
use streamhouse_storage::{Storage, StorageConfig};

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]))
}

fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(ids.clone())),
            Arc::new(StringArray::from_iter_values(ids.map(|i| format!("row-{i}")))),
        ],
    )
    .unwrap()
}

fn definition(name: &str, partitions: u32, key: bool) -> TopicDefinition {
    TopicDefinition {
        name: name.into(),
        schema: schema(),
        partitions,
        partition_key: if key { vec!["id".into()] } else { vec![] },
        retention: RetentionPolicy::default(),
        watermark: None,
        primary_key: vec![],
    }
}

async fn open(dir: &std::path::Path) -> Storage {
    let catalog = Arc::new(SqliteCatalog::open(&dir.join("catalog.db")).unwrap());
    let mut config = StorageConfig::new(dir);
    // Seal only when asked, so tests decide what is in segments.
    config.segment_age_max_ms = 3_600_000;
    Storage::open(config, catalog).await.unwrap()
}

/// Every (offset, id) in a topic, sorted by id.
async fn read_all(storage: &Storage, name: &str) -> Vec<(u32, i64, i64)> {
    let topic = storage.topic(name).unwrap();
    let mut rows = Vec::new();
    for partition in 0..topic.partition_count() {
        let snapshot = storage.snapshot(&topic, partition).unwrap();
        let user = topic.schema().fields().len();
        let projection = ScanProjection::new(&topic, Some(&[0, user + 1])).unwrap();
        let mut receiver = scan_partition(storage, topic.clone(), snapshot, projection, PruneBounds::default());
        while let Some(batch) = receiver.recv().await {
            let batch = batch.unwrap();
            let ids = batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            let offsets = batch.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
            for i in 0..batch.num_rows() {
                rows.push((partition, offsets.value(i), ids.value(i)));
            }
        }
    }
    rows.sort_by_key(|r| r.2);
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_survive_sealing_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let storage = open(dir.path()).await;
        let topic = storage.create_topic(&definition("t", 1, false)).unwrap();
        storage.append(&topic, vec![batch(0..10)]).await.unwrap();
        storage.seal_all().await.unwrap();
        storage.append(&topic, vec![batch(10..15)]).await.unwrap();
        let rows = read_all(&storage, "t").await;
        assert_eq!(rows.iter().map(|r| r.2).collect::<Vec<_>>(), (0..15).collect::<Vec<_>>());
        assert_eq!(rows.iter().map(|r| r.1).collect::<Vec<_>>(), (0..15).collect::<Vec<_>>());
        let snapshot = storage.snapshot(&topic, 0).unwrap();
        assert_eq!((snapshot.segments.len(), snapshot.tail.len(), snapshot.high_watermark), (1, 1, 15));
        storage.stop_without_sealing().await;
    }
    // Without sealing at shutdown the WAL still holds rows 10..15; they come back from replay.
    let storage = open(dir.path()).await;
    let rows = read_all(&storage, "t").await;
    assert_eq!(rows.iter().map(|r| r.2).collect::<Vec<_>>(), (0..15).collect::<Vec<_>>());
    let topic = storage.topic("t").unwrap();
    let outcome = storage.append(&topic, vec![batch(15..16)]).await.unwrap();
    assert_eq!(outcome.placements, vec![(0, 15, 1)]);
}

/// A tail is sealed once its oldest row is `segment_age_max_ms` old, also when it starts after
/// the sealer last found nothing unsealed (and small writes never reach the size threshold).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_started_while_the_sealer_idles_is_sealed_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Arc::new(SqliteCatalog::open(&dir.path().join("catalog.db")).unwrap());
    let mut config = StorageConfig::new(dir.path());
    config.segment_age_max_ms = 200;
    let storage = Storage::open(config, catalog).await.unwrap();
    let topic = storage.create_topic(&definition("t", 1, false)).unwrap();
    // The sealer's first pass finds nothing; the first rows come after it.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    for round in 0..3 {
        storage.append(&topic, vec![batch(round * 10..round * 10 + 10)]).await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !storage.snapshot(&topic, 0).unwrap().tail.is_empty() {
            assert!(std::time::Instant::now() < deadline, "round {round}: the tail was not sealed by age within 30 s");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    assert_eq!(read_all(&storage, "t").await.len(), 30);
}

/// Writes begun one after another before any is durable enter the log in that order, each at
/// the offsets it was given, and survive a restart; small (combined) and large (encoded whole)
/// writes mixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_begun_before_earlier_ones_are_durable_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [5000, 10, 8192, 700, 9000, 1];
    let mut expected = Vec::new();
    {
        let storage = open(dir.path()).await;
        let topic = storage.create_topic(&definition("b", 1, false)).unwrap();
        let mut begun = Vec::new();
        let mut next = 0i64;
        for rows in sizes {
            begun.push((next, storage.append_begin(&topic, vec![batch(next..next + rows)]).await.unwrap()));
            next += rows;
        }
        for (first, append) in begun {
            let outcome = append.acknowledged(&topic).await.unwrap();
            assert_eq!(outcome.placements.len(), 1);
            let (partition, offset, rows) = outcome.placements[0];
            // The ids were given in order, so each write's first offset is its first id.
            assert_eq!((partition, offset as i64), (0, first));
            expected.extend((first..first + rows as i64).map(|id| (0, id, id)));
        }
        assert_eq!(read_all(&storage, "b").await, expected);
        storage.stop_without_sealing().await;
    }
    let storage = open(dir.path()).await;
    assert_eq!(read_all(&storage, "b").await, expected, "replayed from the WAL");
}

/// `batch` as one record batch message (metadata, body) as a client would encode it, with
/// buffers aligned to 8 bytes (as pyarrow writes them) and compressed with `compression`.
fn client_message(batch: &RecordBatch, compression: Option<arrow_ipc::CompressionType>) -> (Vec<u8>, bytes::Bytes) {
    use arrow_ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions};
    let options = IpcWriteOptions::try_new(8, false, arrow_ipc::MetadataVersion::V5).unwrap().try_with_compression(compression).unwrap();
    let mut tracker = DictionaryTracker::new(true);
    let (_, encoded) = IpcDataGenerator::default().encode(batch, &mut tracker, &options, &mut IpcWriteContext::default()).unwrap();
    (encoded.ipc_message, encoded.arrow_data.into())
}

/// Record batch messages a client encoded: LZ4-compressed ones of a round-robin topic are stored
/// as sent (others appended as their rows), every row reads back, from the tail, from the WAL
/// after a restart, and from segments; a message listing more than its schema's columns (which
/// a segment would take for its system columns) is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_encoded_messages_are_stored_as_sent() {
    const LZ4_FRAME: arrow_ipc::CompressionType = arrow_ipc::CompressionType::LZ4_FRAME;
    use streamhouse_storage::decode_sent;
    let dir = tempfile::tempdir().unwrap();
    // (rows, compression, stored as sent): too small to store alone, and not compressed, are
    // appended as rows.
    let writes = [(3000, Some(LZ4_FRAME), true), (100, Some(LZ4_FRAME), false), (2500, None, false), (8192, Some(LZ4_FRAME), true)];
    let mut expected = Vec::new();
    {
        let storage = open(dir.path()).await;
        let topic = storage.create_topic(&definition("s", 2, false)).unwrap();
        let mut next = 0i64;
        let mut begun = Vec::new();
        for (rows, compression, as_sent) in writes {
            let sent = batch(next..next + rows);
            let (metadata, body) = client_message(&sent, compression);
            let decoded = decode_sent(&topic, &metadata, body).unwrap();
            assert_eq!(decoded.batch().columns(), sent.columns());
            let (append, stored) = storage.append_begin_sent(&topic, decoded).await.unwrap();
            assert_eq!(stored, as_sent, "{rows} rows, {compression:?}");
            begun.push((next, append));
            next += rows;
        }
        for (first, append) in begun {
            let (partition, offset, rows) = append.acknowledged(&topic).await.unwrap().placements[0];
            expected.extend((first..first + rows as i64).map(|id| (partition, offset as i64 + id - first, id)));
        }
        assert_eq!(read_all(&storage, "s").await, expected);

        // Three columns' message read as the topic's two: the reader would take the first two,
        // the segment the third's buffers for `_offset`.
        let wider = RecordBatch::try_from_iter(vec![
            ("id", Arc::new(Int64Array::from_iter_values(0..2000)) as arrow::array::ArrayRef),
            ("name", Arc::new(StringArray::from_iter_values((0..2000).map(|i| format!("n{i}")))) as _),
            ("extra", Arc::new(Int64Array::from_iter_values(0..2000)) as _),
        ])
        .unwrap();
        let (metadata, body) = client_message(&wider, Some(LZ4_FRAME));
        let error = decode_sent(&topic, &metadata, body).unwrap_err();
        assert!(error.to_string().contains("3 field nodes"), "{error}");
        // A NULL in the NOT NULL id decodes (the caller checks it) and is refused on append.
        let nullable = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]));
        let with_null = RecordBatch::try_new(
            nullable,
            vec![
                Arc::new(Int64Array::from_iter((0..2000).map(|i| (i != 7).then_some(i)))),
                Arc::new(StringArray::from_iter_values((0..2000).map(|i| format!("n{i}")))),
            ],
        )
        .unwrap();
        let (metadata, body) = client_message(&with_null, Some(LZ4_FRAME));
        let decoded = decode_sent(&topic, &metadata, body).unwrap();
        assert_eq!(decoded.batch().column(0).null_count(), 1);
        let error = storage.append_begin_sent(&topic, decoded).await.err().expect("a NULL id is refused");
        assert!(error.to_string().contains("not-null"), "{error}");
        assert_eq!(read_all(&storage, "s").await, expected, "nothing of it appended");
        // Not a record batch message at all.
        assert!(decode_sent(&topic, b"garbage", bytes::Bytes::new()).is_err());
        storage.stop_without_sealing().await;
    }
    let storage = open(dir.path()).await;
    assert_eq!(read_all(&storage, "s").await, expected, "replayed from the WAL");
    storage.seal_all().await.unwrap();
    let topic = storage.topic("s").unwrap();
    assert!((0..2).all(|p| storage.snapshot(&topic, p).unwrap().tail.is_empty()), "every row sealed");
    assert_eq!(read_all(&storage, "s").await, expected, "read from segments");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_partitioning_is_stable_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path()).await;
    let topic = storage.create_topic(&definition("k", 4, true)).unwrap();
    storage.append(&topic, vec![batch(0..1000)]).await.unwrap();
    storage.append(&topic, vec![batch(0..1000)]).await.unwrap();
    let rows = read_all(&storage, "k").await;
    assert_eq!(rows.len(), 2000);
    // Each id lands in the same partition both times, and all partitions are used.
    for pair in rows.chunks(2) {
        assert_eq!(pair[0].2, pair[1].2);
        assert_eq!(pair[0].0, pair[1].0);
    }
    let used: std::collections::HashSet<u32> = rows.iter().map(|r| r.0).collect();
    assert_eq!(used.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_wal_tail_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    {
        let storage = open(dir.path()).await;
        let topic = storage.create_topic(&definition("t", 1, false)).unwrap();
        storage.append(&topic, vec![batch(0..5)]).await.unwrap();
        storage.append(&topic, vec![batch(5..8)]).await.unwrap();
        storage.stop_without_sealing().await;
    }
    // Cut the last record in half, as a crash in the middle of a write would.
    let wal_dir = dir.path().join("wal");
    let mut files: Vec<_> = std::fs::read_dir(&wal_dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let largest = files.iter().max_by_key(|f| std::fs::metadata(f).unwrap().len()).unwrap().clone();
    let data = std::fs::read(&largest).unwrap();
    std::fs::write(&largest, &data[..data.len() - 20]).unwrap();
    let storage = open(dir.path()).await;
    let rows = read_all(&storage, "t").await;
    assert_eq!(rows.iter().map(|r| r.2).collect::<Vec<_>>(), (0..5).collect::<Vec<_>>());
    assert!(std::fs::metadata(&largest).unwrap().len() < data.len() as u64 - 20);
    // The next write takes the offsets the torn record never got.
    let topic = storage.topic("t").unwrap();
    assert_eq!(storage.append(&topic, vec![batch(100..101)]).await.unwrap().placements, vec![(0, 5, 1)]);
}

/// Where each frame of a WAL file starts.
fn frame_starts(data: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut position = 0;
    while position + 8 <= data.len() && data[position..position + 8].iter().any(|&b| b != 0) {
        starts.push(position);
        let length = u32::from_le_bytes(data[position..position + 4].try_into().unwrap()) as usize;
        position += 8 + length;
    }
    starts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_write_cut_after_its_first_frame_is_dropped_whole() {
    let dir = tempfile::tempdir().unwrap();
    {
        let storage = open(dir.path()).await;
        let topic = storage.create_topic(&definition("t", 1, false)).unwrap();
        storage.append(&topic, vec![batch(0..5)]).await.unwrap();
        // Large enough to be pipelined: two frames, the first marked as continued.
        let outcome = storage.append(&topic, vec![batch(5..10_005)]).await.unwrap();
        assert_eq!(outcome.placements, vec![(0, 5, 10_000)]);
        assert_eq!(read_all(&storage, "t").await.len(), 10_005);
        storage.stop_without_sealing().await;
    }
    let wal_dir = dir.path().join("wal");
    let file = std::fs::read_dir(&wal_dir).unwrap().map(|e| e.unwrap().path()).max_by_key(|f| std::fs::metadata(f).unwrap().len()).unwrap();
    let data = std::fs::read(&file).unwrap();
    let starts = frame_starts(&data);
    assert_eq!(starts.len(), 3, "one frame for the small write, two for the pipelined one");

    // Both frames there: every row replays.
    let whole = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), whole.path());
    let rows = read_all(&open(whole.path()).await, "t").await;
    assert_eq!(rows.iter().map(|r| r.2).collect::<Vec<_>>(), (0..10_005).collect::<Vec<_>>());

    // A crash after the first frame reached the disk and before the last did.
    std::fs::write(&file, &data[..starts[2]]).unwrap();
    let storage = open(dir.path()).await;
    let rows = read_all(&storage, "t").await;
    assert_eq!(rows.iter().map(|r| r.2).collect::<Vec<_>>(), (0..5).collect::<Vec<_>>());
    assert_eq!(std::fs::metadata(&file).unwrap().len(), starts[1] as u64, "cut back to the partial write's start");
    let topic = storage.topic("t").unwrap();
    assert_eq!(storage.append(&topic, vec![batch(100..101)]).await.unwrap().placements, vec![(0, 5, 1)]);
}

/// Pipelined writes cancelled at every stage (before their offsets, while their last piece is
/// encoded aside, after it was handed over): each is in the log whole or not at all, offsets
/// have no gap, and the same holds after a restart replays the WAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_pipelined_writes_are_whole_or_absent_with_no_offset_gap() {
    const WRITE_ROWS: i64 = 10_000;
    const ROUNDS: i64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path()).await;
    let topic = storage.create_topic(&definition("t", 1, false)).unwrap();
    let mut acknowledged = Vec::new();
    for round in 0..ROUNDS {
        let first = round * WRITE_ROWS;
        let (writer, log) = (storage.clone(), topic.clone());
        let write = tokio::spawn(async move { writer.append(&log, vec![batch(first..first + WRITE_ROWS)]).await });
        // Cancelled after 0 to about 1 ms: every stage of an append is hit somewhere.
        tokio::time::sleep(std::time::Duration::from_micros((round as u64 % 10) * 120)).await;
        write.abort();
        if let Ok(outcome) = write.await {
            outcome.unwrap();
            acknowledged.push(round);
        }
    }
    // A write after all of them gets the next offset.
    let last = ROUNDS * WRITE_ROWS;
    let outcome = storage.append(&topic, vec![batch(last..last + 1)]).await.unwrap();

    let check = |rows: Vec<(u32, i64, i64)>| {
        let mut by_offset = rows.clone();
        by_offset.sort_by_key(|r| r.1);
        let offsets: Vec<i64> = by_offset.iter().map(|r| r.1).collect();
        assert_eq!(offsets, (0..rows.len() as i64).collect::<Vec<_>>(), "offsets without gap or repeat");
        let written: std::collections::BTreeSet<i64> = rows.iter().filter(|r| r.2 < last).map(|r| r.2 / WRITE_ROWS).collect();
        for round in &written {
            let ids: Vec<i64> = rows.iter().filter(|r| r.2 / WRITE_ROWS == *round && r.2 < last).map(|r| r.2).collect();
            assert_eq!(ids, (round * WRITE_ROWS..(round + 1) * WRITE_ROWS).collect::<Vec<_>>(), "write {round} is whole");
        }
        for round in &acknowledged {
            assert!(written.contains(round), "acknowledged write {round} is there");
        }
        assert_eq!(rows.last().map(|r| r.2), Some(last));
        written.len()
    };
    let written = check(read_all(&storage, "t").await);
    assert_eq!(outcome.placements, vec![(0, written as u64 * WRITE_ROWS as u64, 1)]);
    assert!(written < ROUNDS as usize, "some writes were cancelled before they were handed over");
    storage.stop_without_sealing().await;
    drop(storage);
    assert_eq!(check(read_all(&open(dir.path()).await, "t").await), written, "the same writes replay");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn spare_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("wal")).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("spare-")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_wal_files_replay_only_their_own_records() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    let catalog = Arc::new(SqliteCatalog::open(&live.join("catalog.db")).unwrap());
    let mut config = StorageConfig::new(&live);
    config.segment_age_max_ms = 3_600_000;
    config.wal_file_bytes_max = 1; // every commit starts a new file
    let storage = Storage::open(config, catalog).await.unwrap();
    let topic = storage.create_topic(&definition("t", 1, false)).unwrap();
    storage.append(&topic, vec![batch(0..500)]).await.unwrap();
    // The WAL thread rolls to the next file after it acknowledges a commit, so the file holding
    // rows 0..500 is closed (and releasable once sealed) a moment after the append returns.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    storage.seal_all().await.unwrap();
    while spare_count(&live) == 0 && std::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
        storage.seal_all().await.unwrap();
    }
    assert_eq!(spare_count(&live), 1, "the sealed file is kept for reuse");
    storage.append(&topic, vec![batch(500..501)]).await.unwrap();
    while spare_count(&live) != 0 && std::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
    assert_eq!(spare_count(&live), 0, "the next file reused it");
    // A record much smaller than the 500-row record it overwrites: the file's old bytes follow.
    storage.append(&topic, vec![batch(501..502)]).await.unwrap();

    // What a crash now would leave on disk (every write above was fsynced).
    let image = dir.path().join("image");
    copy_dir(&live, &image);
    let recovered = open(&image).await;
    let rows = read_all(&recovered, "t").await;
    assert_eq!(rows.iter().map(|r| r.2).collect::<Vec<_>>(), (0..502).collect::<Vec<_>>());
    assert_eq!(rows.iter().map(|r| r.1).collect::<Vec<_>>(), (0..502).collect::<Vec<_>>(), "offsets dense");
    let topic = recovered.topic("t").unwrap();
    assert_eq!(recovered.append(&topic, vec![batch(502..503)]).await.unwrap().placements, vec![(0, 502, 1)]);
    storage.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_bytes_deletes_oldest_segments_and_drop_removes_objects() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path()).await;
    let mut def = definition("r", 1, false);
    def.retention = RetentionPolicy { time_ms: None, bytes: Some(1) };
    let topic = storage.create_topic(&def).unwrap();
    for i in 0..3 {
        storage.append(&topic, vec![batch(i * 10..i * 10 + 10)]).await.unwrap();
        storage.seal_all().await.unwrap();
    }
    storage.enforce_retention().await.unwrap();
    // Every segment is over a 1-byte budget: all go, and the low watermark moves past them.
    assert!(read_all(&storage, "r").await.is_empty());
    assert_eq!(topic.partition(0).unwrap().low_watermark(), 30);
    assert_eq!(storage.wal_file_count(), 1);

    let keep = storage.create_topic(&definition("d", 1, false)).unwrap();
    storage.append(&keep, vec![batch(0..3)]).await.unwrap();
    storage.seal_all().await.unwrap();
    let objects = dir.path().join(format!("topics/{}", keep.id()));
    assert!(objects.exists());
    storage.drop_topic("d").unwrap();
    storage.enforce_retention().await.unwrap();
    let left = walk(&objects);
    assert!(left.is_empty(), "objects left after drop: {left:?}");
    let again = storage.create_topic(&definition("d", 1, false)).unwrap();
    assert!(read_all(&storage, "d").await.is_empty());
    assert_ne!(again.id(), keep.id());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                files.extend(walk(&entry.path()));
            } else {
                files.push(entry.path());
            }
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_seals_never_lose_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Arc::new(SqliteCatalog::open(&dir.path().join("catalog.db")).unwrap());
    let mut config = StorageConfig::new(dir.path());
    config.segment_bytes_max = 1; // one batch per segment
    config.segment_age_max_ms = 3_600_000;
    let storage = Storage::open(config, catalog).await.unwrap();
    let topic = storage.create_topic(&definition("c", 1, false)).unwrap();
    for i in 0..20 {
        storage.append(&topic, vec![batch(i * 3..i * 3 + 3)]).await.unwrap();
    }
    // The background sealer is woken by every append; two forced seals race with it.
    let (a, b) = tokio::join!(storage.seal_all(), storage.seal_all());
    a.unwrap();
    b.unwrap();
    let rows = read_all(&storage, "c").await;
    assert_eq!(rows.iter().map(|r| r.2).collect::<Vec<_>>(), (0..60).collect::<Vec<_>>());
    assert_eq!(storage.snapshot(&topic, 0).unwrap().segments.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_wake_on_append_and_time_retention_drops_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path()).await;
    let mut def = definition("f", 1, false);
    def.retention = RetentionPolicy { time_ms: Some(1), bytes: None };
    let topic = storage.create_topic(&def).unwrap();
    let mut follower = topic.partition(0).unwrap().subscribe();
    let waiter = tokio::spawn(async move {
        follower.changed().await.unwrap();
        *follower.borrow()
    });
    storage.append(&topic, vec![batch(0..4)]).await.unwrap();
    assert_eq!(waiter.await.unwrap(), 4, "the follower saw the new high watermark");

    storage.seal_all().await.unwrap();
    // Appended at least 1 ms ago once this second append is acknowledged behind it.
    let first_append = storage.snapshot(&topic, 0).unwrap().segments[0].max_timestamp_us;
    while now_us() <= first_append + 1000 {
        tokio::task::yield_now().await;
    }
    storage.append(&topic, vec![batch(4..6)]).await.unwrap();
    storage.enforce_retention().await.unwrap();
    // The sealed segment is past retention; the unsealed tail is kept until it seals.
    let rows = read_all(&storage, "f").await;
    assert_eq!(rows.iter().map(|r| r.2).collect::<Vec<_>>(), vec![4, 5]);
    assert_eq!(topic.partition(0).unwrap().low_watermark(), 4);
}

fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_wait_for_sealing_when_the_object_store_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Arc::new(SqliteCatalog::open(&dir.path().join("catalog.db")).unwrap());
    let mut config = StorageConfig::new(dir.path());
    config.segment_bytes_max = 1;
    config.partition_tail_bytes_max = 1;
    config.append_wait_ms_max = 200;
    let storage = Storage::open(config, catalog).await.unwrap();
    let topic = storage.create_topic(&definition("b", 1, false)).unwrap();
    // A file where the object directory must go: every segment upload fails.
    std::fs::write(dir.path().join("topics"), b"in the way").unwrap();
    storage.append(&topic, vec![batch(0..3)]).await.unwrap();
    let error = storage.append(&topic, vec![batch(3..6)]).await.unwrap_err();
    assert!(matches!(error, streamhouse_storage::StorageError::Backpressure { .. }), "{error}");
    // The object store comes back: the waiting append goes through once sealing catches up.
    std::fs::remove_file(dir.path().join("topics")).unwrap();
    // The sealer retries after a back-off; each append attempt waits up to 200 ms for it.
    let mut attempts = 0;
    let outcome = loop {
        match storage.append(&topic, vec![batch(3..6)]).await {
            Ok(outcome) => break outcome,
            Err(streamhouse_storage::StorageError::Backpressure { .. }) if attempts < 50 => attempts += 1,
            Err(error) => panic!("append failed: {error}"),
        }
    };
    assert_eq!(outcome.placements, vec![(0, 3, 3)]);
    let rows = read_all(&storage, "b").await;
    assert_eq!(rows.iter().map(|r| r.2).collect::<Vec<_>>(), (0..6).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_small_writes_are_combined_and_each_gets_its_own_rows() {
    // 48 writers of 20 statements each, of 1 to 30 rows over 3 hash partitions: small writes,
    // combined in groups as they arrive together.
    let dir = tempfile::tempdir().unwrap();
    let expected: Vec<(u32, i64, i64)>;
    {
        let storage = open(dir.path()).await;
        let topic = storage.create_topic(&definition("t", 3, true)).unwrap();
        let writers: Vec<_> = (0..48i64)
            .map(|writer| {
                let (storage, topic) = (storage.clone(), topic.clone());
                tokio::spawn(async move {
                    let mut written = Vec::new();
                    for statement in 0..20i64 {
                        let first = (writer * 20 + statement) * 100;
                        let ids = first..first + 1 + (writer + statement) % 30;
                        let outcome = storage.append(&topic, vec![batch(ids.clone())]).await.unwrap();
                        written.push((ids, outcome.placements));
                    }
                    written
                })
            })
            .collect();
        let mut statements = Vec::new();
        for writer in writers {
            statements.extend(writer.await.unwrap());
        }
        // Each statement's placements hold exactly its rows: read every partition and match
        // each row's offset against the placement its statement was answered with.
        let rows = read_all(&storage, "t").await;
        let by_id: std::collections::HashMap<i64, (u32, i64)> = rows.iter().map(|&(p, o, id)| (id, (p, o))).collect();
        assert_eq!(by_id.len(), rows.len(), "every id once");
        let mut placed = 0;
        for (ids, placements) in &statements {
            let in_log: Vec<(u32, i64)> = ids.clone().map(|id| by_id[&id]).collect();
            for &(partition, base, count) in placements {
                let mine: Vec<i64> =
                    in_log.iter().filter(|(p, _)| *p == partition).map(|(_, offset)| *offset).collect();
                assert_eq!(mine, (base as i64..(base + count) as i64).collect::<Vec<_>>(), "{ids:?} in partition {partition}");
                placed += count;
            }
        }
        assert_eq!(placed as usize, rows.len());
        // Offsets in each partition run from 0 without gaps.
        for partition in 0..3 {
            let mut offsets: Vec<i64> = rows.iter().filter(|r| r.0 == partition).map(|r| r.1).collect();
            offsets.sort();
            assert_eq!(offsets, (0..offsets.len() as i64).collect::<Vec<_>>());
        }
        // Writes were combined: the tails hold fewer batches than the statements' pieces.
        let pieces: usize = statements.iter().map(|(_, placements)| placements.len()).sum();
        let tail_batches: usize = (0..3).map(|p| storage.snapshot(&topic, p).unwrap().tail.len()).sum();
        assert!(tail_batches < pieces, "{tail_batches} tail batches for {pieces} pieces");
        expected = rows;
        storage.shutdown().await;
    }
    // Replayed from the WAL, the same rows at the same offsets.
    let storage = open(dir.path()).await;
    assert_eq!(read_all(&storage, "t").await, expected);
    storage.shutdown().await;
}
