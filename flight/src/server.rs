//! The gRPC service: Flight SQL ([`SqlService`]) with plain Flight beside it. Requests whose
//! descriptor is a path, and tickets that are JSON, are plain Flight (`plain.rs`); everything
//! else is a Flight SQL command. `ListFlights` and `GetSchema` are answered here, and the core
//! `CancelFlightInfo` action, which Flight SQL's dispatch does not know.

use std::sync::Arc;

use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::{Any, Command, CommandPreparedStatementQuery, CommandStatementQuery};
use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, Criteria, Empty, FlightData, FlightDescriptor,
    FlightInfo, HandshakeRequest, PollInfo, SchemaResult, Ticket,
};
use prost::Message;
use streamhouse_engine::Engine;
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use crate::prepared::PreparedStatements;
use crate::queries::Queries;
use crate::sql::{schema_bytes, SqlService};
use crate::status::engine_status;
use crate::ticket::{decode_handle, PlainTicket};
use crate::{FlightConfig, FlightMetrics, Shared};

/// The Flight service StreamHouse serves.
pub struct FlightServer {
    sql: SqlService,
}

impl FlightServer {
    pub fn new(
        engine: Arc<Engine>,
        config: FlightConfig,
        metrics: Arc<FlightMetrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let shared = Shared {
            prepared: PreparedStatements::new(config.prepared_statements_max),
            queries: Arc::new(Queries::new(config.cancellable_queries_max)),
            sql_info: crate::metadata::sql_info()?,
            type_info: crate::metadata::xdbc_type_info()?,
            engine,
            config,
            metrics,
            shutdown,
        };
        Ok(Self { sql: SqlService { shared: Arc::new(shared) } })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.sql.shared
    }

    /// Counts a request and, when it fails, its error.
    fn counted<T>(&self, result: Result<T, Status>) -> Result<T, Status> {
        let metrics = &self.shared().metrics;
        metrics.requests.add(1);
        if let Err(status) = &result {
            metrics.request_errors.add(1);
            tracing::debug!(code = ?status.code(), message = status.message(), "flight request failed");
        }
        result
    }

    /// The schema a descriptor's data has: a relation's for a path, a statement's result for a
    /// query command.
    async fn schema_of(&self, descriptor: &FlightDescriptor) -> Result<SchemaResult, Status> {
        let schema = if descriptor.r#type == DescriptorType::Path as i32 {
            crate::plain::path_schema(self.shared(), &descriptor.path)?
        } else {
            let any = Any::decode(descriptor.cmd.as_ref()).map_err(|e| Status::invalid_argument(format!("malformed command: {e}")))?;
            let statement = match Command::try_from(any).map_err(|e| Status::invalid_argument(e.to_string()))? {
                Command::CommandStatementQuery(CommandStatementQuery { query, .. }) => {
                    let session = self.shared().engine.superuser_session().map_err(|e| engine_status(&e))?;
                    session.prepare(&query).await.map_err(|e| engine_status(&e))?
                }
                Command::CommandPreparedStatementQuery(CommandPreparedStatementQuery { prepared_statement_handle }) => {
                    self.shared().prepared.get(decode_handle(&prepared_statement_handle)?)?.statement
                }
                other => return Err(Status::unimplemented(format!("GetSchema of {}", other.type_url()))),
            };
            statement.result_schema.map(|s| s.as_ref().clone()).unwrap_or_else(streamhouse_engine::arrow::datatypes::Schema::empty)
        };
        Ok(SchemaResult { schema: schema_bytes(&schema)? })
    }
}

/// `CancelFlightInfo` (the core action); other unknown actions are refused by name.
pub(crate) async fn do_core_action(sql: &SqlService, request: Request<Action>) -> Result<Response<<SqlService as FlightService>::DoActionStream>, Status> {
    let action = request.into_inner();
    if action.r#type != "CancelFlightInfo" {
        return Err(Status::invalid_argument(format!("unknown action {:?}", action.r#type)));
    }
    let cancel = CancelFlightInfoRequest::decode(action.body).map_err(|e| Status::invalid_argument(format!("malformed CancelFlightInfoRequest: {e}")))?;
    let info = cancel.info.ok_or_else(|| Status::invalid_argument("CancelFlightInfoRequest without a FlightInfo"))?;
    let status = if sql.cancel(&info)? { CancelStatus::Cancelled } else { CancelStatus::NotCancellable };
    let result = CancelFlightInfoResult { status: status as i32 };
    let body = arrow_flight::Result { body: result.encode_to_vec().into() };
    Ok(Response::new(Box::pin(futures::stream::iter([Ok(body)]))))
}

#[tonic::async_trait]
impl FlightService for FlightServer {
    type HandshakeStream = <SqlService as FlightService>::HandshakeStream;
    type ListFlightsStream = <SqlService as FlightService>::ListFlightsStream;
    type DoGetStream = <SqlService as FlightService>::DoGetStream;
    type DoPutStream = <SqlService as FlightService>::DoPutStream;
    type DoActionStream = <SqlService as FlightService>::DoActionStream;
    type ListActionsStream = <SqlService as FlightService>::ListActionsStream;
    type DoExchangeStream = <SqlService as FlightService>::DoExchangeStream;

    async fn handshake(&self, request: Request<Streaming<HandshakeRequest>>) -> Result<Response<Self::HandshakeStream>, Status> {
        self.counted(self.sql.handshake(request).await)
    }

    async fn list_flights(&self, _request: Request<Criteria>) -> Result<Response<Self::ListFlightsStream>, Status> {
        let infos = crate::plain::list_flights(self.shared());
        self.counted(infos.map(|infos| Response::new(Box::pin(futures::stream::iter(infos.into_iter().map(Ok))) as Self::ListFlightsStream)))
    }

    async fn get_flight_info(&self, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        let result = if request.get_ref().r#type == DescriptorType::Path as i32 {
            crate::plain::flight_info(self.shared(), &request.get_ref().path).map(Response::new)
        } else {
            self.sql.get_flight_info(request).await
        };
        self.counted(result)
    }

    async fn poll_flight_info(&self, _request: Request<FlightDescriptor>) -> Result<Response<PollInfo>, Status> {
        self.counted(Err(Status::unimplemented("PollFlightInfo: use GetFlightInfo (queries start when their ticket is read)")))
    }

    async fn get_schema(&self, request: Request<FlightDescriptor>) -> Result<Response<SchemaResult>, Status> {
        let result = self.schema_of(request.get_ref()).await.map(Response::new);
        self.counted(result)
    }

    async fn do_get(&self, request: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        let result = match PlainTicket::decode(&request.get_ref().ticket) {
            Ok(Some(ticket)) => crate::plain::do_get(&self.sql, ticket).await,
            Ok(None) => match <arrow_flight::sql::Any as prost::Message>::decode(request.get_ref().ticket.as_ref()) {
                Ok(_) => self.sql.do_get(request).await,
                Err(error) => Err(crate::sql::unknown_ticket(&format!("not a Flight SQL command: {error}"))),
            },
            Err(status) => Err(status),
        };
        self.counted(result)
    }

    async fn do_put(&self, request: Request<Streaming<FlightData>>) -> Result<Response<Self::DoPutStream>, Status> {
        self.counted(self.sql.do_put(request).await)
    }

    async fn do_action(&self, request: Request<Action>) -> Result<Response<Self::DoActionStream>, Status> {
        self.counted(self.sql.do_action(request).await)
    }

    async fn list_actions(&self, request: Request<Empty>) -> Result<Response<Self::ListActionsStream>, Status> {
        let listed = self.sql.list_actions(request).await.map(|response| {
            let cancel = ActionType {
                r#type: "CancelFlightInfo".into(),
                description: "Cancels a running query. Request: CancelFlightInfoRequest; result: CancelFlightInfoResult".into(),
            };
            let actions = futures::StreamExt::chain(response.into_inner(), futures::stream::iter([Ok(cancel)]));
            Response::new(Box::pin(actions) as Self::ListActionsStream)
        });
        self.counted(listed)
    }

    async fn do_exchange(&self, _request: Request<Streaming<FlightData>>) -> Result<Response<Self::DoExchangeStream>, Status> {
        self.counted(Err(Status::unimplemented(
            "DoExchange: read a view's changes with DoGet of the ticket {\"subscribe\": \"view\"}",
        )))
    }
}
