//! Arrow Flight over loopback gRPC, against baselines measured in the same run on the same
//! batches:
//! - DoPut of 8192-row batches to a topic (each acknowledged after its WAL fsync) against
//!   encoding the same batches as Arrow IPC with LZ4 and nothing else (the storage target,
//!   ≥ 0.6×): sent as plain IPC (`do_put`: the server encodes them for the log) and as
//!   LZ4-compressed IPC (`do_put_lz4`: the client encodes them, the server decodes them to
//!   validate and stores the client's buffers);
//! - DoGet of a 10 M-row topic's sealed segments (warm), every partition, against decoding the
//!   same segments' Arrow IPC files locally (≥ 0.8×), and against the same rows as
//!   `COPY … TO STDOUT` text made by the engine (the work a pgwire COPY does before its socket;
//!   Flight should be ≥ 10× faster). Read twice: with tickets that take LZ4-compressed IPC
//!   (`do_get_stored`: segment batches sent as stored) and plain tickets (`do_get`: decoded
//!   columns from the segment cache, encoded uncompressed).

use std::sync::Arc;
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::{FlightClient, FlightDescriptor};
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_ipc::CompressionType;
use criterion::{Criterion, Throughput};
use futures::{StreamExt, TryStreamExt};
use streamhouse_benches::{bench_engine, bid_batches, execute, print_ratio, record, runtime, BATCH_ROWS};
use streamhouse_engine::{Engine, QueryOutput};

/// Batches sent by each DoPut iteration, and held by the read benches' topic.
const PUT_BATCHES: usize = 16;
/// 1221 batches of 8192 rows: 10 M rows.
const READ_BATCHES: usize = 1221;

fn encode_ipc_lz4(batch: &RecordBatch) -> Vec<u8> {
    let options = IpcWriteOptions::default().try_with_compression(Some(CompressionType::LZ4_FRAME)).expect("lz4 enabled");
    let mut buffer = Vec::new();
    let mut writer = StreamWriter::try_new_with_options(&mut buffer, &batch.schema(), options).expect("writer");
    writer.write(batch).expect("write");
    writer.finish().expect("finish");
    drop(writer);
    buffer
}

/// A Flight server on a loopback port in this process, and a client connected to it.
async fn start_flight(engine: Arc<Engine>) -> (tonic::transport::Channel, tokio::sync::watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let metrics = Arc::new(streamhouse_flight::FlightMetrics::default());
    tokio::spawn(streamhouse_flight::serve(listener, engine, streamhouse_flight::FlightConfig::default(), metrics, shutdown));
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}")).expect("uri").connect().await.expect("connect");
    (channel, stop)
}

/// Every row of every partition of `topic` through DoGet, the partitions read one after another;
/// with `lz4`, the tickets say the client takes LZ4-compressed IPC.
async fn read_topic(client: &mut FlightClient, topic: &str, lz4: bool) -> usize {
    let info = client.get_flight_info(FlightDescriptor::new_path(vec![topic.to_string()])).await.expect("info");
    let mut rows = 0;
    for endpoint in info.endpoint {
        let mut ticket = endpoint.ticket.expect("ticket");
        if lz4 {
            let mut fields: serde_json::Value = serde_json::from_slice(&ticket.ticket).expect("JSON ticket");
            fields["compression"] = "lz4_frame".into();
            ticket = arrow_flight::Ticket::new(fields.to_string());
        }
        let mut stream = client.do_get(ticket).await.expect("do_get");
        while let Some(batch) = stream.next().await {
            rows += batch.expect("batch").num_rows();
        }
    }
    rows
}

fn flight(c: &mut Criterion) {
    let runtime = runtime();
    let put_batches = bid_batches(PUT_BATCHES);
    let (_dir, engine, mut session) = bench_engine(&runtime);
    let (channel, _stop) = runtime.block_on(start_flight(engine.clone()));
    let mut client = FlightClient::new(channel.clone());

    let mut group = c.benchmark_group("flight");
    group.sample_size(10);
    group.throughput(Throughput::Elements((PUT_BATCHES * BATCH_ROWS) as u64));
    group.bench_function("encode_ipc_lz4", |b| {
        b.iter_custom(|iterations| {
            let started = Instant::now();
            for _ in 0..iterations {
                put_batches.iter().for_each(|batch| {
                    std::hint::black_box(encode_ipc_lz4(batch));
                });
            }
            record("encode_ipc_lz4", started.elapsed(), iterations)
        })
    });
    // The client sends plain IPC (the server encodes it for the log), or LZ4-compressed IPC
    // (the client encodes; the server decodes to validate and stores the buffers as sent).
    for (name, lz4) in [("do_put", false), ("do_put_lz4", true)] {
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter_custom(|iterations| {
                let batches = put_batches.clone();
                let mut client = FlightClient::new(channel.clone());
                async move {
                    let options = match lz4 {
                        true => IpcWriteOptions::default().try_with_compression(Some(CompressionType::LZ4_FRAME)).expect("lz4 enabled"),
                        false => IpcWriteOptions::default(),
                    };
                    let started = Instant::now();
                    for _ in 0..iterations {
                        let data = FlightDataEncoderBuilder::new()
                            .with_options(options.clone())
                            .with_flight_descriptor(Some(FlightDescriptor::new_path(vec!["bids".into()])))
                            .build(futures::stream::iter(batches.clone().into_iter().map(Ok)));
                        let acknowledged: Vec<_> = client.do_put(data).await.expect("do_put").try_collect().await.expect("acks");
                        assert_eq!(acknowledged.len(), PUT_BATCHES);
                    }
                    record(name, started.elapsed(), iterations)
                }
            })
        });
    }

    // A topic of sealed segments for the reads, its segments' files found in the data directory.
    runtime.block_on(async {
        execute(&mut session, "CREATE TOPIC reads (auction BIGINT NOT NULL, bidder BIGINT NOT NULL, price BIGINT NOT NULL, channel TEXT NOT NULL, url TEXT NOT NULL, date_time TIMESTAMP NOT NULL) WITH (partitions = 2)").await;
        let topic = engine.storage().topic("reads").expect("topic");
        for (index, chunk) in bid_batches(READ_BATCHES).chunks(8).enumerate() {
            engine.storage().append(&topic, chunk.to_vec()).await.expect("append");
            if index % 8 == 7 {
                engine.storage().seal_all().await.expect("seal");
            }
        }
        engine.storage().seal_all().await.expect("seal");
    });
    let topic_id = engine.storage().topic("reads").expect("topic").id();
    // The local object store is the data directory itself (docs/architecture.md).
    let segment_files: Vec<std::path::PathBuf> = walk(&engine.storage().config().data_dir.join("topics").join(topic_id.to_string()));
    assert!(!segment_files.is_empty(), "the read topic has sealed segments");
    let read_rows = (READ_BATCHES * BATCH_ROWS) as u64;
    assert_eq!(runtime.block_on(read_topic(&mut client, "reads", false)) as u64, read_rows, "every row read back");

    group.throughput(Throughput::Elements(read_rows));
    group.bench_function("decode_segments_locally", |b| {
        b.iter_custom(|iterations| {
            let started = Instant::now();
            for _ in 0..iterations {
                let mut rows = 0;
                for path in &segment_files {
                    let file = std::fs::File::open(path).expect("segment file");
                    for batch in FileReader::try_new(file, None).expect("reader") {
                        rows += batch.expect("batch").num_rows();
                    }
                }
                assert!(rows as u64 >= read_rows);
            }
            record("decode_segments_locally", started.elapsed(), iterations)
        })
    });
    for (name, lz4) in [("do_get_stored", true), ("do_get", false)] {
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter_custom(|iterations| {
                let mut client = FlightClient::new(channel.clone());
                async move {
                    let started = Instant::now();
                    for _ in 0..iterations {
                        assert_eq!(read_topic(&mut client, "reads", lz4).await as u64, read_rows);
                    }
                    record(name, started.elapsed(), iterations)
                }
            })
        });
    }
    group.bench_function("copy_to_stdout_text", |b| {
        b.to_async(&runtime).iter_custom(|iterations| {
            let engine = engine.clone();
            async move {
                let mut session = engine.superuser_session().expect("session");
                let started = Instant::now();
                for _ in 0..iterations {
                    let prepared = session.prepare("COPY (SELECT * FROM reads) TO STDOUT").await.expect("prepare");
                    let QueryOutput::CopyOut { mut stream, encoder, .. } = session.execute(&prepared, vec![]).await.expect("copy") else {
                        panic!("COPY TO STDOUT gives copy data")
                    };
                    let mut bytes = 0usize;
                    while let Some(batch) = stream.next().await {
                        bytes += encoder.encode(&batch.expect("batch")).expect("encode").len();
                    }
                    assert!(bytes > 0);
                }
                record("copy_to_stdout_text", started.elapsed(), iterations)
            }
        })
    });
    group.finish();
    print_ratio("do_put", "encode_ipc_lz4", 0.6);
    print_ratio("do_put_lz4", "encode_ipc_lz4", 0.6);
    print_ratio("do_get_stored", "decode_segments_locally", 0.8);
    print_ratio("do_get_stored", "copy_to_stdout_text", 10.0);
    print_ratio("do_get", "decode_segments_locally", 0.8);
    print_ratio("do_get", "copy_to_stdout_text", 10.0);
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

criterion::criterion_group!(benches, flight);
criterion::criterion_main!(benches);
