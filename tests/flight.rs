//! Arrow Flight and Flight SQL against a real server process, with arrow-flight's own clients
//! (`FlightSqlServiceClient`, `FlightClient`): statements, prepared statements with parameters,
//! metadata, cancellation of a running query, and a `kill -9` in the middle of concurrent DoPut
//! writers after which every acknowledged batch is there and no batch is there in part.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetTables, SqlInfo};
use arrow_flight::{CancelFlightInfoRequest, CancelStatus, FlightClient, FlightDescriptor, FlightInfo};
use arrow_ipc::writer::IpcWriteOptions;
use arrow_ipc::CompressionType;
use futures::{StreamExt, TryStreamExt};
use streamhouse_engine::arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use streamhouse_engine::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use streamhouse_sql_tests::{connect, TestServer};
use tonic::transport::Channel;

async fn channel(server: &TestServer) -> Channel {
    Channel::from_shared(format!("http://127.0.0.1:{}", server.flight_port)).expect("uri").connect().await.expect("connect to Flight")
}

async fn sql_client(server: &TestServer) -> FlightSqlServiceClient<Channel> {
    FlightSqlServiceClient::new(channel(server).await)
}

/// Every batch of every endpoint of a FlightInfo.
async fn fetch(client: &mut FlightSqlServiceClient<Channel>, info: &FlightInfo) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    for endpoint in &info.endpoint {
        let ticket = endpoint.ticket.clone().expect("ticket");
        let stream = client.do_get(ticket).await.expect("do_get");
        batches.extend(stream.try_collect::<Vec<_>>().await.expect("batches"));
    }
    batches
}

fn int64s(batches: &[RecordBatch], column: usize) -> Vec<i64> {
    batches.iter().flat_map(|b| b.column(column).as_primitive::<Int64Type>().values().to_vec()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_sql_statements_prepared_statements_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &[]);
    let mut client = sql_client(&server).await;

    assert_eq!(client.execute_update("CREATE TOPIC fs (id BIGINT NOT NULL, name TEXT)".into(), None).await.unwrap(), -1);
    let inserted = client.execute_update("INSERT INTO fs VALUES (1, 'a'), (2, 'b'), (3, NULL)".into(), None).await.unwrap();
    assert_eq!(inserted, 3);
    // Seen over pgwire at once.
    let pg = connect(&server).await;
    let count: i64 = pg.query_one("SELECT count(*) FROM fs", &[]).await.unwrap().get(0);
    assert_eq!(count, 3);

    let info = client.execute("SELECT id, name FROM fs ORDER BY id DESC".into(), None).await.unwrap();
    let schema = info.clone().try_decode_schema().unwrap();
    assert_eq!(schema.field(0).name(), "id");
    assert_eq!(schema.field(0).data_type(), &DataType::Int64);
    let batches = fetch(&mut client, &info).await;
    assert_eq!(int64s(&batches, 0), vec![3, 2, 1]);

    // A prepared query with a parameter, executed with two bindings in turn.
    let mut prepared = client.prepare("SELECT name FROM fs WHERE id = $1".into(), None).await.unwrap();
    assert_eq!(prepared.parameter_schema().unwrap().field(0).data_type(), &DataType::Int64);
    assert_eq!(prepared.dataset_schema().unwrap().field(0).name(), "name");
    for (id, expected) in [(2i64, Some("b")), (3, None)] {
        let parameters = Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, true)]));
        prepared.set_parameters(RecordBatch::try_new(parameters, vec![Arc::new(Int64Array::from(vec![id]))]).unwrap()).unwrap();
        let info = prepared.execute().await.unwrap();
        let batches = fetch(&mut client, &info).await;
        let names: Vec<Option<String>> =
            batches.iter().flat_map(|b| b.column(0).as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect::<Vec<_>>()).collect();
        assert_eq!(names, vec![expected.map(str::to_string)]);
    }
    prepared.close().await.unwrap();

    // A prepared INSERT with several parameter rows: one execution each.
    let mut insert = client.prepare("INSERT INTO fs VALUES ($1, $2)".into(), None).await.unwrap();
    let parameters = Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, true), Field::new("$2", DataType::Utf8, true)]));
    let rows = RecordBatch::try_new(
        parameters,
        vec![Arc::new(Int64Array::from(vec![10, 11, 12])), Arc::new(StringArray::from(vec!["x", "y", "z"]))],
    )
    .unwrap();
    insert.set_parameters(rows).unwrap();
    assert_eq!(insert.execute_update().await.unwrap(), 3);
    let sum: i64 = pg.query_one("SELECT sum(id) FROM fs", &[]).await.unwrap().get(0);
    assert_eq!(sum, 1 + 2 + 3 + 10 + 11 + 12);

    // Errors: the SQLSTATE in the message, a gRPC code that says what kind.
    let error = client.execute("SELECT * FROM missing".into(), None).await.unwrap_err().to_string();
    assert!(error.contains("42P01") && error.contains("missing"), "{error}");
    let error = client.begin_transaction().await.unwrap_err().to_string();
    assert!(error.contains("no transactions"), "{error}");

    // Metadata: our topic among the tables, with its schema; the server's facts.
    let request = CommandGetTables {
        catalog: None,
        db_schema_filter_pattern: Some("public".into()),
        table_name_filter_pattern: Some("f%".into()),
        table_types: vec![],
        include_schema: true,
    };
    let info = client.get_tables(request).await.unwrap();
    let batches = fetch(&mut client, &info).await;
    let tables: Vec<String> = batches.iter().flat_map(|b| b.column(2).as_string::<i32>().iter().map(|v| v.unwrap_or("").to_string()).collect::<Vec<_>>()).collect();
    assert_eq!(tables, vec!["fs".to_string()]);
    let types: Vec<String> = batches.iter().flat_map(|b| b.column(3).as_string::<i32>().iter().map(|v| v.unwrap_or("").to_string()).collect::<Vec<_>>()).collect();
    assert_eq!(types, vec!["TOPIC".to_string()]);
    let info = client.get_sql_info(vec![SqlInfo::FlightSqlServerName]).await.unwrap();
    let batches = fetch(&mut client, &info).await;
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_flight_info_stops_a_running_query() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &[]);
    let pg = connect(&server).await;
    pg.batch_execute("CREATE TOPIC c (k BIGINT); INSERT INTO c VALUES (1), (2); CREATE MATERIALIZED VIEW cv AS SELECT k, count(*) AS n FROM c GROUP BY k; FLUSH").await.unwrap();
    let mut sql = sql_client(&server).await;
    // A subscription never ends by itself.
    let info = sql.execute("SUBSCRIBE TO cv".into(), None).await.unwrap();
    let mut stream = sql.do_get(info.endpoint[0].ticket.clone().unwrap()).await.unwrap();
    let first = stream.next().await.expect("the snapshot").expect("a batch");
    assert_eq!(first.num_rows(), 2);
    let mut flight = FlightClient::new(channel(&server).await);
    let result = flight.cancel_flight_info(CancelFlightInfoRequest::new(info.clone())).await.unwrap();
    assert_eq!(result.status, CancelStatus::Cancelled as i32);
    let error = loop {
        match stream.next().await {
            Some(Ok(_)) => continue,
            Some(Err(error)) => break error.to_string(),
            None => panic!("a cancelled query must end with an error, not as if complete"),
        }
    };
    assert!(error.contains("57014") && error.contains("canceling statement"), "{error}");
    // Once finished it cannot be cancelled again; the server answers other queries.
    let again = flight.cancel_flight_info(CancelFlightInfoRequest::new(info)).await.unwrap();
    assert_eq!(again.status, CancelStatus::NotCancellable as i32);
    let count: i64 = pg.query_one("SELECT count(*) FROM c", &[]).await.unwrap().get(0);
    assert_eq!(count, 2);
}

/// Rows in each batch of writer `w`: odd writers send batches large enough to be stored as
/// sent (LZ4-compressed), even ones small batches that are combined with other writes.
fn writer_rows(w: u64) -> i64 {
    if w % 2 == 1 { 1500 } else { 500 }
}

/// Writer `w`'s batch `n`: [`writer_rows`] rows whose `id` is `w * 1_000_000_000 + n * 10_000 + row`.
fn writer_batch(w: u64, n: u64) -> RecordBatch {
    let base = (w * 1_000_000_000 + n * 10_000) as i64;
    let rows = writer_rows(w);
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("batch", DataType::Int64, false)]));
    let ids: Vec<i64> = (0..rows).map(|row| base + row).collect();
    RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(ids)), Arc::new(Int64Array::from(vec![base; rows as usize]))]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_do_put_batches_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(&dir.path().join("data"), &[]);
    connect(&server).await.batch_execute("CREATE TOPIC puts (id BIGINT NOT NULL, batch BIGINT NOT NULL) WITH (partitions = 3)").await.unwrap();
    let acknowledged: Arc<Mutex<BTreeMap<i64, u64>>> = Arc::default();
    for round in 0..3u64 {
        let acks = Arc::new(AtomicU64::new(0));
        let reached = Arc::new(tokio::sync::Notify::new());
        let writers: Vec<_> = (0..4u64)
            .map(|w| {
                let (acks, reached, acknowledged) = (acks.clone(), reached.clone(), acknowledged.clone());
                let port = server.flight_port;
                tokio::spawn(async move {
                    let Ok(channel) = Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await else { return };
                    let mut client = FlightClient::new(channel);
                    let writer = round * 10 + w;
                    let batches = futures::stream::iter((0..).map(move |n| Ok(writer_batch(writer, n))));
                    let options = match writer % 2 {
                        1 => IpcWriteOptions::default().try_with_compression(Some(CompressionType::LZ4_FRAME)).unwrap(),
                        _ => IpcWriteOptions::default(),
                    };
                    let data = FlightDataEncoderBuilder::new()
                        .with_options(options)
                        .with_flight_descriptor(Some(FlightDescriptor::new_path(vec!["puts".into()])))
                        .build(batches);
                    let Ok(mut results) = client.do_put(data).await else { return };
                    let mut n = 0u64;
                    while let Some(Ok(result)) = results.next().await {
                        let ack: serde_json::Value = serde_json::from_slice(&result.app_metadata).expect("acknowledgement JSON");
                        assert_eq!(ack["rows"], writer_rows(writer));
                        let base = (writer * 1_000_000_000 + n * 10_000) as i64;
                        acknowledged.lock().unwrap().insert(base, writer_rows(writer) as u64);
                        n += 1;
                        if acks.fetch_add(1, Ordering::SeqCst) + 1 == 40 {
                            reached.notify_one();
                        }
                    }
                })
            })
            .collect();
        reached.notified().await;
        server.kill();
        for writer in writers {
            writer.await.expect("writer task");
        }
        server.restart();
    }
    let pg = connect(&server).await;
    let rows = pg.query("SELECT batch, count(*) FROM puts GROUP BY batch", &[]).await.unwrap();
    let stored: BTreeMap<i64, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 120, "{} acknowledged", acknowledged.len());
    for (base, rows) in &acknowledged {
        assert_eq!(stored.get(base), Some(&(*rows as i64)), "acknowledged batch {base} is whole in the log");
    }
    for (base, count) in &stored {
        assert_eq!(*count, writer_rows(*base as u64 / 1_000_000_000), "batch {base} is whole or absent, never in part");
    }
    assert!(
        acknowledged.keys().any(|base| writer_rows(*base as u64 / 1_000_000_000) == 1500),
        "LZ4 batches stored as sent were acknowledged too"
    );
    let distinct: i64 = pg.query_one("SELECT count(DISTINCT id) - count(*) FROM puts", &[]).await.unwrap().get(0);
    assert_eq!(distinct, 0, "no batch appended twice");
}

/// A small deterministic generator (xorshift64*), so a failing input can be reproduced from its seed.
struct Inputs(u64);

impl Inputs {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// `valid` with a few bytes flipped, cut short or extended with noise — or pure noise.
    fn mutate(&mut self, valid: &[u8]) -> Vec<u8> {
        let mut bytes = valid.to_vec();
        match self.next() % 4 {
            0 => bytes = (0..self.next() % 64).map(|_| self.next() as u8).collect(),
            1 if !bytes.is_empty() => bytes.truncate((self.next() as usize) % bytes.len()),
            2 => bytes.extend((0..self.next() % 16).map(|_| self.next() as u8)),
            _ => {
                for _ in 0..1 + self.next() % 4 {
                    if !bytes.is_empty() {
                        let at = (self.next() as usize) % bytes.len();
                        bytes[at] ^= 1 << (self.next() % 8);
                    }
                }
            }
        }
        bytes
    }
}

/// Thousands of malformed tickets, descriptors, actions and DoPut messages — mutations of valid
/// ones and noise: each is answered with a status or a result, and the server goes on answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_and_the_server_goes_on() {
    use arrow_flight::sql::{ActionCreatePreparedStatementRequest, CommandStatementQuery, ProstMessageExt};
    use arrow_flight::{Action, FlightData, Ticket};
    use prost::Message;

    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &[]);
    connect(&server).await.batch_execute("CREATE TOPIC f (k BIGINT NOT NULL) WITH (partitions = 1); INSERT INTO f VALUES (1), (2), (3)").await.unwrap();
    let mut flight = FlightClient::new(channel(&server).await);
    let query = CommandStatementQuery { query: "SELECT k FROM f".into(), transaction_id: None }.as_any().encode_to_vec();
    let valid_tickets: Vec<Vec<u8>> = vec![
        br#"{"topic": "f", "partition": 0, "start": 0, "end": 2}"#.to_vec(),
        br#"{"topic": "f", "partition": 0, "compression": "lz4_frame"}"#.to_vec(),
        br#"{"relation": "f"}"#.to_vec(),
        br#"{"subscribe": "f", "snapshot": true}"#.to_vec(),
        query.clone(),
    ];
    let prepare = ActionCreatePreparedStatementRequest { query: "SELECT k FROM f WHERE k = $1".into(), transaction_id: None }.as_any().encode_to_vec();
    let schema_message = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(FlightDescriptor::new_path(vec!["f".into()])))
        .build(futures::stream::iter([Ok(RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)])),
            vec![Arc::new(Int64Array::from(vec![7]))],
        )
        .unwrap())]))
        .try_collect::<Vec<FlightData>>()
        .await
        .unwrap();
    let mut inputs = Inputs(0x5EED_F11E);
    let (mut answered, mut refused) = (0, 0);
    for _ in 0..600 {
        let ticket = valid_tickets[(inputs.next() as usize) % valid_tickets.len()].clone();
        let ticket = inputs.mutate(&ticket);
        // A subscription that happens to stay valid never ends: read one message at most.
        match flight.do_get(Ticket::new(ticket)).await {
            Ok(mut stream) => {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next()).await;
                answered += 1;
            }
            Err(_) => refused += 1,
        }
        let command = inputs.mutate(&query);
        match flight.get_flight_info(FlightDescriptor::new_cmd(command)).await {
            Ok(_) => answered += 1,
            Err(_) => refused += 1,
        }
        let body = inputs.mutate(&prepare);
        let kind = ["CreatePreparedStatement", "ClosePreparedStatement", "CancelFlightInfo", "BeginTransaction"][(inputs.next() % 4) as usize];
        match flight.do_action(Action::new(kind, body)).await {
            Ok(results) => {
                let _ = results.try_collect::<Vec<_>>().await;
                answered += 1;
            }
            Err(_) => refused += 1,
        }
        let mut messages = schema_message.clone();
        let at = (inputs.next() as usize) % messages.len();
        messages[at].data_header = inputs.mutate(&messages[at].data_header).into();
        if inputs.next() % 2 == 0 {
            messages[at].data_body = inputs.mutate(&messages[at].data_body).into();
        }
        match flight.do_put(futures::stream::iter(messages.into_iter().map(Ok))).await {
            Ok(results) => {
                let _ = results.try_collect::<Vec<_>>().await;
                answered += 1;
            }
            Err(_) => refused += 1,
        }
    }
    assert!(refused > 0 && answered + refused == 2400, "{answered} answered, {refused} refused");
    // The server is up and what was written first is intact (a mutated DoPut may have appended a
    // well-formed batch after it).
    let ticket = arrow_flight::Ticket::new(br#"{"topic": "f", "partition": 0, "start": 0, "end": 3}"#.to_vec());
    let batches: Vec<RecordBatch> = flight.do_get(ticket).await.unwrap().try_collect().await.unwrap();
    assert_eq!(int64s(&batches, 0), vec![1, 2, 3]);
    let mut sql = sql_client(&server).await;
    let info = sql.execute("SELECT count(*) FROM f".into(), None).await.unwrap();
    assert!(int64s(&fetch(&mut sql, &info).await, 0)[0] >= 3);
}

/// A DoPut whose client goes away mid-stream — after a truncated message — keeps exactly the
/// batches it acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_do_put_cut_off_mid_stream_keeps_what_it_acknowledged() {
    use arrow_flight::FlightData;

    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &[]);
    connect(&server).await.batch_execute("CREATE TOPIC puts (id BIGINT NOT NULL, batch BIGINT NOT NULL)").await.unwrap();
    let mut messages: Vec<FlightData> = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(FlightDescriptor::new_path(vec!["puts".into()])))
        .build(futures::stream::iter((0..3).map(|n| Ok(writer_batch(2, n)))))
        .try_collect()
        .await
        .unwrap();
    // Schema, batch 0, batch 1, batch 2: the last one cut in half, then the client is gone.
    assert_eq!(messages.len(), 4);
    let last = messages.last_mut().unwrap();
    last.data_body = last.data_body.slice(0..last.data_body.len() / 2);
    let (sender, receiver) = tokio::sync::mpsc::channel::<FlightData>(4);
    let mut client = FlightClient::new(channel(&server).await);
    let requests = tokio_stream_from(receiver);
    let mut messages = messages.into_iter();
    sender.send(messages.next().unwrap()).await.unwrap();
    sender.send(messages.next().unwrap()).await.unwrap();
    let mut results = client.do_put(requests).await.unwrap();
    let first = results.next().await.expect("an acknowledgement").expect("batch 0 appended");
    let ack: serde_json::Value = serde_json::from_slice(&first.app_metadata).unwrap();
    assert_eq!(ack["rows"], 500);
    sender.send(messages.next().unwrap()).await.unwrap();
    let second = results.next().await.expect("an acknowledgement").expect("batch 1 appended");
    assert!(!second.app_metadata.is_empty());
    sender.send(messages.next().unwrap()).await.unwrap();
    drop(sender);
    let error = results.next().await.expect("an answer to the cut message").expect_err("a truncated batch is refused");
    assert!(!error.to_string().is_empty());
    let pg = connect(&server).await;
    let rows = pg.query("SELECT batch, count(*) FROM puts GROUP BY batch ORDER BY batch", &[]).await.unwrap();
    let stored: Vec<(i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(stored, vec![(2_000_000_000, 500), (2_000_010_000, 500)], "the two acknowledged batches, nothing of the third");
}

/// A client that streams its batches without waiting gets one answer per batch, in the order
/// sent, each naming the offsets its rows took; a batch the topic refuses (a NULL in a NOT NULL
/// column) is answered with the error after the batches before it, and nothing after it is
/// appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_do_put_is_answered_in_order_up_to_a_refused_batch() {
    const ROWS: i64 = 5000;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &[]);
    let pg = connect(&server).await;
    pg.batch_execute("CREATE TOPIC streamed (id BIGINT NOT NULL, name TEXT)").await.unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]));
    let batch = |n: i64| {
        // Batch 12 holds a NULL id.
        let ids = Int64Array::from_iter((n * ROWS..(n + 1) * ROWS).map(|id| (n != 12 || id % ROWS != 7).then_some(id)));
        let names = StringArray::from_iter_values((n * ROWS..(n + 1) * ROWS).map(|id| format!("row-{id}")));
        RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(names)]).unwrap()
    };
    let data = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(FlightDescriptor::new_path(vec!["streamed".into()])))
        .build(futures::stream::iter((0..20).map(batch).map(Ok).collect::<Vec<_>>()));
    let mut answers = FlightClient::new(channel(&server).await).do_put(data).await.unwrap();
    for n in 0..12 {
        let ack = answers.next().await.expect("an answer").unwrap_or_else(|e| panic!("batch {n} refused: {e}"));
        let ack: serde_json::Value = serde_json::from_slice(&ack.app_metadata).unwrap();
        assert_eq!(ack["rows"], ROWS, "{ack}");
        assert_eq!(ack["placements"], serde_json::json!([[0, n * ROWS, ROWS]]), "batch {n}: {ack}");
    }
    let error = answers.next().await.expect("the refusal").expect_err("batch 12 has a NULL id");
    assert!(error.to_string().contains("23502"), "{error}");
    assert!(answers.next().await.is_none(), "the stream ends at the refusal");
    let row = pg.query_one("SELECT count(*), max(id) FROM streamed", &[]).await.unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (12 * ROWS, 12 * ROWS - 1));
}


/// Rows `ids` of the topic `z`: the id, and a name (NULL every third row).
fn named_rows(ids: std::ops::Range<i64>) -> RecordBatch {
    let names = StringArray::from_iter(ids.clone().map(|i| (i % 3 != 0).then(|| format!("name-{i}"))));
    RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from_iter_values(ids)) as streamhouse_engine::arrow::array::ArrayRef),
        ("name", Arc::new(names) as _),
    ])
    .unwrap()
}

/// A partition read with `{"compression": "lz4_frame"}` sends each sealed batch as its segment
/// stores it, and the client decodes the same rows a plain read gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lz4_partition_tickets_send_sealed_batches_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(&dir.path().join("data"), &[]);
    connect(&server).await.batch_execute("CREATE TOPIC z (id BIGINT NOT NULL, name TEXT) WITH (partitions = 1)").await.unwrap();
    let acknowledged = |answers: Vec<Result<arrow_flight::PutResult, _>>| answers.into_iter().map(|answer| answer.expect("acknowledged")).count();
    let batches = vec![named_rows(0..1000), named_rows(1000..3000), named_rows(3000..6000)];
    assert_eq!(acknowledged(put_batches(&server, "z", batches, IpcWriteOptions::default()).await), 3);
    // A graceful stop seals every partition: three batches in segments. Then a tail batch.
    assert_eq!(server.stop(), Some(0));
    server.restart();
    assert_eq!(acknowledged(put_batches(&server, "z", vec![named_rows(6000..6500)], IpcWriteOptions::default()).await), 1);

    let mut flight = FlightClient::new(channel(&server).await);
    let read = |ticket: String| {
        let channel = channel(&server);
        async move {
            let mut client = FlightClient::new(channel.await);
            let batches: Vec<RecordBatch> = client.do_get(arrow_flight::Ticket::new(ticket)).await.unwrap().try_collect().await.unwrap();
            batches
        }
    };
    let plain = read(r#"{"topic": "z", "partition": 0}"#.into()).await;
    let lz4 = read(r#"{"topic": "z", "partition": 0, "compression": "lz4_frame"}"#.into()).await;
    assert_eq!(streamhouse_sql_tests::metric(&server, "streamhouse_flight_stored_batches_sent_total"), 3, "the three sealed batches went as stored");
    let concat = |batches: &[RecordBatch]| streamhouse_engine::arrow::compute::concat_batches(&batches[0].schema(), batches).unwrap();
    let (plain, lz4) = (concat(&plain), concat(&lz4));
    assert_eq!(lz4, plain);
    let names: Vec<String> = lz4.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, ["id", "name", "_partition", "_offset", "_timestamp"]);
    assert_eq!(lz4.slice(0, 6500).project(&[0, 1]).unwrap(), concat(&[named_rows(0..6500)]));
    assert_eq!(int64s(&[lz4.clone()], 3), (0..6500).collect::<Vec<_>>());
    assert!(lz4.column(2).as_primitive::<streamhouse_engine::arrow::datatypes::Int32Type>().values().iter().all(|&p| p == 0));

    // A range cut inside the first and third batches: only the second goes as stored.
    let cut = concat(&read(r#"{"topic": "z", "partition": 0, "start": 500, "end": 5800, "compression": "lz4_frame"}"#.into()).await);
    assert_eq!(int64s(&[cut.clone()], 0), (500..5800).collect::<Vec<_>>());
    assert_eq!(cut, lz4.slice(500, 5300));
    assert_eq!(streamhouse_sql_tests::metric(&server, "streamhouse_flight_stored_batches_sent_total"), 4);
    let missing = flight.do_get(arrow_flight::Ticket::new(r#"{"topic": "nope", "partition": 0, "compression": "lz4_frame"}"#)).await;
    assert!(matches!(missing, Err(arrow_flight::error::FlightError::Tonic(status)) if status.code() == tonic::Code::NotFound));
}

/// One DoPut of `batches` to `topic`, encoded with `options`: the server's answer to each batch.
async fn put_batches(
    server: &TestServer,
    topic: &str,
    batches: Vec<RecordBatch>,
    options: IpcWriteOptions,
) -> Vec<Result<arrow_flight::PutResult, arrow_flight::error::FlightError>> {
    let data = FlightDataEncoderBuilder::new()
        .with_options(options)
        .with_flight_descriptor(Some(FlightDescriptor::new_path(vec![topic.into()])))
        .build(futures::stream::iter(batches.into_iter().map(Ok)));
    FlightClient::new(channel(server).await).do_put(data).await.unwrap().collect().await
}

/// Checks that topic `y` holds exactly these rows, read over pgwire in id order.
async fn read_y(server: &TestServer, ids: &[i64], names: &[Option<String>]) {
    let rows = connect(server).await.query("SELECT id, name FROM y ORDER BY id", &[]).await.unwrap();
    let read_ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    let read_names: Vec<Option<String>> = rows.iter().map(|r| r.get(1)).collect();
    assert_eq!(read_ids, ids);
    assert_eq!(read_names, names);
}

/// A DoPut of LZ4-compressed IPC stores each large batch as the client sent it (not encoded a
/// second time): the rows read back the same over SQL after a kill -9 (from the WAL) and over
/// DoGet as stored after a graceful stop (from segments); small batches are appended as their
/// decoded rows; a NULL in a NOT NULL column is refused as in any append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lz4_do_put_batches_are_stored_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(&dir.path().join("data"), &[]);
    connect(&server).await.batch_execute("CREATE TOPIC y (id BIGINT NOT NULL, name TEXT) WITH (partitions = 2)").await.unwrap();
    let lz4 = IpcWriteOptions::default().try_with_compression(Some(CompressionType::LZ4_FRAME)).unwrap();
    let sent = [0..3000, 3000..6000, 6000..6100, 6100..9100];
    let answers = put_batches(&server, "y", sent.iter().cloned().map(named_rows).collect(), lz4.clone()).await;
    let mut placed = Vec::new();
    for (answer, ids) in answers.iter().zip(&sent) {
        let ack: serde_json::Value = serde_json::from_slice(&answer.as_ref().expect("acknowledged").app_metadata).unwrap();
        assert_eq!(ack["rows"], ids.end - ids.start, "{ack}");
        placed.push(ack["placements"][0][0].as_i64().unwrap());
    }
    assert_eq!(answers.len(), 4);
    // Whole batches go round-robin over the two partitions.
    assert_eq!(placed.iter().filter(|&&p| p == 0).count(), 2, "{placed:?}");
    assert_eq!(streamhouse_sql_tests::metric(&server, "streamhouse_flight_stored_batches_received_total"), 3, "the three large batches were stored as sent");

    let expected = named_rows(0..9100);
    let expected_ids: Vec<i64> = (0..9100).collect();
    let expected_names: Vec<Option<String>> = expected.column(1).as_string::<i32>().iter().map(|n| n.map(str::to_string)).collect();
    read_y(&server, &expected_ids, &expected_names).await;
    // From the WAL.
    server.kill();
    server.restart();
    read_y(&server, &expected_ids, &expected_names).await;
    // From segments (a graceful stop seals), read as stored.
    assert_eq!(server.stop(), Some(0));
    server.restart();
    let mut batches = Vec::new();
    for partition in 0..2 {
        let ticket = format!(r#"{{"topic": "y", "partition": {partition}, "compression": "lz4_frame"}}"#);
        let mut client = FlightClient::new(channel(&server).await);
        let read: Vec<RecordBatch> = client.do_get(arrow_flight::Ticket::new(ticket)).await.unwrap().try_collect().await.unwrap();
        batches.extend(read.into_iter().map(|b| b.project(&[0, 1]).unwrap()));
    }
    let all = streamhouse_engine::arrow::compute::concat_batches(&expected.schema(), &batches).unwrap();
    let order = streamhouse_engine::arrow::compute::sort_to_indices(all.column(0), None, None).unwrap();
    assert_eq!(streamhouse_engine::arrow::compute::take_record_batch(&all, &order).unwrap(), expected);
    assert!(streamhouse_sql_tests::metric(&server, "streamhouse_flight_stored_batches_sent_total") >= 3, "the sealed batches went back as stored");

    // A NULL id in a batch stored as sent: refused with the not-null violation, nothing appended.
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]));
    let ids = Int64Array::from_iter((0..2000).map(|i| (i != 1234).then_some(100_000 + i)));
    let nulls = RecordBatch::try_new(schema, vec![Arc::new(ids), Arc::new(StringArray::from_iter_values((0..2000).map(|i| format!("n{i}"))))]).unwrap();
    let answers = put_batches(&server, "y", vec![nulls], lz4).await;
    let error = answers[0].as_ref().expect_err("a NULL id is refused");
    assert!(error.to_string().contains("23502"), "{error}");
    read_y(&server, &expected_ids, &expected_names).await;
}

/// The receiving end of a channel as a stream of FlightData for a DoPut.
fn tokio_stream_from(mut receiver: tokio::sync::mpsc::Receiver<arrow_flight::FlightData>) -> impl futures::Stream<Item = Result<arrow_flight::FlightData, arrow_flight::error::FlightError>> + Send + 'static {
    futures::stream::poll_fn(move |context| receiver.poll_recv(context).map(|item| item.map(Ok)))
}
