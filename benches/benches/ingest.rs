//! Durable ingest: `Storage::append` (WAL write, group-committed fsync, in-memory tail, background
//! sealing) against the baseline of encoding the same batches as Arrow IPC with LZ4 and nothing
//! else; with 1, 8 and 64 concurrent writers; and INSERT and COPY through the engine. The 8 and
//! 64 writers' statements are also encoded alone, to show what their size costs, and run through
//! an append's CPU work alone (`prepare`), to show what StreamHouse's own encoding saves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_ipc::CompressionType;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use streamhouse_benches::{bench_engine, bid_batches, bid_topic, print_ratio, print_share, record, runtime, scratch_dir, BATCH_ROWS};
use streamhouse_catalog::SqliteCatalog;
use streamhouse_engine::QueryOutput;
use streamhouse_storage::{Storage, StorageConfig, TopicLog};

const BATCHES: usize = 16;

fn encode_ipc_lz4(batch: &RecordBatch) -> Vec<u8> {
    let options = IpcWriteOptions::default().try_with_compression(Some(CompressionType::LZ4_FRAME)).expect("lz4 enabled");
    let mut buffer = Vec::new();
    let mut writer = StreamWriter::try_new_with_options(&mut buffer, &batch.schema(), options).expect("writer");
    writer.write(batch).expect("write");
    writer.finish().expect("finish");
    drop(writer);
    buffer
}

/// The same rows cut into each writer's statements: writer `w` sends the `w`-th slice of every
/// batch, so many small statements run concurrently.
fn statements(batches: &[RecordBatch], writers: usize) -> Vec<Vec<RecordBatch>> {
    let size = BATCH_ROWS / writers;
    (0..writers).map(|w| batches.iter().map(|b| b.slice(w * size, size)).collect()).collect()
}

/// The baseline's work on one batch: Arrow IPC + LZ4 encoding and nothing else.
fn encode_alone(batch: &RecordBatch) {
    std::hint::black_box(encode_ipc_lz4(batch));
}

/// Times `work` over every batch of `batches`, as `name`.
fn time_each(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, batches: &[RecordBatch], work: impl Fn(&RecordBatch)) {
    group.bench_function(name, |b| {
        b.iter_custom(|iterations| {
            let started = Instant::now();
            for _ in 0..iterations {
                batches.iter().for_each(&work);
            }
            record(name, started.elapsed(), iterations)
        })
    });
}

/// Times `work` over every statement the 8 and the 64 writers send, as
/// `{prefix}_{rows}_row_statements`.
fn time_statements(group: &mut BenchmarkGroup<'_, WallTime>, batches: &[RecordBatch], prefix: &str, work: impl Fn(&RecordBatch)) {
    for writers in [8usize, 64] {
        let slices: Vec<RecordBatch> = statements(batches, writers).into_iter().flatten().collect();
        time_each(group, &format!("{prefix}_{}_row_statements", BATCH_ROWS / writers), &slices, &work);
    }
}

async fn open_storage(dir: &std::path::Path) -> (Storage, Arc<TopicLog>) {
    let catalog = Arc::new(SqliteCatalog::open(&dir.join("catalog.db")).expect("catalog"));
    let storage = Storage::open(StorageConfig::new(dir), catalog).await.expect("storage");
    let topic = storage.create_topic(&bid_topic("bids")).expect("topic");
    (storage, topic)
}

fn ingest(c: &mut Criterion) {
    let runtime = runtime();
    let batches = bid_batches(BATCHES);
    let rows = (BATCHES * BATCH_ROWS) as u64;
    let dir = scratch_dir();
    let (storage, topic) = runtime.block_on(open_storage(dir.path()));

    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(rows));
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    time_each(&mut group, "baseline_ipc_lz4_encode", &batches, encode_alone);
    // The rows the 8 and 64 writers send, cut as they cut them, encoded alone: what encoding
    // small statements costs before any WAL work (not a target, an explanation).
    time_statements(&mut group, &batches, "baseline_ipc_lz4_encode", encode_alone);
    // The same statements through an append's CPU work alone (validate, cut, encode with
    // StreamHouse's own LZ4 framing), against arrow-rs encoding them just above.
    time_statements(&mut group, &batches, "prepare", |statement| {
        std::hint::black_box(streamhouse_storage::prepare(&topic, vec![statement.clone()]).expect("prepare"));
    });
    group.bench_function("durable_append_1_writer", |b| {
        b.to_async(&runtime).iter_custom(|iterations| {
            let (storage, topic, batches) = (storage.clone(), topic.clone(), batches.clone());
            async move {
                let started = Instant::now();
                for _ in 0..iterations {
                    for batch in &batches {
                        storage.append(&topic, vec![batch.clone()]).await.expect("append");
                    }
                }
                record("durable_append_1_writer", started.elapsed(), iterations)
            }
        })
    });
    for writers in [8usize, 64] {
        let name = format!("durable_append_{writers}_writers");
        let slices = statements(&batches, writers);
        group.bench_function(&name, |b| {
            b.to_async(&runtime).iter_custom(|iterations| {
                let (storage, topic, slices, name) = (storage.clone(), topic.clone(), slices.clone(), name.clone());
                async move {
                    let started = Instant::now();
                    for _ in 0..iterations {
                        let tasks: Vec<_> = slices
                            .iter()
                            .cloned()
                            .map(|mine| {
                                let (storage, topic) = (storage.clone(), topic.clone());
                                tokio::spawn(async move {
                                    for batch in mine {
                                        storage.append(&topic, vec![batch]).await.expect("append");
                                    }
                                })
                            })
                            .collect();
                        for task in tasks {
                            task.await.expect("writer");
                        }
                    }
                    record(&name, started.elapsed(), iterations)
                }
            })
        });
    }
    group.finish();
    runtime.block_on(storage.shutdown());
}

/// Rows `start..start + rows` of the INSERT and COPY benches as an Arrow batch: `i` in the three
/// numbers, `Google`, a URL ending in `i`, and 2024-01-01 00:00:00.
fn same_rows_batch(start: usize, rows: usize) -> RecordBatch {
    use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
    let numbers = || Arc::new(Int64Array::from_iter_values((start..start + rows).map(|i| i as i64))) as ArrayRef;
    let columns: Vec<ArrayRef> = vec![
        numbers(),
        numbers(),
        numbers(),
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n("Google", rows))),
        Arc::new(StringArray::from_iter_values((start..start + rows).map(|i| format!("https://www.nexmark.com/item.htm?query={i}")))),
        Arc::new(TimestampMicrosecondArray::from_iter_values(std::iter::repeat_n(1_704_067_200_000_000, rows))),
    ];
    RecordBatch::try_new(streamhouse_benches::bid_schema(), columns).expect("bid columns")
}

/// INSERT … VALUES of 1000 rows per statement and COPY of 100 000 CSV rows, through a session.
fn engine_ingest(c: &mut Criterion) {
    let runtime = runtime();
    let (_dir, engine, session) = bench_engine(&runtime);
    let statement_rows = 1000u64;
    let copy_rows = 100_000u64;
    let values: Vec<String> = (0..statement_rows)
        .map(|i| format!("({i}, {i}, {i}, 'Google', 'https://www.nexmark.com/item.htm?query={i}', '2024-01-01 00:00:00')"))
        .collect();
    let insert_sql = format!("INSERT INTO bids VALUES {}", values.join(", "));
    let csv: String = (0..copy_rows)
        .map(|i| format!("{i},{i},{i},Google,https://www.nexmark.com/item.htm?query={i},2024-01-01 00:00:00\n"))
        .collect();

    let mut group = c.benchmark_group("engine_ingest");
    group.throughput(Throughput::Elements(statement_rows));
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    // Baselines: the same rows as Arrow batches (the INSERT's one batch; COPY's 8192-row ones),
    // encoded as Arrow IPC + LZ4 and nothing else.
    let baselines = [
        ("baseline_ipc_lz4_encode_insert_rows", statement_rows as usize, statement_rows as usize),
        ("baseline_ipc_lz4_encode_copy_rows", copy_rows as usize, BATCH_ROWS),
    ];
    for (name, rows, chunk) in baselines {
        group.throughput(Throughput::Elements(rows as u64));
        let batches: Vec<RecordBatch> = (0..rows).step_by(chunk).map(|start| same_rows_batch(start, chunk.min(rows - start))).collect();
        time_each(&mut group, name, &batches, encode_alone);
    }
    group.throughput(Throughput::Elements(statement_rows));
    let session = std::cell::RefCell::new(session);
    group.bench_function("insert_values_1000_rows", |b| {
        b.iter_custom(|iterations| {
            let mut session = session.borrow_mut();
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iterations {
                    let prepared = session.prepare(&insert_sql).await.expect("prepare");
                    session.execute(&prepared, vec![]).await.expect("insert");
                }
                record("insert_values_1000_rows", started.elapsed(), iterations)
            })
        })
    });
    group.throughput(Throughput::Elements(copy_rows));
    group.bench_function("copy_csv_100000_rows", |b| {
        b.iter_custom(|iterations| {
            let mut session = session.borrow_mut();
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iterations {
                    let prepared = session.prepare("COPY bids FROM STDIN (FORMAT csv)").await.expect("prepare");
                    let QueryOutput::CopyIn(mut copy) = session.execute(&prepared, vec![]).await.expect("copy") else {
                        panic!("COPY FROM STDIN starts a copy")
                    };
                    copy.feed(csv.as_bytes()).expect("feed");
                    copy.finish().await.expect("finish");
                }
                record("copy_csv_100000_rows", started.elapsed(), iterations)
            })
        })
    });
    group.finish();
    runtime.block_on(engine.shutdown());
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    ingest(&mut criterion);
    engine_ingest(&mut criterion);
    criterion.final_summary();
    println!();
    // The target compares durable ingest with encoding the same batches: for the concurrent
    // writers, the statements they send.
    print_ratio("durable_append_1_writer", "baseline_ipc_lz4_encode", 0.6);
    print_ratio("durable_append_8_writers", "baseline_ipc_lz4_encode_1024_row_statements", 0.6);
    print_ratio("durable_append_64_writers", "baseline_ipc_lz4_encode_128_row_statements", 0.6);
    // The same rows in 8192-row batches, for context.
    print_share("durable_append_8_writers", "baseline_ipc_lz4_encode");
    print_share("durable_append_64_writers", "baseline_ipc_lz4_encode");
    print_share("insert_values_1000_rows", "baseline_ipc_lz4_encode_insert_rows");
    print_share("copy_csv_100000_rows", "baseline_ipc_lz4_encode_copy_rows");
    print_share("baseline_ipc_lz4_encode_1024_row_statements", "baseline_ipc_lz4_encode");
    print_share("baseline_ipc_lz4_encode_128_row_statements", "baseline_ipc_lz4_encode");
    print_share("prepare_1024_row_statements", "baseline_ipc_lz4_encode_1024_row_statements");
    print_share("prepare_128_row_statements", "baseline_ipc_lz4_encode_128_row_statements");
}
