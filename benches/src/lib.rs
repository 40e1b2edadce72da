//! Benchmarks of StreamHouse: criterion micro benchmarks (WAL group commit, segment encode and
//! decode, scans, ingest through the engine), each reported as a ratio against a baseline
//! measured in the same run on the same data. The Nexmark harness comes with the streaming
//! engine.
//!
//! This library holds what the benches share: a deterministic generator of Nexmark-like bid
//! batches and the ratio report printed at the end of each run.

#![forbid(unsafe_code)]

pub mod nexmark;
pub mod oracle;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

/// Rows per generated batch.
pub const BATCH_ROWS: usize = 8192;

/// The bid schema: what the generator produces and the bench topics hold.
pub fn bid_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("bidder", DataType::Int64, false),
        Field::new("price", DataType::Int64, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new("url", DataType::Utf8, false),
        Field::new("date_time", DataType::Timestamp(TimeUnit::Microsecond, None), false),
    ]))
}

/// A topic of one partition holding [`bid_schema`] rows, with no key, retention or watermark.
pub fn bid_topic(name: &str) -> streamhouse_catalog::TopicDefinition {
    streamhouse_catalog::TopicDefinition {
        name: name.into(),
        schema: bid_schema(),
        partitions: 1,
        partition_key: vec![],
        retention: streamhouse_catalog::RetentionPolicy::default(),
        watermark: None,
        primary_key: vec![],
    }
}

/// `CREATE TOPIC` columns matching [`bid_schema`].
pub const BID_COLUMNS: &str = "auction BIGINT NOT NULL, bidder BIGINT NOT NULL, price BIGINT NOT NULL, \
     channel TEXT NOT NULL, url TEXT NOT NULL, date_time TIMESTAMP NOT NULL";

/// `count` batches of [`BATCH_ROWS`] bids, the same on every call (a linear congruential
/// sequence, no randomness).
pub fn bid_batches(count: usize) -> Vec<RecordBatch> {
    let channels = ["Google", "Facebook", "Baidu", "Apple"];
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    (0..count)
        .map(|b| {
            let base = (b * BATCH_ROWS) as i64;
            let auction: Vec<i64> = (0..BATCH_ROWS).map(|_| 1000 + (next() % 1000) as i64).collect();
            let bidder: Vec<i64> = (0..BATCH_ROWS).map(|_| (next() % 100_000) as i64).collect();
            let price: Vec<i64> = (0..BATCH_ROWS).map(|_| (next() % 10_000_000) as i64).collect();
            let channel: Vec<&str> = (0..BATCH_ROWS).map(|_| channels[(next() % 4) as usize]).collect();
            let url: Vec<String> = (0..BATCH_ROWS).map(|_| format!("https://www.nexmark.com/item.htm?query={}", next() % 5000)).collect();
            let date_time: Vec<i64> = (0..BATCH_ROWS as i64).map(|i| 1_700_000_000_000_000 + (base + i) * 1000).collect();
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from(auction)),
                Arc::new(Int64Array::from(bidder)),
                Arc::new(Int64Array::from(price)),
                Arc::new(StringArray::from(channel)),
                Arc::new(StringArray::from(url)),
                Arc::new(TimestampMicrosecondArray::from(date_time)),
            ];
            RecordBatch::try_new(bid_schema(), columns).expect("columns match the bid schema")
        })
        .collect()
}

/// The runtime every bench uses: two workers, as many as the machines have cores.
pub fn runtime() -> tokio::runtime::Runtime {
    // As the server does.
    streamhouse_engine::memory::limit_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// A scratch directory under `target/`, on the disk a data directory would use (not a tmpfs),
/// so fsync costs what it costs.
pub fn scratch_dir() -> tempfile::TempDir {
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::fs::create_dir_all(&target).expect("target directory");
    tempfile::tempdir_in(target).expect("scratch directory")
}

/// An engine on a scratch directory with the empty `bids` topic, and a session on it. Keep the
/// directory alive as long as the engine.
pub fn bench_engine(
    runtime: &tokio::runtime::Runtime,
) -> (tempfile::TempDir, Arc<streamhouse_engine::Engine>, streamhouse_engine::Session) {
    let dir = scratch_dir();
    let engine = runtime
        .block_on(streamhouse_engine::Engine::open(
            streamhouse_engine::StorageConfig::new(dir.path()),
            streamhouse_engine::EngineConfig::default(),
        ))
        .expect("engine");
    let mut session = engine.superuser_session().expect("session");
    runtime.block_on(async {
        let create = session.prepare(&format!("CREATE TOPIC bids ({BID_COLUMNS})")).await.expect("prepare");
        session.execute(&create, vec![]).await.expect("create");
    });
    (dir, engine, session)
}

/// [`bench_engine`] with `batches` appended to `bids` and sealed into segments, and a
/// DataFusion context holding the same batches as the MemTable `bids` (the batch baseline).
pub fn loaded_bench_engine(
    runtime: &tokio::runtime::Runtime,
    batches: &[RecordBatch],
) -> (tempfile::TempDir, Arc<streamhouse_engine::Engine>, streamhouse_engine::Session, datafusion::prelude::SessionContext) {
    let (dir, engine, session) = bench_engine(runtime);
    runtime.block_on(async {
        let topic = engine.storage().topic("bids").expect("topic");
        for chunk in batches.chunks(8) {
            engine.storage().append(&topic, chunk.to_vec()).await.expect("append");
        }
        engine.storage().seal_all().await.expect("seal");
    });
    let context = datafusion::prelude::SessionContext::new();
    let table = datafusion::datasource::MemTable::try_new(bid_schema(), vec![batches.to_vec()]).expect("memtable");
    context.register_table("bids", Arc::new(table)).expect("register");
    (dir, engine, session, context)
}

/// Total time and iterations of each measured bench, by name, for the ratio report.
fn totals() -> &'static Mutex<BTreeMap<String, (Duration, u64)>> {
    static TOTALS: OnceLock<Mutex<BTreeMap<String, (Duration, u64)>>> = OnceLock::new();
    TOTALS.get_or_init(Default::default)
}

/// Adds the time of `iterations` runs of a bench (use inside `iter_custom`; every sample,
/// warm-up included, counts towards the mean) and returns `total` for criterion.
pub fn record(name: &str, total: Duration, iterations: u64) -> Duration {
    let mut totals = totals().lock().unwrap_or_else(|p| p.into_inner());
    let slot = totals.entry(name.to_string()).or_insert((Duration::ZERO, 0));
    slot.0 += total;
    slot.1 += iterations;
    total
}

/// Both figures' means, when both were measured in this run.
fn means(measured: &str, baseline: &str) -> Option<(Duration, Duration)> {
    Some((mean(measured)?, mean(baseline)?))
}

fn mean(name: &str) -> Option<Duration> {
    let totals = totals().lock().unwrap_or_else(|p| p.into_inner());
    totals.get(name).filter(|(_, n)| *n > 0).map(|(total, n)| total.div_f64(*n as f64))
}

/// Prints `ours / baseline` as a speed ratio (baseline time over our time: above 1 is faster
/// than the baseline), with the target it is measured against.
pub fn print_ratio(ours: &str, baseline: &str, target: f64) {
    match means(ours, baseline) {
        Some((ours_time, baseline_time)) => {
            let ratio = baseline_time.as_secs_f64() / ours_time.as_secs_f64();
            let verdict = if ratio >= target { "met" } else { "NOT met" };
            println!(
                "ratio {ours} vs {baseline}: {ratio:.2}x (ours {ours_time:?}, baseline {baseline_time:?}; target >= {target}x: {verdict})"
            );
        }
        None => println!("ratio {ours} vs {baseline}: not measured in this run"),
    }
}

/// Prints how `measured` compares with `baseline` in this run, without a target: for figures
/// that explain another.
pub fn print_share(measured: &str, baseline: &str) {
    match means(measured, baseline) {
        Some((measured_time, baseline_time)) => {
            let ratio = measured_time.as_secs_f64() / baseline_time.as_secs_f64();
            println!("{measured} takes {ratio:.2}x the time of {baseline} ({measured_time:?} against {baseline_time:?})");
        }
        None => println!("{measured} vs {baseline}: not measured in this run"),
    }
}

/// Runs one statement through a session; returns the rows a query streams (0 for a command).
pub async fn execute(session: &mut streamhouse_engine::Session, sql: &str) -> usize {
    use futures::StreamExt;
    let prepared = session.prepare(sql).await.expect("prepare");
    match session.execute(&prepared, vec![]).await.expect("execute") {
        streamhouse_engine::QueryOutput::Rows { mut stream, .. } => {
            let mut rows = 0;
            while let Some(batch) = stream.next().await {
                rows += batch.expect("batch").num_rows();
            }
            rows
        }
        _ => 0,
    }
}

/// The time `CREATE MATERIALIZED VIEW v AS {query}` takes (it returns once the backfill of every
/// row is committed); the view is dropped again, untimed.
pub async fn time_view_backfill(session: &mut streamhouse_engine::Session, query: &str) -> Duration {
    let started = std::time::Instant::now();
    execute(session, &format!("CREATE MATERIALIZED VIEW v AS {query}")).await;
    let elapsed = started.elapsed();
    execute(session, "DROP MATERIALIZED VIEW v").await;
    elapsed
}
