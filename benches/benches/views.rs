//! Materialized views: the time a view takes to backfill a million bids (read from the log,
//! pushed through its pipeline, committed to RocksDB) against DataFusion running the same query
//! in batch over the same batches in memory. Each view's pipeline runs on one core, so its
//! rows per second are per core.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use streamhouse_benches::{bid_batches, loaded_bench_engine, print_ratio, record, runtime, time_view_backfill, BATCH_ROWS};

const BATCHES: usize = 128; // about one million rows

/// (name, view query, the same query for DataFusion in batch).
const QUERIES: &[(&str, &str, &str)] = &[
    (
        "group_by",
        "SELECT auction, count(*) AS n, sum(price) AS total, max(price) AS hi FROM bids GROUP BY auction",
        "SELECT auction, count(*) AS n, sum(price) AS total, max(price) AS hi FROM bids GROUP BY auction",
    ),
    (
        "tumble",
        "SELECT window_start, count(*) AS n, max(price) AS hi FROM TUMBLE(bids, date_time, INTERVAL '10 seconds') GROUP BY window_start",
        "SELECT date_bin(INTERVAL '10 seconds', date_time) AS window_start, count(*) AS n, max(price) AS hi FROM bids GROUP BY 1",
    ),
    (
        "filter_project",
        "SELECT auction, price * 2 AS doubled FROM bids WHERE price % 100 = 0",
        "SELECT auction, price * 2 AS doubled FROM bids WHERE price % 100 = 0",
    ),
];

fn views(c: &mut Criterion) {
    let runtime = runtime();
    let batches = bid_batches(BATCHES);
    let rows = (BATCHES * BATCH_ROWS) as u64;
    let (_dir, engine, session, context) = loaded_bench_engine(&runtime, &batches);
    let session = std::cell::RefCell::new(session);

    let mut group = c.benchmark_group("views");
    group.throughput(Throughput::Elements(rows));
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    for (name, view_query, batch_query) in QUERIES {
        let baseline = format!("baseline_datafusion_{name}");
        group.bench_function(&baseline, |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iterations {
                        let frame = context.sql(batch_query).await.expect("plan");
                        std::hint::black_box(frame.collect().await.expect("collect"));
                    }
                    record(&baseline, started.elapsed(), iterations)
                })
            })
        });
        let ours = format!("view_backfill_{name}");
        group.bench_function(&ours, |b| {
            b.iter_custom(|iterations| {
                let mut session = session.borrow_mut();
                runtime.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        total += time_view_backfill(&mut session, view_query).await;
                    }
                    record(&ours, total, iterations)
                })
            })
        });
    }
    group.finish();
    runtime.block_on(engine.shutdown());
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    views(&mut criterion);
    criterion.final_summary();
    println!();
    for (name, _, _) in QUERIES {
        print_ratio(&format!("view_backfill_{name}"), &format!("baseline_datafusion_{name}"), 0.25);
    }
}
