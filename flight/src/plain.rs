//! Plain Flight: topics read and written as Arrow without SQL.
//!
//! - A topic's path (`FlightDescriptor::new_path(["bids"])`) has one endpoint per partition,
//!   each a ticket for that partition's offsets as of the request, so a client can read the
//!   partitions in parallel and get exactly the rows acknowledged then. The rows come as the
//!   log holds them, with `_partition`, `_offset` and `_timestamp` after the user columns.
//! - A keyed table's or view's path has one endpoint whose ticket reads its rows (`SELECT *`).
//! - DoPut to a topic's path appends each batch the client sends, atomically, and answers each
//!   with a `PutResult` once it is durable: `{"rows": n, "placements": [[partition, first
//!   offset, rows], …]}` in `app_metadata`, in the order sent. A schema that does not fit the
//!   topic is refused before anything is appended. Batches are handed to the log as they come,
//!   up to `do_put_appends_in_flight` of them waiting for their fsync at once (they share it).
//! - Flight SQL's bulk ingest (`CommandStatementIngest`, ADBC's `adbc_ingest`) appends a whole
//!   stream atomically, creating the topic from the stream's schema when asked.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{CommandStatementIngest, TableExistsOption, TableNotExistOption};
use arrow_flight::{FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, PutResult, SchemaAsIpc, Ticket};
use arrow_ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions};
use arrow_ipc::CompressionType;
use futures::future::BoxFuture;
use futures::{Stream, StreamExt, TryStreamExt};
use streamhouse_engine::arrow::array::RecordBatch;
use streamhouse_engine::arrow::datatypes::{Schema, SchemaRef};
use streamhouse_engine::bulk::{Placements, Relation, RelationKind, StoredPiece};
use streamhouse_engine::EngineError;
use tonic::{Request, Response, Status};

use crate::auth::Principal;
use streamhouse_engine::auth::audit::AuditKind;
use streamhouse_engine::auth::privileges::Privilege;
use crate::sql::{collect_batches, SqlService};
use crate::status::engine_status;
use crate::ticket::{Compression, PlainTicket};
use crate::Shared;

type DoGetStream = <SqlService as FlightService>::DoGetStream;
type DoPutStream = <SqlService as FlightService>::DoPutStream;

fn status(error: EngineError) -> Status {
    engine_status(&error)
}

/// Checks that `principal` holds `needs` for `request` (what it asked, for the audit trail, where
/// a refusal is recorded).
async fn authorize(shared: &Shared, principal: &Principal, needs: &[(String, Privilege)], request: &str) -> Result<(), Status> {
    let Err(error) = shared.engine.authorize(&principal.role, needs) else { return Ok(()) };
    if error.sqlstate() == "42501" {
        shared.engine.audit(principal.audit_entry(AuditKind::Denied, format!("{request} -- refused: {error}"))).await;
    }
    Err(status(error))
}

/// The relation a path names: one element, the relation's name.
fn relation_at(shared: &Shared, path: &[String]) -> Result<Relation, Status> {
    let [name] = path else {
        return Err(Status::invalid_argument(format!(
            "a path names one topic, table or view, as [\"bids\"]; got {} elements",
            path.len()
        )));
    };
    shared.engine.relation(name).ok_or_else(|| status(EngineError::UndefinedTable(name.clone())))
}

/// Double-quoted, for SQL built from a name.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The schema DoGet of a path's tickets returns.
pub(crate) fn path_schema(shared: &Shared, path: &[String]) -> Result<Schema, Status> {
    let relation = relation_at(shared, path)?;
    Ok(match relation.kind {
        RelationKind::Topic => shared.engine.log_read_schema(&relation.name).map_err(status)?.as_ref().clone(),
        RelationKind::KeyedTable | RelationKind::MaterializedView => relation.schema.as_ref().clone(),
    })
}

fn relation_info(shared: &Shared, relation: &Relation) -> Result<FlightInfo, Status> {
    let descriptor = FlightDescriptor::new_path(vec![relation.name.clone()]);
    let internal = |e: streamhouse_engine::arrow::error::ArrowError| Status::internal(e.to_string());
    match relation.kind {
        RelationKind::Topic => {
            let schema = shared.engine.log_read_schema(&relation.name).map_err(status)?;
            let ranges = shared.engine.partition_ranges(&relation.name).map_err(status)?;
            let total: u64 = ranges.iter().map(|r| r.high - r.low).sum();
            let endpoints = ranges.iter().map(|range| {
                let ticket = PlainTicket::Partition {
                    topic: relation.name.clone(),
                    partition: range.partition,
                    start: range.low,
                    end: Some(range.high),
                    compression: None,
                };
                FlightEndpoint::new().with_ticket(Ticket::new(ticket.encode()))
            });
            Ok(FlightInfo::new()
                .try_with_schema(&schema)
                .map_err(internal)?
                .with_endpoints(endpoints.collect())
                .with_descriptor(descriptor)
                .with_total_records(total as i64))
        }
        RelationKind::KeyedTable | RelationKind::MaterializedView => {
            let ticket = PlainTicket::Relation { relation: relation.name.clone() };
            Ok(FlightInfo::new()
                .try_with_schema(&relation.schema)
                .map_err(internal)?
                .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket.encode())))
                .with_descriptor(descriptor))
        }
    }
}

/// `GetFlightInfo` of a path.
pub(crate) fn flight_info(shared: &Shared, path: &[String]) -> Result<FlightInfo, Status> {
    relation_info(shared, &relation_at(shared, path)?)
}

/// `ListFlights`: every topic, keyed table and view.
pub(crate) fn list_flights(shared: &Shared) -> Result<Vec<FlightInfo>, Status> {
    let mut infos = Vec::new();
    for relation in shared.engine.relations() {
        match relation_info(shared, &relation) {
            Ok(info) => infos.push(info),
            // Dropped since it was listed.
            Err(error) if error.code() == tonic::Code::NotFound => {}
            Err(error) => return Err(error),
        }
    }
    Ok(infos)
}

/// `DoGet` of a plain ticket.
pub(crate) async fn do_get(sql: &SqlService, principal: &Principal, ticket: PlainTicket) -> Result<Response<DoGetStream>, Status> {
    let shared = &sql.shared;
    let statement = match ticket {
        PlainTicket::Partition { topic, partition, start, end, compression } => {
            let relation = shared.engine.relation(&topic).ok_or_else(|| status(EngineError::UndefinedTable(topic.clone())))?;
            if relation.kind == RelationKind::MaterializedView {
                return Err(Status::invalid_argument(format!("\"{topic}\" is a materialized view: read it with the ticket {{\"relation\": \"{topic}\"}}")));
            }
            authorize(shared, principal, &[(topic.clone(), Privilege::Select)], &format!("DoGet of partition {partition} of {topic}")).await?;
            if partition >= relation.partitions {
                return Err(Status::invalid_argument(format!("topic \"{topic}\" has {} partitions; there is no partition {partition}", relation.partitions)));
            }
            if compression == Some(Compression::Lz4Frame) {
                let limit = shared.config.flight_data_bytes_max;
                let (schema, pieces) = shared.engine.read_partition_stored(&topic, partition, start, end, limit).map_err(status)?;
                let pieces = crate::queries::guard(pieces, None, shared.shutdown.clone());
                return Ok(Response::new(stored_flight_data(shared, schema, pieces)));
            }
            let stream = shared.engine.read_partition(&topic, partition, start, end).map_err(status)?;
            let schema = stream.schema();
            let batches = crate::queries::guarded(stream, None, shared.shutdown.clone());
            return Ok(Response::new(sql.encode(schema, batches)));
        }
        PlainTicket::Relation { relation } => format!("SELECT * FROM {}", quoted(&relation)),
        PlainTicket::Subscribe { subscribe, snapshot } => format!("SUBSCRIBE TO {} WITH (snapshot = {snapshot})", quoted(&subscribe)),
    };
    let prepared = sql.session(principal)?.prepare(&statement).await.map_err(status)?;
    sql.stream_query(principal, &prepared, Vec::new(), None).await
}

/// A partition read as stored ([`streamhouse_engine::Engine::read_partition_stored`]) as Flight
/// data with LZ4_FRAME-compressed buffers: a segment's messages as they are, other rows encoded.
fn stored_flight_data(shared: &Shared, schema: SchemaRef, pieces: impl Stream<Item = Result<StoredPiece, FlightError>> + Send + 'static) -> DoGetStream {
    let options = match IpcWriteOptions::default().try_with_compression(Some(CompressionType::LZ4_FRAME)) {
        Ok(options) => options,
        Err(error) => return Box::pin(futures::stream::once(async move { Err(Status::internal(error.to_string())) })),
    };
    let header = FlightData::from(SchemaAsIpc::new(&schema, &options));
    let (limit, metrics) = (shared.config.flight_data_bytes_max, shared.metrics.clone());
    let data = pieces
        .map(move |piece| -> Result<Vec<FlightData>, FlightError> {
            let piece = piece?;
            metrics.rows_sent.add(piece.rows());
            match piece {
                StoredPiece::Message { metadata, body, .. } => {
                    metrics.stored_batches_sent.add(1);
                    Ok(vec![FlightData { data_header: metadata.into(), data_body: body.into(), ..Default::default() }])
                }
                StoredPiece::Batch(batch) => encode_to_fit(&batch, &options, limit),
            }
        })
        .map_ok(|messages| futures::stream::iter(messages.into_iter().map(Ok)))
        .try_flatten();
    Box::pin(futures::stream::once(async move { Ok(header) }).chain(data).map_err(crate::status::flight_status))
}

/// A batch as record batch messages of at most `limit` bytes each where rows allow: cut by an
/// estimate from its size in memory, then halved while a piece is still over.
fn encode_to_fit(batch: &RecordBatch, options: &IpcWriteOptions, limit: usize) -> Result<Vec<FlightData>, FlightError> {
    let rows = batch.num_rows();
    let size = batch.get_array_memory_size().max(1);
    let per_piece = (rows.saturating_mul(limit) / size).clamp(1, rows.max(1));
    let mut pending: Vec<RecordBatch> = (0..rows).step_by(per_piece).rev().map(|start| batch.slice(start, per_piece.min(rows - start))).collect();
    let generator = IpcDataGenerator::default();
    let mut messages = Vec::with_capacity(pending.len());
    while let Some(piece) = pending.pop() {
        let mut tracker = DictionaryTracker::new(true);
        let (_, encoded) = generator.encode(&piece, &mut tracker, options, &mut IpcWriteContext::default())?;
        let piece_rows = piece.num_rows();
        if encoded.ipc_message.len() + encoded.arrow_data.len() > limit && piece_rows > 1 {
            pending.push(piece.slice(piece_rows / 2, piece_rows - piece_rows / 2));
            pending.push(piece.slice(0, piece_rows / 2));
        } else {
            messages.push(FlightData::from(encoded));
        }
    }
    Ok(messages)
}

/// A message of a DoPut stream after its schema.
enum Incoming {
    /// A record batch message as the client encoded it, in the topic's types: the engine
    /// decodes it, and stores it as sent when it can ([`streamhouse_engine::Engine::begin_append_message`]).
    Message { metadata: bytes::Bytes, body: bytes::Bytes },
    /// A batch decoded here (its types are converted to the topic's).
    Batch(RecordBatch),
    /// Another schema: refused.
    Schema,
    /// Nothing to append (application metadata only).
    Nothing,
}

/// The messages of a DoPut stream after its schema: record batch messages as they came when the
/// schema has the topic's types, otherwise decoded here.
fn incoming(
    first: arrow_flight::FlightData,
    rest: impl Stream<Item = Result<arrow_flight::FlightData, FlightError>> + Send + 'static,
    as_sent: bool,
) -> Pin<Box<dyn Stream<Item = Result<Incoming, Status>> + Send>> {
    if as_sent {
        return Box::pin(rest.map_err(crate::status::flight_status).and_then(|data| async move {
            let message = arrow_ipc::root_as_message(&data.data_header).map_err(|e| Status::invalid_argument(format!("a DoPut message is not an IPC message: {e}")))?;
            match message.header_type() {
                arrow_ipc::MessageHeader::RecordBatch => Ok(Incoming::Message { metadata: data.data_header, body: data.data_body }),
                arrow_ipc::MessageHeader::Schema => Ok(Incoming::Schema),
                arrow_ipc::MessageHeader::DictionaryBatch => {
                    Err(Status::invalid_argument("a dictionary batch in a DoPut stream whose schema has no dictionary-encoded column"))
                }
                other => Err(Status::invalid_argument(format!("an IPC message of type {other:?} in a DoPut stream"))),
            }
        }));
    }
    let decoded = FlightDataDecoder::new(futures::stream::once(async move { Ok(first) }).chain(rest)).skip(1);
    Box::pin(decoded.map_err(crate::status::flight_status).map_ok(|data| match data.payload {
        DecodedPayload::RecordBatch(batch) => Incoming::Batch(batch),
        DecodedPayload::Schema(_) => Incoming::Schema,
        DecodedPayload::None => Incoming::Nothing,
    }))
}

/// `DoPut` to a topic's path: each batch appended and acknowledged on its own.
pub(crate) async fn do_put(shared: &Arc<Shared>, request: Request<PeekableFlightDataStream>) -> Result<Response<DoPutStream>, Status> {
    let principal = crate::auth::principal(&request)?;
    let mut stream = request.into_inner();
    let path = match stream.peek().await {
        Some(Ok(first)) => first.flight_descriptor.as_ref().map(|d| d.path.clone()).unwrap_or_default(),
        Some(Err(error)) => return Err(error.clone()),
        None => return Err(Status::invalid_argument("DoPut without a message")),
    };
    let relation = relation_at(shared, &path)?;
    if relation.kind == RelationKind::MaterializedView {
        return Err(Status::invalid_argument(format!("\"{}\" is a materialized view: only topics and tables take DoPut", relation.name)));
    }
    authorize(shared, &principal, &[(relation.name.clone(), Privilege::Insert)], &format!("DoPut to {}", relation.name)).await?;
    let mut messages = Box::pin(crate::sql::ipc_messages(stream));
    // The schema comes first: refuse a mismatch before anything is appended.
    let first = match messages.next().await {
        Some(Ok(first)) => first,
        Some(Err(error)) => return Err(crate::status::flight_status(error)),
        None => return Err(Status::invalid_argument("DoPut without a schema")),
    };
    let schema = Schema::try_from(&first).map_err(|_| Status::invalid_argument("a DoPut stream starts with its schema"))?;
    shared.engine.check_append_schema(&relation.name, &schema).map_err(status)?;
    let as_sent = shared.engine.appends_messages_as_sent(&relation.name, &schema).map_err(status)?;
    let messages = incoming(first, messages, as_sent);
    let put = Put { shared: shared.clone(), topic: relation.name, messages, pending: VecDeque::new(), failed: None, input_done: false };
    let results = futures::stream::unfold(Some(put), |put| async move {
        let mut put = put?;
        let answer = put.next_answer().await?;
        let more = answer.is_ok();
        Some((answer, more.then_some(put)))
    });
    Ok(Response::new(Box::pin(results)))
}

/// A DoPut under way. Each batch is handed to the log as it arrives and acknowledged, in
/// order, once its fsync is done; up to `do_put_appends_in_flight` appends wait for theirs at
/// once, so consecutive batches share fsyncs.
struct Put {
    shared: Arc<Shared>,
    topic: String,
    messages: Pin<Box<dyn Stream<Item = Result<Incoming, Status>> + Send>>,
    /// Appends begun, oldest first: their rows, and their durability to await.
    pending: VecDeque<(u64, BoxFuture<'static, streamhouse_engine::Result<Placements>>)>,
    /// What ended the input with an error: answered once every begun append is.
    failed: Option<Status>,
    input_done: bool,
}

impl Put {
    /// The next answer: the oldest append's acknowledgement, or the error that ends the stream;
    /// `None` once every batch is acknowledged.
    async fn next_answer(&mut self) -> Option<Result<PutResult, Status>> {
        loop {
            if self.pending.is_empty() && (self.input_done || self.failed.is_some()) {
                return self.failed.take().map(Err);
            }
            let reading = !self.input_done && self.failed.is_none() && self.pending.len() < self.shared.config.do_put_appends_in_flight.max(1);
            // The oldest append's fsync first; otherwise the next message, while there is room.
            let next = std::future::poll_fn(|cx| {
                if let Some((_, durable)) = self.pending.front_mut() {
                    if let Poll::Ready(durable) = durable.as_mut().poll(cx) {
                        return Poll::Ready(Next::Durable(durable));
                    }
                }
                match reading {
                    true => self.messages.as_mut().poll_next(cx).map(Next::Message),
                    false => Poll::Pending,
                }
            })
            .await;
            match next {
                Next::Durable(durable) => {
                    let (rows, _) = self.pending.pop_front()?;
                    return Some(match durable {
                        Ok(placements) => {
                            self.shared.metrics.rows_received.add(rows);
                            let acknowledgement = serde_json::json!({ "rows": rows, "placements": placements });
                            Ok(PutResult { app_metadata: acknowledgement.to_string().into() })
                        }
                        Err(error) => Err(status(error)),
                    });
                }
                Next::Message(message) => match message {
                    None => self.input_done = true,
                    Some(Ok(Incoming::Batch(batch))) => {
                        let rows = batch.num_rows() as u64;
                        match self.shared.engine.begin_append_batches(&self.topic, vec![batch]).await {
                            Ok(append) => self.pending.push_back((rows, Box::pin(append.durable()))),
                            Err(error) => self.failed = Some(status(error)),
                        }
                    }
                    Some(Ok(Incoming::Message { metadata, body })) => {
                        match self.shared.engine.begin_append_message(&self.topic, &metadata, body).await {
                            Ok((append, rows, stored)) => {
                                if stored {
                                    self.shared.metrics.stored_batches_received.add(1);
                                }
                                self.pending.push_back((rows, Box::pin(append.durable())));
                            }
                            Err(error) => self.failed = Some(status(error)),
                        }
                    }
                    Some(Ok(Incoming::Nothing)) => {}
                    Some(Ok(Incoming::Schema)) => self.failed = Some(Status::invalid_argument("a DoPut stream has one schema")),
                    Some(Err(error)) => self.failed = Some(error),
                },
            }
        }
    }
}

/// What a DoPut waits for next.
enum Next {
    Durable(streamhouse_engine::Result<Placements>),
    Message(Option<Result<Incoming, Status>>),
}

/// Flight SQL bulk ingest: the whole stream appended atomically to a topic, created first from
/// the stream's schema if the options ask for it.
pub(crate) async fn ingest(shared: &Shared, principal: &Principal, command: CommandStatementIngest, stream: PeekableFlightDataStream) -> Result<i64, Status> {
    if command.transaction_id.is_some() {
        return Err(Status::unimplemented("StreamHouse has no transactions: ingest commits on its own"));
    }
    if command.temporary {
        return Err(Status::unimplemented("temporary tables are not supported: ingest into a topic"));
    }
    if let Some(schema) = command.schema.as_deref().filter(|s| *s != crate::metadata::SCHEMA_PUBLIC) {
        return Err(Status::not_found(format!("schema \"{schema}\" does not exist: topics live in \"public\" (SQLSTATE 3F000)")));
    }
    let options = command.table_definition_options.unwrap_or_default();
    let if_missing = TableNotExistOption::try_from(options.if_not_exist).unwrap_or(TableNotExistOption::Unspecified);
    let if_present = TableExistsOption::try_from(options.if_exists).unwrap_or(TableExistsOption::Unspecified);
    let (schema, batches) = collect_batches(stream, shared.engine.config().statement_bytes_max).await?;
    let table = command.table;
    match shared.engine.relation(&table) {
        Some(relation) if relation.kind == RelationKind::MaterializedView => {
            return Err(Status::invalid_argument(format!("\"{table}\" is a materialized view: ingest goes into a topic")))
        }
        Some(_) => match if_present {
            TableExistsOption::Append => {}
            TableExistsOption::Replace => {
                return Err(Status::unimplemented(format!(
                    "replacing the rows of \"{table}\": a topic's log is append-only; DROP TOPIC {table} and ingest again"
                )))
            }
            TableExistsOption::Fail | TableExistsOption::Unspecified => return Err(status(EngineError::DuplicateTable(table))),
        },
        None => match if_missing {
            TableNotExistOption::Create => {
                let schema = schema.ok_or_else(|| Status::invalid_argument("ingest without a schema cannot create a topic"))?;
                authorize(shared, principal, &[("public".into(), Privilege::Create)], &format!("ingest creating {table}")).await?;
                shared.engine.create_topic_for_schema(&table, &schema).map_err(status)?;
                shared.engine.record_owner(&principal.role, &table).map_err(status)?;
                let detail = format!("ingest created topic {table} ({} columns)", schema.fields().len());
                shared.engine.audit(principal.audit_entry(AuditKind::Ddl, detail)).await;
            }
            TableNotExistOption::Fail | TableNotExistOption::Unspecified => return Err(status(EngineError::UndefinedTable(table))),
        },
    }
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    authorize(shared, principal, &[(table.clone(), Privilege::Insert)], &format!("ingest into {table}")).await?;
    shared.engine.append_batches(&table, batches).await.map_err(status)?;
    shared.metrics.rows_received.add(rows);
    Ok(rows as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_for_sql() {
        assert_eq!(quoted("bids"), "\"bids\"");
        assert_eq!(quoted("we\"ird"), "\"we\"\"ird\"");
    }
}
