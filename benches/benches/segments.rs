//! Segment files and the segment index, each against a baseline measured in the same run:
//! encoding a million bids as a segment (Arrow IPC file + LZ4_FRAME, with the `_offset` and
//! `_timestamp` columns and the stats) against plain Arrow IPC + LZ4 encoding of the same
//! batches; decoding it (every column, and a two-column projection) against plain IPC decoding
//! of the baseline's file; and looking up the segments of an offset range in the SQLite catalog
//! (10 000 segments in one partition) against the same range query on an in-memory BTreeMap.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_ipc::CompressionType;
use criterion::{Criterion, Throughput};
use streamhouse_benches::{bid_batches, bid_schema, bid_topic, print_ratio, record, scratch_dir, BATCH_ROWS};
use streamhouse_catalog::{Catalog, SegmentMeta, SqliteCatalog};
use streamhouse_storage::segment::{encode_segment, read_segment};
use streamhouse_storage::StoredBatch;

const BATCHES: usize = 128; // about one million rows
const SEGMENTS: u64 = 10_000;
const ROWS_PER_SEGMENT: u64 = 1000;

fn ipc_lz4_file(batches: &[RecordBatch]) -> Vec<u8> {
    let options = IpcWriteOptions::default().try_with_compression(Some(CompressionType::LZ4_FRAME)).expect("lz4 enabled");
    let mut buffer = Vec::new();
    let mut writer = FileWriter::try_new_with_options(&mut buffer, &bid_schema(), options).expect("writer");
    for batch in batches {
        writer.write(batch).expect("write");
    }
    writer.finish().expect("finish");
    drop(writer);
    buffer
}

fn timed(name: &str, iterations: u64, mut work: impl FnMut()) -> Duration {
    let started = Instant::now();
    for _ in 0..iterations {
        work();
    }
    record(name, started.elapsed(), iterations)
}

fn segments(c: &mut Criterion) {
    let batches = bid_batches(BATCHES);
    let stored: Vec<StoredBatch> = batches
        .iter()
        .enumerate()
        .map(|(i, batch)| StoredBatch::new((i * BATCH_ROWS) as u64, 1_700_000_000_000_000, batch.clone()))
        .collect();
    let schema = bid_schema();
    let (segment, _) = encode_segment(&schema, &stored, Some(5)).expect("encode");
    let baseline_file = ipc_lz4_file(&batches);

    let mut group = c.benchmark_group("segments");
    group.throughput(Throughput::Elements((BATCHES * BATCH_ROWS) as u64));
    group.sample_size(10).measurement_time(Duration::from_secs(6));
    group.bench_function("baseline_ipc_lz4_file_encode", |b| {
        b.iter_custom(|n| timed("baseline_ipc_lz4_file_encode", n, || drop(std::hint::black_box(ipc_lz4_file(&batches)))))
    });
    group.bench_function("segment_encode", |b| {
        b.iter_custom(|n| timed("segment_encode", n, || drop(std::hint::black_box(encode_segment(&schema, &stored, Some(5)).expect("encode")))))
    });
    // What the sealer does: the rows were LZ4-encoded by the append (for the WAL); the segment
    // copies that encoding and encodes only `_offset` and `_timestamp`.
    let appended: Vec<StoredBatch> = stored
        .iter()
        .map(|s| StoredBatch::encoded(s.base_offset, s.timestamp_us, s.batch.clone()).expect("encode"))
        .collect();
    group.bench_function("segment_seal_from_append_encoding", |b| {
        b.iter_custom(|n| {
            timed("segment_seal_from_append_encoding", n, || {
                drop(std::hint::black_box(encode_segment(&schema, &appended, Some(5)).expect("encode")))
            })
        })
    });
    group.bench_function("baseline_ipc_lz4_file_decode", |b| {
        b.iter_custom(|n| {
            timed("baseline_ipc_lz4_file_decode", n, || {
                let reader = FileReader::try_new(Cursor::new(&baseline_file[..]), None).expect("reader");
                std::hint::black_box(reader.map(|b| b.expect("batch").num_rows()).sum::<usize>());
            })
        })
    });
    for (name, projection) in [("segment_decode_all", None), ("segment_decode_two_columns", Some(vec![0, 2]))] {
        group.bench_function(name, |b| {
            b.iter_custom(|n| {
                timed(name, n, || {
                    let batches = read_segment(segment.clone(), projection.clone()).expect("read");
                    std::hint::black_box(batches.map(|b| b.expect("batch").num_rows()).sum::<usize>());
                })
            })
        });
    }

    // The segment index: SEGMENTS segments of one partition, looked up by offset range.
    let dir = scratch_dir();
    let catalog = SqliteCatalog::open(&dir.path().join("catalog.db")).expect("catalog");
    let topic = catalog.create_topic(&bid_topic("t")).expect("topic");
    let mut index = BTreeMap::new();
    for i in 0..SEGMENTS {
        let meta = SegmentMeta {
            topic_id: topic.id,
            partition: 0,
            base_offset: i * ROWS_PER_SEGMENT,
            last_offset: (i + 1) * ROWS_PER_SEGMENT - 1,
            row_count: ROWS_PER_SEGMENT,
            bytes: 1 << 20,
            min_timestamp_us: i as i64,
            max_timestamp_us: i as i64,
            min_event_time_us: None,
            max_event_time_us: None,
            object_key: format!("topics/1/0/{:020}.arrow", i * ROWS_PER_SEGMENT),
        };
        catalog.register_segment(&meta).expect("register");
        index.insert(meta.base_offset, meta);
    }
    let lookups: Vec<u64> = (0..1000u64).map(|i| (i * 7919 % SEGMENTS) * ROWS_PER_SEGMENT + 17).collect();
    let span = 10 * ROWS_PER_SEGMENT;
    group.throughput(Throughput::Elements(lookups.len() as u64));
    group.bench_function("baseline_btreemap_range", |b| {
        b.iter_custom(|n| {
            timed("baseline_btreemap_range", n, || {
                for &from in &lookups {
                    // Segments holding offsets in [from, from + span): the one starting at or
                    // before `from`, and those starting inside the range.
                    let first = index.range(..=from).next_back().map(|(_, s)| s.clone());
                    let rest: Vec<SegmentMeta> = index.range(from + 1..from + span).map(|(_, s)| s.clone()).collect();
                    std::hint::black_box((first, rest));
                }
            })
        })
    });
    group.bench_function("catalog_segment_lookup", |b| {
        b.iter_custom(|n| {
            timed("catalog_segment_lookup", n, || {
                for &from in &lookups {
                    std::hint::black_box(catalog.segments(topic.id, 0, from, from + span).expect("lookup"));
                }
            })
        })
    });
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    segments(&mut criterion);
    criterion.final_summary();
    println!();
    print_ratio("segment_encode", "baseline_ipc_lz4_file_encode", 0.8);
    // The sealer's real work (the append already compressed the rows): expect it far faster.
    print_ratio("segment_seal_from_append_encoding", "baseline_ipc_lz4_file_encode", 1.0);
    print_ratio("segment_decode_all", "baseline_ipc_lz4_file_decode", 0.8);
    print_ratio("segment_decode_two_columns", "baseline_ipc_lz4_file_decode", 1.0);
    // Context, not a goal: SQLite answers in a third of a millisecond, paid once per partition
    // per scan or epoch.
    print_ratio("catalog_segment_lookup", "baseline_btreemap_range", 0.001);
}
