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

use streamhouse_engine::auth::audit::AuditKind;
use crate::auth::{principal, Tokens};
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
            tokens: Tokens::new(config.token_lifetime, config.tokens_max),
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

    /// Decides who `request` is (see [`crate::auth`]); `Ok(true)` when it proved a password.
    async fn admit<T>(&self, request: &mut Request<T>) -> Result<bool, Status> {
        let shared = self.shared();
        shared.tokens.authenticate(&shared.engine, shared.config.tls.is_some(), request).await
    }

    /// The schema a descriptor's data has: a relation's for a path, a statement's result for a
    /// query command.
    async fn schema_of(&self, request: &Request<FlightDescriptor>) -> Result<SchemaResult, Status> {
        let descriptor = request.get_ref();
        let schema = if descriptor.r#type == DescriptorType::Path as i32 {
            crate::plain::path_schema(self.shared(), &descriptor.path)?
        } else {
            let any = Any::decode(descriptor.cmd.as_ref()).map_err(|e| Status::invalid_argument(format!("malformed command: {e}")))?;
            let statement = match Command::try_from(any).map_err(|e| Status::invalid_argument(e.to_string()))? {
                Command::CommandStatementQuery(CommandStatementQuery { query, .. }) => {
                    self.sql.session(&principal(request)?)?.prepare(&query).await.map_err(|e| engine_status(&e))?
                }
                Command::CommandPreparedStatementQuery(CommandPreparedStatementQuery { prepared_statement_handle }) => {
                    self.shared().prepared.get(decode_handle(&prepared_statement_handle)?, &principal(request)?.role)?.statement
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

    /// Authenticates the request's headers and answers with `authorization: Bearer <token>` for
    /// the calls that follow (see [`crate::auth`]).
    async fn handshake(&self, mut request: Request<Streaming<HandshakeRequest>>) -> Result<Response<Self::HandshakeStream>, Status> {
        let result = async {
            let proved = self.admit(&mut request).await?;
            let who = principal(&request)?;
            if !proved {
                // A password proved was recorded as it was checked; this is a login without one.
                let how = if request.peer_certs().is_some() { "handshake with a client certificate" } else { "handshake from a trusted address" };
                self.shared().engine.audit_login(who.audit_entry(AuditKind::Login, how.into())).await;
            }
            let token = self.shared().tokens.issue(&who.role);
            let mut response = self.sql.handshake(request).await?;
            let header = format!("Bearer {token}").parse().map_err(|_| Status::internal("a token that is not a header value"))?;
            response.metadata_mut().insert("authorization", header);
            Ok(response)
        };
        self.counted(result.await)
    }

    async fn list_flights(&self, mut request: Request<Criteria>) -> Result<Response<Self::ListFlightsStream>, Status> {
        let result = async {
            self.admit(&mut request).await?;
            let infos = crate::plain::list_flights(self.shared())?;
            Ok(Response::new(Box::pin(futures::stream::iter(infos.into_iter().map(Ok))) as Self::ListFlightsStream))
        };
        self.counted(result.await)
    }

    async fn get_flight_info(&self, mut request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        let result = async {
            self.admit(&mut request).await?;
            if request.get_ref().r#type == DescriptorType::Path as i32 {
                crate::plain::flight_info(self.shared(), &request.get_ref().path).map(Response::new)
            } else {
                self.sql.get_flight_info(request).await
            }
        };
        self.counted(result.await)
    }

    async fn poll_flight_info(&self, mut request: Request<FlightDescriptor>) -> Result<Response<PollInfo>, Status> {
        let result = async {
            self.admit(&mut request).await?;
            Err(Status::unimplemented("PollFlightInfo: use GetFlightInfo (queries start when their ticket is read)"))
        };
        self.counted(result.await)
    }

    async fn get_schema(&self, mut request: Request<FlightDescriptor>) -> Result<Response<SchemaResult>, Status> {
        let result = async {
            self.admit(&mut request).await?;
            self.schema_of(&request).await.map(Response::new)
        };
        self.counted(result.await)
    }

    async fn do_get(&self, mut request: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        let result = async {
            self.admit(&mut request).await?;
            match PlainTicket::decode(&request.get_ref().ticket)? {
                Some(ticket) => crate::plain::do_get(&self.sql, &principal(&request)?, ticket).await,
                None => match <arrow_flight::sql::Any as prost::Message>::decode(request.get_ref().ticket.as_ref()) {
                    Ok(_) => self.sql.do_get(request).await,
                    Err(error) => Err(crate::sql::unknown_ticket(&format!("not a Flight SQL command: {error}"))),
                },
            }
        };
        self.counted(result.await)
    }

    async fn do_put(&self, mut request: Request<Streaming<FlightData>>) -> Result<Response<Self::DoPutStream>, Status> {
        let result = async {
            self.admit(&mut request).await?;
            self.sql.do_put(request).await
        };
        self.counted(result.await)
    }

    async fn do_action(&self, mut request: Request<Action>) -> Result<Response<Self::DoActionStream>, Status> {
        let result = async {
            self.admit(&mut request).await?;
            self.sql.do_action(request).await
        };
        self.counted(result.await)
    }

    async fn list_actions(&self, mut request: Request<Empty>) -> Result<Response<Self::ListActionsStream>, Status> {
        if let Err(status) = self.admit(&mut request).await {
            return self.counted(Err(status));
        }
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

    async fn do_exchange(&self, mut request: Request<Streaming<FlightData>>) -> Result<Response<Self::DoExchangeStream>, Status> {
        if let Err(status) = self.admit(&mut request).await {
            return self.counted(Err(status));
        }
        self.counted(Err(Status::unimplemented(
            "DoExchange: read a view's changes with DoGet of the ticket {\"subscribe\": \"view\"}",
        )))
    }
}
