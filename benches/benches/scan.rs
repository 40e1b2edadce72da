//! Warm bounded scans: a query over a topic whose segments are in the cache, against DataFusion
//! running the same query over the same batches in memory (MemTable); plus a pruned scan.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use streamhouse_benches::{bid_batches, execute, loaded_bench_engine, print_ratio, record, runtime, BATCH_ROWS};

const BATCHES: usize = 128; // about one million rows

fn scan(c: &mut Criterion) {
    let runtime = runtime();
    let batches = bid_batches(BATCHES);
    let rows = (BATCHES * BATCH_ROWS) as u64;
    let (_dir, engine, mut session, context) = loaded_bench_engine(&runtime, &batches);

    let query = "SELECT channel, count(*), sum(price), max(bidder) FROM bids GROUP BY channel";
    // Warm the segment cache.
    runtime.block_on(execute(&mut session, query));
    let session = std::cell::RefCell::new(session);

    let mut group = c.benchmark_group("scan");
    group.throughput(Throughput::Elements(rows));
    group.sample_size(10).measurement_time(Duration::from_secs(8));
    group.bench_function("baseline_datafusion_memtable", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iterations {
                    let frame = context.sql(query).await.expect("plan");
                    std::hint::black_box(frame.collect().await.expect("collect"));
                }
                record("baseline_datafusion_memtable", started.elapsed(), iterations)
            })
        })
    });
    let pruned = format!("SELECT count(*) FROM bids WHERE _offset >= {}", rows - BATCH_ROWS as u64);
    for (name, sql) in [("warm_topic_scan", query.to_string()), ("pruned_scan_last_batch", pruned)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let mut session = session.borrow_mut();
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iterations {
                        std::hint::black_box(execute(&mut session, &sql).await);
                    }
                    record(name, started.elapsed(), iterations)
                })
            })
        });
    }
    group.finish();
    runtime.block_on(engine.shutdown());
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    scan(&mut criterion);
    criterion.final_summary();
    println!();
    print_ratio("warm_topic_scan", "baseline_datafusion_memtable", 0.8);
    print_ratio("pruned_scan_last_batch", "warm_topic_scan", 1.0);
}
