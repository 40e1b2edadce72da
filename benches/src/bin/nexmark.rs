//! The Nexmark harness: generates events, loads them into the `person`, `auction` and `bid`
//! topics, then for every query in `benches/nexmark/q*.sql` creates it as a materialized view
//! over the loaded data (snapshot mode: the backfill), measures it, checks its rows against
//! DataFusion running the same query in batch over the same events in memory (or, where
//! DataFusion lacks a construct such as SESSION, the plain-SQL equivalent in `q{n}.batch.sql`),
//! and drops it.
//! Queries the engine refuses are listed as unsupported with the reason — none is hidden.
//!
//! `cargo run --release -p streamhouse-benches --bin nexmark -- [--events N] [--queries q0,q5|all] [--json FILE]`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use streamhouse_benches::nexmark::{self, NexmarkEvents};
use streamhouse_benches::{runtime, scratch_dir};
use streamhouse_engine::{Engine, EngineConfig, QueryOutput, Session, StorageConfig};

struct Args {
    events: usize,
    queries: Option<Vec<String>>,
    json: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args { events: 1_000_000, queries: None, json: None };
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
            "--json" => args.json = Some(PathBuf::from(iter.next().expect("--json FILE"))),
            "--bench" => {} // passed by `cargo bench`
            other => panic!("unknown argument {other}; use --events N, --queries q0,q1|all, --json FILE"),
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

struct Outcome {
    query: String,
    status: String,
    source_rows: usize,
    view_seconds: f64,
    view_cpu_seconds: f64,
    batch_seconds: f64,
    result_rows: usize,
    check: String,
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
    let dir = scratch_dir();
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
        let engine = Engine::open(StorageConfig::new(dir.path()), EngineConfig::default()).await.expect("engine");
        let mut session = engine.new_session("nexmark").expect("session");
        let ingest = Instant::now();
        for (name, schema) in nexmark::streams() {
            run(&mut session, &nexmark::create_topic(name, &schema)).await.expect("create topic");
        }
        for (name, batches) in [("person", &events.person), ("auction", &events.auction), ("bid", &events.bid)] {
            let topic = engine.storage().topic(name).expect("topic");
            for chunk in batches.chunks(8) {
                engine.storage().append(&topic, chunk.to_vec()).await.expect("append");
            }
        }
        engine.storage().seal_all().await.expect("seal");
        println!("ingest (durable append and seal): {:?}", ingest.elapsed());
        let context = SessionContext::new();
        for ((name, schema), batches) in nexmark::streams().into_iter().zip([&events.person, &events.auction, &events.bid]) {
            let table = MemTable::try_new(schema, vec![batches.clone()]).expect("memtable");
            context.register_table(name, Arc::new(table)).expect("register");
        }
        let mut outcomes = Vec::new();
        for (number, path) in &files {
            let query = format!("q{number}");
            if args.queries.as_ref().is_some_and(|q| !q.contains(&query)) {
                continue;
            }
            let text = std::fs::read_to_string(path).expect("query file");
            let sql: String = text.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
            let mut outcome = Outcome {
                query: query.clone(),
                status: String::new(),
                source_rows: source_rows(&sql, &events),
                view_seconds: 0.0,
                view_cpu_seconds: 0.0,
                batch_seconds: 0.0,
                result_rows: 0,
                check: String::new(),
            };
            if sql.trim().is_empty() {
                outcome.status = "not applicable (not a query)".into();
                outcomes.push(outcome);
                continue;
            }
            let (wall, cpu) = (Instant::now(), cpu_time());
            let created = run(&mut session, &format!("CREATE MATERIALIZED VIEW nexmark_{query} AS {sql}")).await;
            outcome.view_seconds = wall.elapsed().as_secs_f64();
            outcome.view_cpu_seconds = (cpu_time() - cpu).as_secs_f64();
            if let Err(error) = created {
                outcome.status = format!("unsupported: {error}");
                outcomes.push(outcome);
                continue;
            }
            outcome.status = "ok".into();
            let view_rows = lines(&run(&mut session, &format!("SELECT * FROM nexmark_{query}")).await.expect("read view"));
            let oracle = path.with_extension("batch.sql");
            let batch_sql = match std::fs::read_to_string(&oracle) {
                Ok(text) => text.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n"),
                Err(_) => sql.clone(),
            };
            let batch_started = Instant::now();
            let batch = match context.sql(&batch_sql).await {
                Ok(frame) => frame.collect().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            outcome.batch_seconds = batch_started.elapsed().as_secs_f64();
            outcome.result_rows = view_rows.len();
            outcome.check = match batch {
                Ok(batches) if lines(&batches) == view_rows => "equal".into(),
                Ok(batches) => format!("DIFFERENT ({} rows in batch, {} in the view)", lines(&batches).len(), view_rows.len()),
                Err(error) => format!("batch failed: {error}"),
            };
            run(&mut session, &format!("DROP MATERIALIZED VIEW nexmark_{query}")).await.expect("drop view");
            outcomes.push(outcome);
        }
        engine.shutdown().await;
        outcomes
    });

    println!();
    println!("{:<5} {:>12} {:>16} {:>10} {:>9} {:>10}  {}", "query", "source rows", "rows/s per core", "vs batch", "rows", "check", "status");
    for o in &outcomes {
        if o.status != "ok" {
            println!("{:<5} {:>12} {:>16} {:>10} {:>9} {:>10}  {}", o.query, "", "", "", "", "", o.status);
            continue;
        }
        let per_core = o.source_rows as f64 / o.view_cpu_seconds.max(0.01);
        let ratio = o.batch_seconds / o.view_seconds.max(1e-9);
        println!(
            "{:<5} {:>12} {:>16.0} {:>9.2}x {:>9} {:>10}  ok",
            o.query, o.source_rows, per_core, ratio, o.result_rows, o.check
        );
    }
    if let Some(path) = &args.json {
        let json: Vec<serde_json::Value> = outcomes
            .iter()
            .map(|o| {
                serde_json::json!({
                    "query": o.query, "status": o.status, "source_rows": o.source_rows,
                    "view_seconds": o.view_seconds, "view_cpu_seconds": o.view_cpu_seconds,
                    "batch_seconds": o.batch_seconds, "result_rows": o.result_rows, "check": o.check,
                })
            })
            .collect();
        std::fs::write(path, serde_json::to_string_pretty(&json).expect("json")).expect("write json");
    }
    if outcomes.iter().any(|o| o.status == "ok" && o.check != "equal") {
        std::process::exit(1);
    }
}
