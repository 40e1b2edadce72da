//! Flight SQL: statements and prepared statements run by engine sessions, metadata from the
//! engine's relations, bulk ingest into topics. Each request runs in a session of its own, so
//! `SET` lasts one statement; every statement commits on its own (there are no transactions).
//!
//! Statements that return rows run when the client fetches them (DoGet) and stream batch by
//! batch. Statements that return none (DDL, INSERT, FLUSH …) run where the client sends them:
//! on the update path (DoPut) and, because ADBC sends every statement on the query path, also
//! at GetFlightInfo, which then answers an empty result with the row count in `total_records`.

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{GetDbSchemasBuilder, GetTablesBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginSavepointRequest, ActionBeginSavepointResult, ActionBeginTransactionRequest, ActionBeginTransactionResult,
    ActionCancelQueryRequest, ActionCancelQueryResult, ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, ActionEndSavepointRequest, ActionEndTransactionRequest, Any, CommandGetCatalogs,
    CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use streamhouse_engine::arrow::array::RecordBatch;
use streamhouse_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use streamhouse_engine::datafusion::common::ScalarValue;
use streamhouse_engine::{EngineError, PreparedStatement, QueryOutput, Session};
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{principal, Principal};
use crate::metadata::{self, SCHEMA_PUBLIC};
use crate::prepared::Prepared;
use crate::queries::{guarded, BatchStream};
use crate::status::{engine_status, flight_status};
use crate::ticket::{decode_handle, encode_handle, StatementTicket};
use crate::Shared;

/// The Flight SQL service; [`crate::FlightServer`] puts plain Flight beside it.
pub struct SqlService {
    pub(crate) shared: Arc<Shared>,
}

type DoGetStream = <SqlService as FlightService>::DoGetStream;
type DoPutStream = <SqlService as FlightService>::DoPutStream;

fn no_transactions() -> Status {
    Status::unimplemented("StreamHouse has no transactions: every statement commits on its own (GetSqlInfo reports FLIGHT_SQL_SERVER_TRANSACTION = NONE)")
}

/// A schema in its IPC form, as Flight SQL results carry schemas.
pub(crate) fn schema_bytes(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let options = arrow_ipc::writer::IpcWriteOptions::default();
    let IpcMessage(message) = SchemaAsIpc::new(schema, &options).try_into().map_err(|e: streamhouse_engine::arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(message)
}

/// The parameters of a prepared statement as a schema: `$1`, `$2`, … with the types the engine
/// inferred (text where nothing constrains one).
fn parameter_schema(statement: &PreparedStatement) -> Schema {
    Schema::new(
        statement
            .param_types
            .iter()
            .enumerate()
            .map(|(i, t)| Field::new(format!("${}", i + 1), t.clone().unwrap_or(DataType::Utf8), true))
            .collect::<Vec<_>>(),
    )
}

/// The row count a command tag ends with (`INSERT 0 5` → 5); -1 ("unknown" in Flight SQL) for
/// a command without one (DDL).
fn tag_count(tag: &str) -> i64 {
    tag.rsplit(' ').next().and_then(|n| n.parse().ok()).filter(|_| tag.contains(' ')).unwrap_or(-1)
}

/// Rows of parameter values from bound batches, each value converted to the type the
/// statement expects for it.
fn parameter_rows(statement: &PreparedStatement, batches: &[RecordBatch]) -> Result<Vec<Vec<ScalarValue>>, Status> {
    let expected = statement.param_types.len();
    let mut rows = Vec::new();
    for batch in batches {
        if batch.num_columns() != expected {
            return Err(Status::invalid_argument(format!(
                "bound parameters have {} columns, but the prepared statement takes {expected} (SQLSTATE 08P01)",
                batch.num_columns()
            )));
        }
        for row in 0..batch.num_rows() {
            let mut values = Vec::with_capacity(expected);
            for (column, target) in batch.columns().iter().zip(&statement.param_types) {
                let value = ScalarValue::try_from_array(column.as_ref(), row).map_err(|e| engine_status(&EngineError::from(e)))?;
                let value = match target {
                    Some(target) if value.data_type() != *target => value.cast_to(target).map_err(|e| engine_status(&EngineError::from(e)))?,
                    _ => value,
                };
                values.push(value);
            }
            rows.push(values);
        }
    }
    Ok(rows)
}

/// The batches of a client's DoPut stream, at most `bytes_max` bytes of them, with the schema
/// its first message declared.
/// A client's FlightData messages as the IPC decoder takes them. Clients may open a DoPut with a
/// message that carries only the descriptor (the Flight SQL update commands do); it holds no IPC
/// message, so it is passed over rather than decoded.
pub(crate) fn ipc_messages(
    stream: impl Stream<Item = Result<arrow_flight::FlightData, Status>> + Send + 'static,
) -> impl Stream<Item = Result<arrow_flight::FlightData, FlightError>> + Send + 'static {
    stream
        .try_filter(|data| futures::future::ready(!(data.data_header.is_empty() && data.data_body.is_empty())))
        .map_err(|s| FlightError::Tonic(Box::new(s)))
}

/// The refusal of a ticket that is neither a Flight SQL command nor one of our JSON tickets.
pub(crate) fn unknown_ticket(what: &str) -> Status {
    Status::invalid_argument(format!(
        "unknown ticket ({what}): tickets come from GetFlightInfo, or are JSON such as {{\"topic\": \"bids\", \"partition\": 0}}"
    ))
}

pub(crate) async fn collect_batches(
    stream: impl Stream<Item = Result<arrow_flight::FlightData, Status>> + Send + 'static,
    bytes_max: u64,
) -> Result<(Option<SchemaRef>, Vec<RecordBatch>), Status> {
    let mut decoded = FlightRecordBatchStream::new_from_flight_data(ipc_messages(stream));
    let mut batches = Vec::new();
    let mut bytes = 0u64;
    while let Some(batch) = decoded.next().await {
        let batch = batch.map_err(flight_status)?;
        bytes += batch.get_array_memory_size() as u64;
        if bytes > bytes_max {
            return Err(engine_status(&EngineError::ProgramLimitExceeded(format!(
                "the statement's data is larger than statement_bytes_max ({bytes_max} bytes); send it in several statements"
            ))));
        }
        batches.push(batch);
    }
    Ok((decoded.schema().cloned(), batches))
}

impl SqlService {
    /// A session acting as the request's role.
    pub(crate) fn session(&self, principal: &Principal) -> Result<Session, Status> {
        let mut session = self.shared.engine.new_session(&principal.role).map_err(|e| engine_status(&e))?;
        session.set_client(principal.client.clone());
        session.set_application_name(&principal.application_name);
        Ok(session)
    }

    fn database(&self) -> &str {
        &self.shared.engine.config().database_name
    }

    /// Runs a statement that returns no rows once per parameter row; the summed row count.
    async fn run_command(&self, principal: &Principal, statement: &PreparedStatement, parameter_rows: &[Vec<ScalarValue>]) -> Result<i64, Status> {
        let mut session = self.session(principal)?;
        let mut total: Option<i64> = None;
        for parameters in parameter_rows {
            let output = session.execute(statement, parameters.clone()).await.map_err(|e| engine_status(&e))?;
            let count = match output {
                QueryOutput::Command { tag } => tag_count(&tag),
                QueryOutput::Empty => -1,
                QueryOutput::Rows { mut stream, .. } => {
                    let mut rows = 0i64;
                    while let Some(batch) = stream.next().await {
                        rows += batch.map_err(|e| engine_status(&EngineError::from(e)))?.num_rows() as i64;
                    }
                    rows
                }
                QueryOutput::CopyIn(_) | QueryOutput::CopyOut { .. } => return Err(copy_refused()),
            };
            if count >= 0 {
                total = Some(total.unwrap_or(0) + count);
            }
        }
        Ok(total.unwrap_or(-1))
    }

    /// The FlightInfo of a statement: for one that returns rows, its schema and a ticket to
    /// fetch them; for a command, run now, an empty result with its row count.
    async fn statement_info(
        &self,
        principal: &Principal,
        statement: &PreparedStatement,
        parameter_rows: &[Vec<ScalarValue>],
        ticket: impl FnOnce(u64) -> StatementTicket,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let info = match &statement.result_schema {
            Some(schema) => {
                if parameter_rows.len() != 1 {
                    return Err(parameters_for_query(parameter_rows.len()));
                }
                let ticket = ticket(self.shared.queries.register());
                let ticket = TicketStatementQuery { statement_handle: ticket.encode().into() };
                FlightInfo::new()
                    .try_with_schema(schema)
                    .map_err(|e| Status::internal(e.to_string()))?
                    .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec())))
                    .with_ordered(true)
            }
            None => {
                let count = self.run_command(principal, statement, parameter_rows).await?;
                FlightInfo::new().try_with_schema(&Schema::empty()).map_err(|e| Status::internal(e.to_string()))?.with_total_records(count)
            }
        };
        Ok(Response::new(info.with_descriptor(descriptor)))
    }

    /// Runs a query and streams its rows as Flight data.
    pub(crate) async fn stream_query(
        &self,
        principal: &Principal,
        statement: &PreparedStatement,
        parameters: Vec<ScalarValue>,
        query: Option<u64>,
    ) -> Result<Response<DoGetStream>, Status> {
        let running = query.map(|id| self.shared.queries.start(id));
        let mut session = self.session(principal)?;
        let output = session.execute(statement, parameters).await.map_err(|e| engine_status(&e))?;
        let (schema, stream) = match output {
            QueryOutput::Rows { schema, stream, .. } => (schema, stream),
            QueryOutput::Command { .. } | QueryOutput::Empty => {
                return Err(Status::invalid_argument("the statement returns no rows: send it with CommandStatementUpdate"))
            }
            QueryOutput::CopyIn(_) | QueryOutput::CopyOut { .. } => return Err(copy_refused()),
        };
        let batches = guarded(stream, running, self.shared.shutdown.clone());
        // The FlightInfo announced the prepared statement's schema; clients (ADBC among them)
        // hold the stream to it. Execution may know a column never holds NULL where planning
        // could not: the announced, wider schema is the one sent.
        match statement.result_schema.clone() {
            Some(announced) if announced.as_ref() != schema.as_ref() && announced.contains(&schema) => {
                let relabelled = announced.clone();
                let batches = batches.and_then(move |batch| {
                    futures::future::ready(batch.with_schema(relabelled.clone()).map_err(FlightError::Arrow))
                });
                Ok(Response::new(self.encode(announced, Box::pin(batches))))
            }
            _ => Ok(Response::new(self.encode(schema, batches))),
        }
    }

    /// Flight data of a result, cut to the configured message size, counted in the metrics.
    pub(crate) fn encode(&self, schema: SchemaRef, batches: BatchStream) -> DoGetStream {
        let metrics = self.shared.metrics.clone();
        let counted = batches.inspect_ok(move |batch| metrics.rows_sent.add(batch.num_rows() as u64));
        let encoded = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .with_max_flight_data_size(self.shared.config.flight_data_bytes_max)
            .build(counted)
            .map_err(flight_status);
        Box::pin(encoded)
    }

    /// A one-batch result.
    fn batch_result(&self, batch: RecordBatch) -> Response<DoGetStream> {
        let schema = batch.schema();
        Response::new(self.encode(schema, Box::pin(futures::stream::iter([Ok(batch)]))))
    }

    fn metadata_info<M: ProstMessageExt>(&self, command: M, schema: &Schema, descriptor: FlightDescriptor) -> Result<Response<FlightInfo>, Status> {
        let ticket = Ticket::new(command.as_any().encode_to_vec());
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    /// Tables for `GetTables`: the engine's relations in `public`, then the system tables.
    async fn tables(&self, command: CommandGetTables) -> Result<RecordBatch, Status> {
        let database = self.database().to_string();
        let mut builder: GetTablesBuilder = command.into_builder();
        for relation in self.shared.engine.relations() {
            builder
                .append(&database, SCHEMA_PUBLIC, &relation.name, relation.kind.table_type(), &relation.schema)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        for (schema, table, table_schema) in self.shared.engine.system_tables().await.map_err(|e| engine_status(&e))? {
            builder.append(&database, &schema, &table, "SYSTEM TABLE", &table_schema).map_err(|e| Status::internal(e.to_string()))?;
        }
        builder.build().map_err(|e| Status::internal(e.to_string()))
    }
}

fn copy_refused() -> Status {
    Status::invalid_argument("COPY is a Postgres protocol statement: over Flight, read with DoGet and write with DoPut or ingest")
}

fn parameters_for_query(rows: usize) -> Status {
    if rows == 0 {
        Status::invalid_argument("the prepared statement has parameters, but none are bound (bind them with DoPut first) (SQLSTATE 08P01)")
    } else {
        Status::invalid_argument(format!("a query takes one row of parameters; {rows} were bound (SQLSTATE 08P01)"))
    }
}

/// The query id in a FlightInfo's first ticket, if it is one of our statement tickets.
fn query_of(info: &FlightInfo) -> Option<u64> {
    let ticket = info.endpoint.first()?.ticket.as_ref()?;
    let any = Any::decode(ticket.ticket.as_ref()).ok()?;
    let statement: TicketStatementQuery = any.unpack().ok()??;
    StatementTicket::decode(&statement.statement_handle).ok().map(|t| t.query)
}

impl SqlService {
    /// Cancels the query a FlightInfo names; whether it was running or waiting to run.
    pub(crate) fn cancel(&self, info: &FlightInfo) -> Result<bool, Status> {
        let query = query_of(info).ok_or_else(|| Status::invalid_argument("the FlightInfo names no query of this server"))?;
        Ok(self.shared.queries.cancel(query))
    }
}

#[tonic::async_trait]
impl FlightSqlService for SqlService {
    type FlightService = SqlService;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        // Authentication happened on the request's headers (FlightServer::handshake, which adds
        // the bearer token): the exchange answers each message with its own payload.
        let responses = request.into_inner().map_ok(|request| HandshakeResponse { protocol_version: request.protocol_version, payload: request.payload });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn get_flight_info_statement(&self, query: CommandStatementQuery, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        if query.transaction_id.is_some() {
            return Err(no_transactions());
        }
        let principal = principal(&request)?;
        let statement = self.session(&principal)?.prepare(&query.query).await.map_err(|e| engine_status(&e))?;
        if !statement.param_types.is_empty() {
            return Err(Status::invalid_argument("a statement with parameters ($1 …) must be prepared and bound (SQLSTATE 08P01)"));
        }
        let sql = query.query.clone();
        let ticket = |id| StatementTicket { query: id, sql: Some(sql), prepared: None };
        self.statement_info(&principal, &statement, &[Vec::new()], ticket, request.into_inner()).await
    }

    async fn get_flight_info_prepared_statement(&self, query: CommandPreparedStatementQuery, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        let principal = principal(&request)?;
        let handle = decode_handle(&query.prepared_statement_handle)?;
        let Prepared { statement, parameter_rows, .. } = self.shared.prepared.get(handle, &principal.role)?;
        let ticket = |id| StatementTicket { query: id, sql: None, prepared: Some(handle) };
        self.statement_info(&principal, &statement, &parameter_rows, ticket, request.into_inner()).await
    }

    async fn get_flight_info_catalogs(&self, query: CommandGetCatalogs, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_schemas(&self, query: CommandGetDbSchemas, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_tables(&self, query: CommandGetTables, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_table_types(&self, query: CommandGetTableTypes, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_sql_info(&self, query: CommandGetSqlInfo, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.shared.sql_info).schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_primary_keys(&self, query: CommandGetPrimaryKeys, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(query, &metadata::primary_keys_schema(), request.into_inner())
    }

    async fn get_flight_info_xdbc_type_info(&self, query: CommandGetXdbcTypeInfo, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.shared.type_info).schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_statement(&self, ticket: TicketStatementQuery, request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        let principal = principal(&request)?;
        let ticket = StatementTicket::decode(&ticket.statement_handle)?;
        match (&ticket.sql, ticket.prepared) {
            (Some(sql), _) => {
                let statement = self.session(&principal)?.prepare(sql).await.map_err(|e| engine_status(&e))?;
                self.stream_query(&principal, &statement, Vec::new(), Some(ticket.query)).await
            }
            (None, Some(handle)) => {
                let Prepared { statement, parameter_rows, .. } = self.shared.prepared.get(handle, &principal.role)?;
                let [parameters] = <[_; 1]>::try_from(parameter_rows).map_err(|rows| parameters_for_query(rows.len()))?;
                self.stream_query(&principal, &statement, parameters, Some(ticket.query)).await
            }
            (None, None) => Err(Status::invalid_argument("the ticket names no statement")),
        }
    }

    async fn do_get_prepared_statement(&self, query: CommandPreparedStatementQuery, request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        let principal = principal(&request)?;
        let handle = decode_handle(&query.prepared_statement_handle)?;
        let Prepared { statement, parameter_rows, .. } = self.shared.prepared.get(handle, &principal.role)?;
        let [parameters] = <[_; 1]>::try_from(parameter_rows).map_err(|rows| parameters_for_query(rows.len()))?;
        self.stream_query(&principal, &statement, parameters, None).await
    }

    async fn do_get_catalogs(&self, query: CommandGetCatalogs, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(self.database());
        Ok(self.batch_result(builder.build().map_err(|e| Status::internal(e.to_string()))?))
    }

    async fn do_get_schemas(&self, query: CommandGetDbSchemas, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        let mut builder: GetDbSchemasBuilder = query.into_builder();
        for schema in [SCHEMA_PUBLIC, "information_schema", "pg_catalog"] {
            builder.append(self.database(), schema);
        }
        Ok(self.batch_result(builder.build().map_err(|e| Status::internal(e.to_string()))?))
    }

    async fn do_get_tables(&self, query: CommandGetTables, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        Ok(self.batch_result(self.tables(query).await?))
    }

    async fn do_get_table_types(&self, query: CommandGetTableTypes, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        for table_type in metadata::TABLE_TYPES {
            builder.append(table_type);
        }
        Ok(self.batch_result(builder.build().map_err(|e| Status::internal(e.to_string()))?))
    }

    async fn do_get_sql_info(&self, query: CommandGetSqlInfo, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        let batch = query.into_builder(&self.shared.sql_info).build().map_err(|e| Status::internal(e.to_string()))?;
        Ok(self.batch_result(batch))
    }

    async fn do_get_primary_keys(&self, query: CommandGetPrimaryKeys, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        let relations = self.shared.engine.relations();
        let batch = metadata::primary_keys(self.database(), &relations, &query.table, query.catalog.as_deref(), query.db_schema.as_deref())
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(self.batch_result(batch))
    }

    async fn do_get_xdbc_type_info(&self, query: CommandGetXdbcTypeInfo, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        let batch = query.into_builder(&self.shared.type_info).build().map_err(|e| Status::internal(e.to_string()))?;
        Ok(self.batch_result(batch))
    }

    async fn do_get_fallback(&self, request: Request<Ticket>, message: Any) -> Result<Response<DoGetStream>, Status> {
        let _ = request;
        Err(unknown_ticket(&format!("type {:?}", message.type_url)))
    }

    async fn do_put_fallback(&self, request: Request<PeekableFlightDataStream>, message: Any) -> Result<Response<DoPutStream>, Status> {
        if message.type_url.is_empty() {
            // Not a Flight SQL command: a plain DoPut to a topic named by the descriptor's path.
            return crate::plain::do_put(&self.shared, request).await;
        }
        Err(Status::invalid_argument(format!("unknown DoPut command {:?}", message.type_url)))
    }

    async fn do_put_statement_update(&self, command: CommandStatementUpdate, request: Request<PeekableFlightDataStream>) -> Result<i64, Status> {
        if command.transaction_id.is_some() {
            return Err(no_transactions());
        }
        let principal = principal(&request)?;
        let statement = self.session(&principal)?.prepare(&command.query).await.map_err(|e| engine_status(&e))?;
        if !statement.param_types.is_empty() {
            return Err(Status::invalid_argument("a statement with parameters ($1 …) must be prepared and bound (SQLSTATE 08P01)"));
        }
        self.run_command(&principal, &statement, &[Vec::new()]).await
    }

    async fn do_put_statement_ingest(&self, command: CommandStatementIngest, request: Request<PeekableFlightDataStream>) -> Result<i64, Status> {
        let principal = principal(&request)?;
        crate::plain::ingest(&self.shared, &principal, command, request.into_inner()).await
    }

    async fn do_put_prepared_statement_query(&self, query: CommandPreparedStatementQuery, request: Request<PeekableFlightDataStream>) -> Result<DoPutPreparedStatementResult, Status> {
        let principal = principal(&request)?;
        let handle = decode_handle(&query.prepared_statement_handle)?;
        let prepared = self.shared.prepared.get(handle, &principal.role)?;
        let (_, batches) = collect_batches(request.into_inner(), self.shared.engine.config().statement_bytes_max).await?;
        let rows = parameter_rows(&prepared.statement, &batches)?;
        self.shared.prepared.bind(handle, &principal.role, rows)?;
        Ok(DoPutPreparedStatementResult { prepared_statement_handle: Some(query.prepared_statement_handle) })
    }

    async fn do_put_prepared_statement_update(&self, query: CommandPreparedStatementUpdate, request: Request<PeekableFlightDataStream>) -> Result<i64, Status> {
        let principal = principal(&request)?;
        let handle = decode_handle(&query.prepared_statement_handle)?;
        let Prepared { statement, parameter_rows: bound, .. } = self.shared.prepared.get(handle, &principal.role)?;
        let (_, batches) = collect_batches(request.into_inner(), self.shared.engine.config().statement_bytes_max).await?;
        let sent = parameter_rows(&statement, &batches)?;
        let rows = if sent.is_empty() { bound } else { sent };
        if rows.is_empty() {
            return Err(parameters_for_query(0));
        }
        self.run_command(&principal, &statement, &rows).await
    }

    async fn do_action_create_prepared_statement(&self, query: ActionCreatePreparedStatementRequest, request: Request<Action>) -> Result<ActionCreatePreparedStatementResult, Status> {
        if query.transaction_id.is_some() {
            return Err(no_transactions());
        }
        let principal = principal(&request)?;
        let statement = self.session(&principal)?.prepare(&query.query).await.map_err(|e| engine_status(&e))?;
        let dataset_schema = schema_bytes(statement.result_schema.as_deref().unwrap_or(&Schema::empty()))?;
        let parameter_schema = schema_bytes(&parameter_schema(&statement))?;
        let id = self.shared.prepared.insert(statement, &principal.role);
        Ok(ActionCreatePreparedStatementResult { prepared_statement_handle: encode_handle(id).into(), dataset_schema, parameter_schema })
    }

    async fn do_action_close_prepared_statement(&self, query: ActionClosePreparedStatementRequest, request: Request<Action>) -> Result<(), Status> {
        self.shared.prepared.close(decode_handle(&query.prepared_statement_handle)?, &principal(&request)?.role)
    }

    async fn do_action_begin_transaction(&self, _query: ActionBeginTransactionRequest, _request: Request<Action>) -> Result<ActionBeginTransactionResult, Status> {
        Err(no_transactions())
    }

    async fn do_action_end_transaction(&self, _query: ActionEndTransactionRequest, _request: Request<Action>) -> Result<(), Status> {
        Err(no_transactions())
    }

    async fn do_action_begin_savepoint(&self, _query: ActionBeginSavepointRequest, _request: Request<Action>) -> Result<ActionBeginSavepointResult, Status> {
        Err(no_transactions())
    }

    async fn do_action_end_savepoint(&self, _query: ActionEndSavepointRequest, _request: Request<Action>) -> Result<(), Status> {
        Err(no_transactions())
    }

    async fn do_action_cancel_query(&self, query: ActionCancelQueryRequest, _request: Request<Action>) -> Result<ActionCancelQueryResult, Status> {
        // ActionCancelQueryResult.CancelResult (not re-exported by arrow-flight): 1 CANCELLED, 3 NOT_CANCELLABLE.
        const CANCELLED: i32 = 1;
        const NOT_CANCELLABLE: i32 = 3;
        let info = FlightInfo::decode(query.info).map_err(|e| Status::invalid_argument(format!("malformed FlightInfo: {e}")))?;
        Ok(ActionCancelQueryResult { result: if self.cancel(&info)? { CANCELLED } else { NOT_CANCELLABLE } })
    }

    async fn do_action_fallback(&self, request: Request<Action>) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        crate::server::do_core_action(self, request).await
    }

    /// The facts are fixed at start ([`metadata::sql_info`]); nothing registers more.
    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_tags_give_row_counts() {
        assert_eq!(tag_count("INSERT 0 5"), 5);
        assert_eq!(tag_count("UPDATE 3"), 3);
        assert_eq!(tag_count("CREATE TOPIC"), -1);
        assert_eq!(tag_count("FLUSH"), -1);
        assert_eq!(tag_count("DELETE 0"), 0);
    }
}
