//! Freshness of a materialized view under load: bids are appended at 100k rows/s (a batch of
//! 1000 rows every 10 ms) while a view aggregates them. For each batch we measure the time to
//! its acknowledgement (the durable write: the baseline) and the time until the view has
//! committed it (visible to SELECT). The target: visible within 50 ms at p99.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use streamhouse_benches::{bench_engine, bid_batches, runtime};

const ROWS_PER_BATCH: usize = 1000;
const INTERVAL: Duration = Duration::from_millis(10);
const RUN: Duration = Duration::from_secs(6);
const WARM_UP: Duration = Duration::from_secs(1);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    let runtime = runtime();
    let (_dir, engine, mut session) = bench_engine(&runtime);
    let source: Vec<RecordBatch> = bid_batches(8).iter().flat_map(|b| {
        (0..b.num_rows() / ROWS_PER_BATCH).map(|i| b.slice(i * ROWS_PER_BATCH, ROWS_PER_BATCH)).collect::<Vec<_>>()
    }).collect();
    let (acks, visible) = runtime.block_on(async {
        let create = session
            .prepare("CREATE MATERIALIZED VIEW per_auction AS SELECT auction, count(*) AS n, max(price) AS hi FROM bids GROUP BY auction")
            .await
            .expect("prepare");
        session.execute(&create, vec![]).await.expect("create view");
        let view = engine.views().get("per_auction").expect("view");
        let topic = engine.storage().topic("bids").expect("topic");
        // Batches acknowledged but not yet seen in the view: (end offset, sent at).
        let waiting: std::sync::Arc<std::sync::Mutex<VecDeque<(u64, Instant, bool)>>> = Default::default();
        let visible: std::sync::Arc<std::sync::Mutex<Vec<Duration>>> = Default::default();
        let watcher = {
            let waiting = waiting.clone();
            let visible = visible.clone();
            let mut progress = view.watch_progress();
            tokio::spawn(async move {
                while progress.changed().await.is_ok() {
                    let committed = progress.borrow_and_update().offsets.iter().sum::<u64>();
                    let now = Instant::now();
                    let mut waiting = waiting.lock().unwrap();
                    while waiting.front().is_some_and(|(end, _, _)| *end <= committed) {
                        let (_, sent, measured) = waiting.pop_front().unwrap();
                        if measured {
                            visible.lock().unwrap().push(now - sent);
                        }
                    }
                }
            })
        };
        let mut acks = Vec::new();
        let started = Instant::now();
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut index = 0;
        while started.elapsed() < RUN {
            tick.tick().await;
            let batch = source[index % source.len()].clone();
            index += 1;
            let sent = Instant::now();
            let measured = started.elapsed() > WARM_UP;
            // Registered before the append so the watcher cannot miss it.
            let end = {
                let outcome = engine.storage().append(&topic, vec![batch]).await.expect("append");
                outcome.placements.iter().map(|(_, first, rows)| first + rows).max().unwrap_or(0)
            };
            if measured {
                acks.push(sent.elapsed());
            }
            waiting.lock().unwrap().push_back((end, sent, measured));
        }
        // Let the view catch up with the last batches.
        let targets = view.source_targets();
        view.wait_for(&targets).await.expect("view catches up");
        tokio::task::yield_now().await;
        watcher.abort();
        let visible = visible.lock().unwrap().clone();
        println!("epochs committed: {} in {:?}", view.progress().epoch, started.elapsed());
        (acks, visible)
    });
    let mut acks = acks;
    let mut visible = visible;
    acks.sort();
    visible.sort();
    let rows_per_second = ROWS_PER_BATCH as f64 / INTERVAL.as_secs_f64();
    println!("input: {rows_per_second:.0} rows/s in batches of {ROWS_PER_BATCH}, {} batches measured", acks.len());
    println!(
        "baseline ack (durable write): p50 {:?}, p99 {:?}",
        percentile(&acks, 0.5),
        percentile(&acks, 0.99)
    );
    println!(
        "view visible (from send):     p50 {:?}, p99 {:?} over {} batches",
        percentile(&visible, 0.5),
        percentile(&visible, 0.99),
        visible.len()
    );
    let p99 = percentile(&visible, 0.99);
    let ratio = percentile(&acks, 0.99).as_secs_f64() / p99.as_secs_f64().max(1e-9);
    let verdict = if p99 <= Duration::from_millis(50) { "met" } else { "NOT met" };
    println!("ratio view_visible_p99 vs ack_p99: {ratio:.2}x (target: visible p99 <= 50 ms: {verdict})");
    runtime.block_on(engine.shutdown());
}
