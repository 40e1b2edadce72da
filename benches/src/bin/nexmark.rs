//! The Nexmark harness: generates events, and for every query in `benches/nexmark/q*.sql`
//! creates it as a materialized view, measures it, checks its rows against DataFusion running
//! the same query in batch over the same events in memory (or, where DataFusion lacks a construct
//! such as SESSION, the plain-SQL equivalent in `q{n}.batch.sql`), and drops it. Two modes:
//! *snapshot* loads the events into the `person`, `auction` and `bid` topics first and times the
//! view's backfill; *upstream* creates the view over empty topics in a fresh engine, then appends
//! the events and times them through to FLUSH (ingest alone, measured once, is subtracted from
//! the CPU time). Events are appended straight to storage in this process (`--load direct`, the
//! default) or through a Flight server on a loopback port, one DoPut per stream of 8192-row
//! batches each acknowledged after its fsync (`--load flight`), as a loading client would.
//! Queries the engine refuses are listed as unsupported with the reason — none is
//! hidden. With `--oracle-dir DIR` the events and every view's rows are written there for the
//! DuckDB oracle (`benches/oracle/nexmark_duckdb.py DIR`).
//!
//! `cargo run --release -p streamhouse-benches --bin nexmark -- [--events N] [--queries q0,q5|all]
//! [--mode snapshot|upstream|both] [--load direct|flight] [--json FILE] [--oracle-dir DIR] [--repeat N]`; with
//! `--repeat N` each query runs N times in each mode and the median run is reported.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::{FlightClient, FlightDescriptor};
use futures::{StreamExt, TryStreamExt};
use streamhouse_benches::nexmark::{self, NexmarkEvents};
use streamhouse_benches::{oracle, runtime, scratch_dir};
use streamhouse_engine::{Engine, EngineConfig, QueryOutput, Session, StorageConfig};

struct Args {
    events: usize,
    queries: Option<Vec<String>>,
    json: Option<PathBuf>,
    snapshot: bool,
    upstream: bool,
    oracle_dir: Option<PathBuf>,
    /// Insert-to-view latency: bids appended at this many rows per second for
    /// `latency_seconds`, each append timed until the view reflects it.
    latency_rate: Option<u64>,
    latency_seconds: f64,
    /// Runs of each query in each mode; the run with the median CPU time is reported (a run
    /// whose check fails is reported instead, so no failure hides behind the median).
    repeat: usize,
    /// Events appended through DoPut to a Flight server on loopback, not straight to storage.
    flight: bool,
}

const USAGE: &str = "usage: nexmark [--events N] [--queries q0,q1|all] [--mode snapshot|upstream|both] [--load direct|flight] [--json FILE] \
                     [--oracle-dir DIR] [--latency ROWS_PER_SECOND] [--latency-seconds S] [--repeat N]";

fn parse_args() -> Args {
    let mut args = Args {
        events: 1_000_000,
        queries: None,
        json: None,
        snapshot: true,
        upstream: false,
        oracle_dir: None,
        latency_rate: None,
        latency_seconds: 2.0,
        repeat: 1,
        flight: false,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--events" => args.events = iter.next().and_then(|v| v.parse().ok()).expect("--events N"),
            "--queries" => {
                let list = iter.next().expect("--queries q0,q1|all");
                if list != "all" {
                    args.queries = Some(list.split(',').map(|q| q.trim().to_string()).collect());
                }
            }
            "--mode" => match iter.next().as_deref() {
                Some("snapshot") => (args.snapshot, args.upstream) = (true, false),
                Some("upstream") => (args.snapshot, args.upstream) = (false, true),
                Some("both") => (args.snapshot, args.upstream) = (true, true),
                other => panic!("--mode snapshot|upstream|both, not {other:?}"),
            },
            "--load" => match iter.next().as_deref() {
                Some("direct") => args.flight = false,
                Some("flight") => args.flight = true,
                other => panic!("--load direct|flight, not {other:?}"),
            },
            "--json" => args.json = Some(PathBuf::from(iter.next().expect("--json FILE"))),
            "--oracle-dir" => args.oracle_dir = Some(PathBuf::from(iter.next().expect("--oracle-dir DIR"))),
            "--latency" => args.latency_rate = Some(iter.next().and_then(|v| v.parse().ok()).expect("--latency ROWS_PER_SECOND")),
            "--latency-seconds" => args.latency_seconds = iter.next().and_then(|v| v.parse().ok()).expect("--latency-seconds S"),
            "--repeat" => {
                args.repeat = iter.next().and_then(|v| v.parse().ok()).filter(|&n: &usize| n >= 1).expect("--repeat N (1 or more)")
            }
            "--bench" => {} // passed by `cargo bench`
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => {
                eprintln!("unknown argument {other}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    args
}

/// CPU time of this process (user + system), from /proc.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesized command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok())).sum();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

/// Rows as sorted text lines; floats rounded to 9 significant digits (sums in another order
/// differ in the last bits).
fn lines(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in batches {
        let formatters: Vec<Option<ArrayFormatter>> = batch
            .columns()
            .iter()
            .map(|c| (!matches!(c.data_type(), DataType::Float64)).then(|| ArrayFormatter::try_new(c.as_ref(), &options).ok()).flatten())
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = batch
                .columns()
                .iter()
                .zip(&formatters)
                .map(|(column, formatter)| match formatter {
                    Some(f) => f.value(row).to_string(),
                    None if column.is_null(row) => "NULL".into(),
                    None => format!("{:.8e}", column.as_primitive::<Float64Type>().value(row)),
                })
                .collect();
            out.push(cells.join("|"));
        }
    }
    out.sort();
    out
}

async fn run(session: &mut Session, sql: &str) -> Result<Vec<RecordBatch>, String> {
    let prepared = session.prepare(sql).await.map_err(|e| e.to_string())?;
    match session.execute(&prepared, vec![]).await.map_err(|e| e.to_string())? {
        QueryOutput::Rows { mut stream, .. } => {
            let mut batches = Vec::new();
            while let Some(batch) = stream.next().await {
                batches.push(batch.map_err(|e| e.to_string())?);
            }
            Ok(batches)
        }
        _ => Ok(Vec::new()),
    }
}

/// What one mode measured of one query.
#[derive(Default)]
struct Run {
    seconds: f64,
    cpu_seconds: f64,
    result_rows: usize,
    check: String,
    /// The view's RocksDB bytes (state, results, changelog) once caught up.
    state_bytes: u64,
    /// The process's peak resident memory while the view was created and caught up.
    peak_rss_bytes: u64,
    /// Upstream: CPU seconds of loading the events alone (measured once), which `cpu_seconds`
    /// leaves out.
    ingest_cpu_seconds: f64,
}

/// Resets the process's peak resident set size (Linux: `5` to /proc/self/clear_refs).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident set size since the last reset (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A view's RocksDB bytes.
fn state_bytes(engine: &Engine, query: &str) -> u64 {
    engine
        .views()
        .get(&format!("nexmark_{query}"))
        .and_then(|view| engine.views().store().view_bytes(view.meta.id).ok())
        .unwrap_or(0)
}

struct Outcome {
    query: String,
    status: String,
    source_rows: usize,
    batch_seconds: f64,
    snapshot: Option<Run>,
    upstream: Option<Run>,
    /// Insert-to-view latency p50 and p99, milliseconds.
    latency_ms: Option<(f64, f64)>,
}

/// Appends bids at `rate` rows per second (chunks every 10 ms) for `seconds` to a fresh engine
/// holding the view, and times each append from its send until the view reflects it.
async fn measure_latency(create: &str, query: &str, events: &NexmarkEvents, rate: u64, seconds: f64) -> (f64, f64) {
    const TICK: Duration = Duration::from_millis(10);
    let (_dir, engine, mut session) = fresh_engine().await;
    run(&mut session, create).await.expect("create view");
    let view = engine.views().get(&format!("nexmark_{query}")).expect("the view");
    let topic = engine.storage().topic("bid").expect("bid topic");
    let chunk = ((rate as f64 * TICK.as_secs_f64()) as usize).max(1);
    let ticks = (seconds / TICK.as_secs_f64()) as usize;
    let bids: Vec<RecordBatch> = events.bid.iter().flat_map(|b| (0..b.num_rows()).step_by(chunk).map(move |o| b.slice(o, chunk.min(b.num_rows() - o)))).take(ticks).collect();
    let mut waits = Vec::with_capacity(bids.len());
    let mut next = tokio::time::Instant::now();
    for batch in bids {
        tokio::time::sleep_until(next).await;
        next += TICK;
        let sent = Instant::now();
        engine.storage().append(&topic, vec![batch]).await.expect("append");
        let targets = view.source_targets();
        let view = view.clone();
        waits.push(tokio::spawn(async move {
            view.wait_for(&targets).await.expect("view caught up");
            sent.elapsed()
        }));
    }
    let mut latencies: Vec<Duration> = Vec::with_capacity(waits.len());
    for wait in waits {
        latencies.push(wait.await.expect("latency task"));
    }
    engine.shutdown().await;
    latencies.sort();
    let at = |q: f64| latencies.get(((latencies.len() as f64 - 1.0) * q).round() as usize).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    (at(0.5), at(0.99))
}

impl Outcome {
    fn checks(&self) -> impl Iterator<Item = &str> {
        self.snapshot.iter().chain(self.upstream.iter()).map(|r| r.check.as_str())
    }
}

/// An engine on a fresh scratch directory with the three (empty) Nexmark topics.
async fn fresh_engine() -> (tempfile::TempDir, Arc<Engine>, Session) {
    let dir = scratch_dir();
    let engine = Engine::open(StorageConfig::new(dir.path()), EngineConfig::default()).await.expect("engine");
    let mut session = engine.superuser_session().expect("session");
    for (name, schema) in nexmark::streams() {
        run(&mut session, &nexmark::create_topic(name, &schema)).await.expect("create topic");
    }
    (dir, engine, session)
}

/// How events reach an engine's topics.
enum Loader {
    /// Appended straight to storage, eight batches per append.
    Direct(Arc<Engine>),
    /// Through a Flight server on a loopback port, one DoPut per stream; the server stops when
    /// `_stop` is dropped.
    Flight { client: FlightClient, _stop: tokio::sync::watch::Sender<bool> },
}

impl Loader {
    async fn new(engine: &Arc<Engine>, flight: bool) -> Loader {
        if !flight {
            return Loader::Direct(engine.clone());
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let metrics = Arc::new(streamhouse_flight::FlightMetrics::default());
        tokio::spawn(streamhouse_flight::serve(listener, engine.clone(), streamhouse_flight::FlightConfig::default(), metrics, shutdown));
        let channel = tonic::transport::Channel::from_shared(format!("http://{address}")).expect("uri").connect().await.expect("connect");
        Loader::Flight { client: FlightClient::new(channel), _stop: stop }
    }

    /// Appends every event, stream by stream; returns once all are durable.
    async fn load(&mut self, events: &NexmarkEvents) {
        for (name, batches) in [("person", &events.person), ("auction", &events.auction), ("bid", &events.bid)] {
            match self {
                Loader::Direct(engine) => {
                    let topic = engine.storage().topic(name).expect("topic");
                    for chunk in batches.chunks(8) {
                        engine.storage().append(&topic, chunk.to_vec()).await.expect("append");
                    }
                }
                Loader::Flight { client, .. } => {
                    let data = FlightDataEncoderBuilder::new()
                        .with_flight_descriptor(Some(FlightDescriptor::new_path(vec![name.to_string()])))
                        .build(futures::stream::iter(batches.to_vec().into_iter().map(Ok)));
                    let acknowledged: Vec<arrow_flight::PutResult> = client.do_put(data).await.expect("do_put").try_collect().await.expect("acknowledgements");
                    let rows: u64 = acknowledged
                        .iter()
                        .map(|ack| serde_json::from_slice::<serde_json::Value>(&ack.app_metadata).ok().and_then(|v| v["rows"].as_u64()).expect("rows acknowledged"))
                        .sum();
                    assert_eq!(rows, batches.iter().map(|b| b.num_rows() as u64).sum::<u64>(), "every {name} row acknowledged");
                }
            }
        }
    }
}

/// Reads a view's rows, compares them with the batch result, writes them for the oracle.
async fn finish(
    session: &mut Session,
    query: &str,
    mode: &str,
    batch: &Result<Vec<RecordBatch>, String>,
    oracle_dir: Option<&PathBuf>,
    run_: &mut Run,
) {
    let view = run(session, &format!("SELECT * FROM nexmark_{query}")).await.expect("read view");
    let view_rows = lines(&view);
    run_.result_rows = view_rows.len();
    run_.check = match batch {
        Ok(batches) if lines(batches) == view_rows => "equal".into(),
        Ok(batches) => format!("DIFFERENT ({} rows in batch, {} in the view)", lines(batches).len(), view_rows.len()),
        Err(error) => format!("batch failed: {error}"),
    };
    if let (Some(dir), Some(first)) = (oracle_dir, view.first()) {
        oracle::write_table(dir, &format!("{query}.{mode}"), &first.schema(), &view).expect("write view rows");
    }
}

fn source_rows(sql: &str, events: &NexmarkEvents) -> usize {
    let count = |batches: &[RecordBatch]| batches.iter().map(|b| b.num_rows()).sum::<usize>();
    let mut rows = 0;
    // A stream is read where it follows FROM or JOIN, or opens a window function.
    let words: Vec<String> =
        sql.split(|c: char| !c.is_alphanumeric() && c != '_').filter(|w| !w.is_empty()).map(|w| w.to_ascii_lowercase()).collect();
    for (name, batches) in [("person", &events.person), ("auction", &events.auction), ("bid", &events.bid)] {
        let read = words.windows(2).any(|pair| {
            matches!(pair[0].as_str(), "from" | "join" | "tumble" | "hop" | "session") && pair[1] == name
        });
        if read {
            rows += count(batches);
        }
    }
    rows
}

fn main() {
    let args = parse_args();
    let runtime = runtime();
    let started = Instant::now();
    let events = nexmark::generate(args.events);
    println!(
        "generated {} events ({} persons, {} auctions, {} bids) in {:?}",
        args.events,
        events.person.iter().map(|b| b.num_rows()).sum::<usize>(),
        events.auction.iter().map(|b| b.num_rows()).sum::<usize>(),
        events.bid.iter().map(|b| b.num_rows()).sum::<usize>(),
        started.elapsed()
    );
    if let Some(dir) = &args.oracle_dir {
        std::fs::create_dir_all(dir).expect("oracle directory");
        for ((name, schema), batches) in nexmark::streams().into_iter().zip([&events.person, &events.auction, &events.bid]) {
            oracle::write_table(dir, name, &schema, batches).expect("write events");
        }
    }
    let queries_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("nexmark");
    let mut files: Vec<(u32, PathBuf)> = std::fs::read_dir(&queries_dir)
        .expect("benches/nexmark")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let stem = p.file_stem()?.to_str()?.to_string();
            let number = stem.strip_prefix('q')?.parse().ok()?;
            (p.extension()? == "sql").then_some((number, p))
        })
        .collect();
    files.sort();
    let outcomes = runtime.block_on(async {
        // PostgreSQL's literals, as StreamHouse reads them: `0.908` is numeric (q1, q14).
        let config = datafusion::prelude::SessionConfig::new().set_bool("datafusion.sql_parser.parse_float_as_decimal", true);
        let context = SessionContext::new_with_config(config);
        // The queries' to_char templates are PostgreSQL's: DataFusion's formatting, translated.
        context.register_udf(datafusion::logical_expr::ScalarUDF::from(streamhouse_engine::ToChar::every_row()));
        for ((name, schema), batches) in nexmark::streams().into_iter().zip([&events.person, &events.auction, &events.bid]) {
            let table = MemTable::try_new(schema, vec![batches.clone()]).expect("memtable");
            context.register_table(name, Arc::new(table)).expect("register");
        }
        // Ingest alone: what upstream runs subtract.
        let (ingest_dir, ingest_engine, _) = fresh_engine().await;
        let mut loader = Loader::new(&ingest_engine, args.flight).await;
        let (wall, cpu) = (Instant::now(), cpu_time());
        loader.load(&events).await;
        let ingest_cpu = cpu_time() - cpu;
        println!("ingest (durable append{}): {:?}, {:?} CPU", if args.flight { " through Flight DoPut" } else { "" }, wall.elapsed(), ingest_cpu);
        drop(loader);
        ingest_engine.shutdown().await;
        drop(ingest_dir);
        let (_dir, engine, mut session) = fresh_engine().await;
        if args.snapshot {
            Loader::new(&engine, args.flight).await.load(&events).await;
            engine.storage().seal_all().await.expect("seal");
        }
        let mut outcomes = Vec::new();
        for (number, path) in &files {
            let query = format!("q{number}");
            if args.queries.as_ref().is_some_and(|q| !q.contains(&query)) {
                continue;
            }
            let text = std::fs::read_to_string(path).expect("query file");
            let sql = strip_comments(&text);
            let mut outcome =
                Outcome { query: query.clone(), status: String::new(), source_rows: source_rows(&sql, &events), batch_seconds: 0.0, snapshot: None, upstream: None, latency_ms: None };
            if sql.trim().is_empty() {
                outcome.status = "not applicable (not a query)".into();
                outcomes.push(outcome);
                continue;
            }
            let batch_sql = std::fs::read_to_string(path.with_extension("batch.sql")).map(|t| strip_comments(&t)).unwrap_or_else(|_| sql.clone());
            let batch_started = Instant::now();
            let batch = match context.sql(&batch_sql).await {
                Ok(frame) => frame.collect().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            outcome.batch_seconds = batch_started.elapsed().as_secs_f64();
            let create = format!("CREATE MATERIALIZED VIEW nexmark_{query} AS {sql}");
            let mut refused = None;
            let mut snapshot_runs = Vec::new();
            for _ in 0..args.repeat * usize::from(args.snapshot) {
                let mut measured = Run::default();
                reset_peak_rss();
                let (wall, cpu) = (Instant::now(), cpu_time());
                let created = run(&mut session, &create).await;
                (measured.seconds, measured.cpu_seconds) = (wall.elapsed().as_secs_f64(), (cpu_time() - cpu).as_secs_f64());
                if let Err(error) = created {
                    refused = Some(error);
                    break;
                }
                measured.peak_rss_bytes = peak_rss();
                measured.state_bytes = state_bytes(&engine, &query);
                finish(&mut session, &query, "snapshot", &batch, args.oracle_dir.as_ref(), &mut measured).await;
                run(&mut session, &format!("DROP MATERIALIZED VIEW nexmark_{query}")).await.expect("drop view");
                snapshot_runs.push(measured);
            }
            let mut upstream_runs = Vec::new();
            for _ in 0..args.repeat * usize::from(args.upstream && refused.is_none()) {
                let (_upstream_dir, upstream, mut upstream_session) = fresh_engine().await;
                if let Err(error) = run(&mut upstream_session, &create).await {
                    refused = Some(error);
                    break;
                }
                let mut loader = Loader::new(&upstream, args.flight).await;
                let mut measured = Run::default();
                reset_peak_rss();
                let (wall, cpu) = (Instant::now(), cpu_time());
                loader.load(&events).await;
                run(&mut upstream_session, "FLUSH").await.expect("flush");
                measured.seconds = wall.elapsed().as_secs_f64();
                measured.cpu_seconds = (cpu_time() - cpu).saturating_sub(ingest_cpu).as_secs_f64();
                measured.ingest_cpu_seconds = ingest_cpu.as_secs_f64();
                measured.peak_rss_bytes = peak_rss();
                measured.state_bytes = state_bytes(&upstream, &query);
                finish(&mut upstream_session, &query, "upstream", &batch, args.oracle_dir.as_ref(), &mut measured).await;
                drop(loader);
                upstream.shutdown().await;
                upstream_runs.push(measured);
            }
            if let Some(error) = refused {
                outcome.status = format!("unsupported: {error}");
                outcomes.push(outcome);
                continue;
            }
            outcome.snapshot = reported(snapshot_runs);
            outcome.upstream = reported(upstream_runs);
            if let Some(rate) = args.latency_rate {
                outcome.latency_ms = Some(measure_latency(&create, &query, &events, rate, args.latency_seconds).await);
            }
            outcome.status = "ok".into();
            outcomes.push(outcome);
        }
        engine.shutdown().await;
        outcomes
    });
    report(&outcomes, &args);
    if outcomes.iter().any(|o| o.status == "ok" && o.checks().any(|c| c != "equal")) {
        std::process::exit(1);
    }
}

/// The run to report: one whose check failed if any did, else the one with the median CPU time.
fn reported(mut runs: Vec<Run>) -> Option<Run> {
    if let Some(failed) = runs.iter().position(|r| r.check != "equal") {
        return Some(runs.swap_remove(failed));
    }
    runs.sort_by(|a, b| a.cpu_seconds.total_cmp(&b.cpu_seconds));
    let median = runs.len() / 2;
    runs.into_iter().nth(median)
}

fn strip_comments(text: &str) -> String {
    text.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n")
}

/// Prints the table and writes the JSON (and the oracle's manifest).
fn report(outcomes: &[Outcome], args: &Args) {
    println!();
    println!(
        "{:<5} {:>12} {:>16} {:>10} {:>16} {:>9} {:>11} {:>9} {:>15} {:>10}  {}",
        "query", "source rows", "snapshot rows/s", "vs batch", "upstream rows/s", "rows", "state bytes", "peak RSS", "latency p50/p99", "check", "status"
    );
    let per_core = |o: &Outcome, r: &Option<Run>| r.as_ref().map_or(String::from("-"), |r| format!("{:.0}", o.source_rows as f64 / r.cpu_seconds.max(0.01)));
    for o in outcomes {
        if o.status != "ok" {
            println!("{:<5} {:>12} {:>16} {:>10} {:>16} {:>9} {:>11} {:>9} {:>15} {:>10}  {}", o.query, "", "", "", "", "", "", "", "", "", o.status);
            continue;
        }
        let ratio = o.snapshot.as_ref().map_or(String::from("-"), |r| format!("{:.2}x", o.batch_seconds / r.seconds.max(1e-9)));
        let first = o.snapshot.as_ref().or(o.upstream.as_ref());
        let rows = first.map_or(0, |r| r.result_rows);
        let state = first.map_or(String::from("-"), |r| format!("{:.1} MB", r.state_bytes as f64 / 1e6));
        let rss = first.map_or(String::from("-"), |r| format!("{:.0} MB", r.peak_rss_bytes as f64 / 1e6));
        let check = if o.checks().all(|c| c == "equal") { "equal".to_string() } else { o.checks().collect::<Vec<_>>().join("; ") };
        let latency = o.latency_ms.map_or(String::from("-"), |(p50, p99)| format!("{p50:.0}/{p99:.0} ms"));
        println!(
            "{:<5} {:>12} {:>16} {:>10} {:>16} {:>9} {:>11} {:>9} {:>15} {:>10}  ok",
            o.query, o.source_rows, per_core(o, &o.snapshot), ratio, per_core(o, &o.upstream), rows, state, rss, latency, check
        );
    }
    let json_run = |r: &Option<Run>| {
        r.as_ref().map(|r| {
            serde_json::json!({
                "seconds": r.seconds, "cpu_seconds": r.cpu_seconds, "result_rows": r.result_rows, "check": r.check,
                "state_bytes": r.state_bytes, "peak_rss_bytes": r.peak_rss_bytes, "ingest_cpu_seconds": r.ingest_cpu_seconds,
            })
        })
    };
    let json: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| {
            serde_json::json!({
                "query": o.query, "status": o.status, "source_rows": o.source_rows, "batch_seconds": o.batch_seconds,
                "snapshot": json_run(&o.snapshot), "upstream": json_run(&o.upstream),
                "latency_p50_ms": o.latency_ms.map(|l| l.0), "latency_p99_ms": o.latency_ms.map(|l| l.1),
            })
        })
        .collect();
    let text = serde_json::to_string_pretty(&json).expect("json");
    if let Some(path) = &args.json {
        std::fs::write(path, &text).expect("write json");
    }
    if let Some(dir) = &args.oracle_dir {
        std::fs::write(dir.join("manifest.json"), &text).expect("write manifest");
    }
}
