//! Keyed tables, each against a baseline measured in the same run on the same data:
//!
//! - upsert ingest (appends to a keyed table, under its write lock, with the tombstone flag)
//!   against appends of the same batches to an append-only topic;
//! - reading the latest row of every key (a million upserts of 100 000 keys) against DataFusion
//!   running the same latest-row query over the same batches in memory; and the same read
//!   after compaction;
//! - backfilling a view over the keyed table (every upsert retracts the key's previous row)
//!   against DataFusion computing the same result in batch.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use streamhouse_benches::{
    bench_engine, bid_batches, bid_schema, execute, print_ratio, record, runtime, time_view_backfill, BATCH_ROWS, BID_COLUMNS,
};

const BATCHES: usize = 128; // about one million rows; bidders are 0..100 000, so ~10 versions each
const INGEST_BATCHES: usize = 8;

const LATEST: &str = "SELECT count(*), sum(price), max(auction) FROM bidders";
const BASELINE_LATEST: &str = "SELECT count(*), sum(price), max(auction) FROM \
     (SELECT *, row_number() OVER (PARTITION BY bidder ORDER BY seq DESC) AS rn FROM bidders) WHERE rn = 1";
const VIEW: &str = "SELECT channel, count(*) AS n, sum(price) AS total FROM bidders GROUP BY channel";
const BASELINE_VIEW: &str = "SELECT channel, count(*) AS n, sum(price) AS total FROM \
     (SELECT *, row_number() OVER (PARTITION BY bidder ORDER BY seq DESC) AS rn FROM bidders) WHERE rn = 1 GROUP BY channel";

/// The batches with a `seq` column (the order they were written in), for the baseline's
/// latest-row query: in the log that order is the offset.
fn with_sequence(batches: &[arrow::record_batch::RecordBatch]) -> datafusion::prelude::SessionContext {
    use std::sync::Arc;
    let mut fields: Vec<arrow::datatypes::Field> = bid_schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(arrow::datatypes::Field::new("seq", arrow::datatypes::DataType::Int64, false));
    let schema = Arc::new(arrow::datatypes::Schema::new(fields));
    let mut seq = 0i64;
    let sequenced: Vec<_> = batches
        .iter()
        .map(|b| {
            let mut columns = b.columns().to_vec();
            columns.push(Arc::new(arrow::array::Int64Array::from_iter_values(seq..seq + b.num_rows() as i64)));
            seq += b.num_rows() as i64;
            arrow::record_batch::RecordBatch::try_new(schema.clone(), columns).expect("batch")
        })
        .collect();
    let context = datafusion::prelude::SessionContext::new();
    let table = datafusion::datasource::MemTable::try_new(schema, vec![sequenced]).expect("memtable");
    context.register_table("bidders", Arc::new(table)).expect("register");
    context
}

fn keyed(c: &mut Criterion) {
    let runtime = runtime();
    let batches = bid_batches(BATCHES);
    let rows = (BATCHES * BATCH_ROWS) as u64;
    let (_dir, engine, session) = bench_engine(&runtime);
    let session = std::cell::RefCell::new(session);
    runtime.block_on(async {
        let mut session = session.borrow_mut();
        execute(&mut session, &format!("CREATE TABLE bidders ({BID_COLUMNS}, PRIMARY KEY (bidder))")).await;
        execute(&mut session, &format!("CREATE TABLE bidders_ingest ({BID_COLUMNS}, PRIMARY KEY (bidder))")).await;
        execute(&mut session, &format!("CREATE TOPIC bids_ingest ({BID_COLUMNS})")).await;
        let table = engine.storage().topic("bidders").expect("table");
        for chunk in batches.chunks(8) {
            engine.storage().append(&table, chunk.to_vec()).await.expect("append");
        }
        engine.storage().seal_all().await.expect("seal");
    });
    let context = with_sequence(&batches);

    let mut group = c.benchmark_group("keyed");
    group.sample_size(10).measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements((INGEST_BATCHES * BATCH_ROWS) as u64));
    let ingest = &batches[..INGEST_BATCHES];
    for (name, target) in [("baseline_topic_append", "bids_ingest"), ("keyed_upsert_append", "bidders_ingest")] {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let topic = engine.storage().topic(target).expect("target");
                    let started = Instant::now();
                    for _ in 0..iterations {
                        engine.storage().append(&topic, ingest.to_vec()).await.expect("append");
                    }
                    record(name, started.elapsed(), iterations)
                })
            })
        });
    }

    group.throughput(Throughput::Elements(rows));
    let mut measure = |name: &'static str, sql: &'static str, ours: bool| {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iterations {
                        if ours {
                            std::hint::black_box(execute(&mut session.borrow_mut(), sql).await);
                        } else {
                            let frame = context.sql(sql).await.expect("plan");
                            std::hint::black_box(frame.collect().await.expect("collect"));
                        }
                    }
                    record(name, started.elapsed(), iterations)
                })
            })
        });
    };
    measure("baseline_datafusion_latest_row", BASELINE_LATEST, false);
    measure("keyed_latest_row_read", LATEST, true);
    measure("baseline_datafusion_view_query", BASELINE_VIEW, false);
    group.bench_function("keyed_view_backfill", |b| {
        b.iter_custom(|iterations| {
            let mut session = session.borrow_mut();
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    total += time_view_backfill(&mut session, VIEW).await;
                }
                record("keyed_view_backfill", total, iterations)
            })
        })
    });
    runtime.block_on(engine.storage().compact_now()).expect("compact");
    group.bench_function("keyed_latest_row_read_compacted", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iterations {
                    std::hint::black_box(execute(&mut session.borrow_mut(), LATEST).await);
                }
                record("keyed_latest_row_read_compacted", started.elapsed(), iterations)
            })
        })
    });
    group.finish();
    runtime.block_on(engine.shutdown());
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    keyed(&mut criterion);
    criterion.final_summary();
    println!();
    print_ratio("keyed_upsert_append", "baseline_topic_append", 0.8);
    print_ratio("keyed_latest_row_read", "baseline_datafusion_latest_row", 0.8);
    print_ratio("keyed_view_backfill", "baseline_datafusion_view_query", 0.25);
    print_ratio("keyed_latest_row_read_compacted", "keyed_latest_row_read", 1.0);
}
