//! A client session: its settings and its DataFusion context. Statements are prepared once
//! (parsed, classified, and for DataFusion statements planned with their parameter types) and
//! executed any number of times with parameter values.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, SchemaProvider, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{create_udf, ColumnarValue, LogicalPlan, Volatility};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast;
use futures::StreamExt;

use datafusion::execution::SessionState;
use streamhouse_storage::Storage;

use crate::auth::privileges::{plan_needs, Privilege};
use crate::copy::{CopyDecoder, CopyEncoder};
use crate::stream::window::WindowFunction;
use crate::stream::ViewTableProvider;
use crate::keyed::{on_conflict_target, rewrite_modification, KeyedTableProvider, KeyedWrite};
use crate::provider::TopicTableProvider;
use crate::sql::literal_insert::{literal_insert, LiteralInsert};
use crate::sql::statement::{object_name, parse_statement, Statement, TransactionCommand};
use crate::sql::column_names::{name_columns, ColumnNames};
use crate::sql::postgres_meaning::give_postgres_meaning;
use crate::sql::wildcard::hide_system_columns;
use crate::{Engine, EngineError, Result};

/// The version string clients see in `server_version` and `version()`.
pub const SERVER_VERSION: &str = "16.0";
/// [`SERVER_VERSION`] as PostgreSQL's `server_version_num` writes it.
pub const SERVER_VERSION_NUM: &str = "160000";

pub fn version_string() -> String {
    format!("PostgreSQL {SERVER_VERSION} (StreamHouse {}) on {}", env!("CARGO_PKG_VERSION"), std::env::consts::ARCH)
}

/// Resolves table names to topics, from storage, at planning time: topics created by any
/// session are visible to every other one at once.
#[derive(Debug)]
pub(crate) struct TopicSchemaProvider {
    engine: Arc<Engine>,
    /// The table an INSERT being planned writes to; it resolves without system columns.
    write_target: Mutex<Option<String>>,
}

#[async_trait]
impl SchemaProvider for TopicSchemaProvider {
    fn table_names(&self) -> Vec<String> {
        let topics = self.engine.listed_topics();
        let views = self.engine.views().list();
        topics.iter().map(|t| t.name().to_string()).chain(views.iter().map(|v| v.meta.name.clone())).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        // PostgreSQL searches pg_catalog before the search path: `pg_roles` is pg_catalog's.
        if crate::pg_catalog::is_catalog_table(name) {
            return crate::pg_catalog::PgCatalogSchema { engine: self.engine.clone() }.table(name).await;
        }
        if let Some(view) = self.engine.views().get(name) {
            return Ok(Some(Arc::new(ViewTableProvider { view })));
        }
        let Some(topic) = self.engine.storage().topic(name) else { return Ok(None) };
        let is_target = self.write_target.lock().unwrap_or_else(|p| p.into_inner()).as_deref() == Some(name);
        if topic.is_keyed() {
            let storage = self.engine.storage().clone();
            let provider = KeyedTableProvider::new(topic, storage, self.engine.config().statement_bytes_max, !is_target);
            return Ok(Some(Arc::new(provider)));
        }
        Ok(Some(Arc::new(TopicTableProvider::new(
            topic,
            self.engine.storage().clone(),
            !is_target,
            self.engine.config().statement_bytes_max,
        ))))
    }

    fn table_exist(&self, name: &str) -> bool {
        crate::pg_catalog::is_catalog_table(name) || self.engine.storage().topic(name).is_some() || self.engine.views().get(name).is_some()
    }
}

/// A DataFusion context whose tables are the engine's topics and views, with our functions.
pub(crate) fn new_context(engine: &Arc<Engine>) -> Result<(SessionContext, Arc<TopicSchemaProvider>)> {
    let database = engine.config().database_name.clone();
    let config = SessionConfig::new()
        .with_default_catalog_and_schema(database.clone(), "public")
        // PostgreSQL's information_schema (crate::information_schema), not DataFusion's.
        .with_information_schema(false)
        .with_create_default_catalog_and_schema(false)
        // `timestamptz` literals and casts, and now(), are timestamps with a zone (PostgreSQL's
        // timestamptz, sent with its offset); the session's zone is UTC.
        .set_str("datafusion.execution.time_zone", "UTC")
        // A literal with a fraction or an exponent (`1.5`, `1e3`) is numeric, as in PostgreSQL,
        // not float8: `0.1 + 0.2` is exactly 0.3 and `1.0 / 0` is a division by zero.
        .set_bool("datafusion.sql_parser.parse_float_as_decimal", true);
    let mut builder = datafusion::execution::SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(engine.session_runtime()?)
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(crate::recursion_limit::RecursionLimit {
            iterations_max: engine.config().recursive_iterations_max,
        }))
        .with_physical_optimizer_rule(Arc::new(crate::arithmetic::CheckedArithmetic));
    // Consulted before DataFusion's own planners (see `arithmetic`).
    if let Some(planners) = builder.expr_planners() {
        planners.insert(0, Arc::new(crate::arithmetic::PostgresArithmetic));
    }
    let state = builder.build();
    let context = SessionContext::new_with_state(state);
    let schema = Arc::new(TopicSchemaProvider { engine: engine.clone(), write_target: Mutex::new(None) });
    let catalog = MemoryCatalogProvider::new();
    catalog.register_schema("public", schema.clone())?;
    catalog.register_schema("pg_catalog", Arc::new(crate::pg_catalog::PgCatalogSchema { engine: engine.clone() }))?;
    catalog.register_schema("information_schema", Arc::new(crate::information_schema::InformationSchema { engine: engine.clone() }))?;
    context.register_catalog(database.clone(), Arc::new(catalog));
    let version = version_string();
    context.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(version.clone()))))),
    ));
    let current_database = database.clone();
    context.register_udf(create_udf(
        "current_database",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(current_database.clone()))))),
    ));
    crate::pg_functions::register(&context, engine);
    context.register_udaf(datafusion::logical_expr::AggregateUDF::from(crate::single_value::SingleValue::default()));
    for function in ["ceil", "floor", "trunc"].into_iter().filter_map(crate::casts::NumericIntegral::new) {
        context.register_udf(datafusion::logical_expr::ScalarUDF::from(function));
    }
    context.register_udf(datafusion::logical_expr::ScalarUDF::from(crate::to_char::ToChar::default()));
    for function in [crate::casts::round_for_integer(), crate::casts::bytea_input(), crate::casts::text_output()] {
        context.register_udf(datafusion::logical_expr::ScalarUDF::from(function));
    }
    for hop in [false, true] {
        let function = WindowFunction {
            storage: engine.storage().clone(),
            hop,
            statement_bytes_max: engine.config().statement_bytes_max,
        };
        context.register_udtf(if hop { "hop" } else { "tumble" }, Arc::new(function));
    }
    context.register_udtf(
        "session",
        Arc::new(crate::stream::session::SessionFunction {
            storage: engine.storage().clone(),
            statement_bytes_max: engine.config().statement_bytes_max,
        }),
    );
    Ok((context, schema))
}

/// Plans a query (not INSERT) as DataFusion would, with system columns kept out of `*`.
pub(crate) async fn plan_query(state: &SessionState, storage: &Storage, query: ast::Query) -> Result<LogicalPlan> {
    let mut statement = ast::Statement::Query(Box::new(query));
    let is_topic = |name: &str| storage.topic(name).is_some();
    hide_system_columns(&mut statement, &is_topic);
    if let ast::Statement::Query(query) = &mut statement {
        name_columns(query).check_distinct()?;
        give_postgres_meaning(query)?;
    }
    let plan = state.statement_to_plan(DfStatement::Statement(Box::new(statement))).await?;
    check_target_list(&plan)?;
    Ok(plan)
}

/// `stream` with its columns under the names the client sees (two may share one).
fn present(names: &ColumnNames, stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
    if names.is_empty() {
        return stream;
    }
    let schema = names.present(&stream.schema());
    let batch_schema = schema.clone();
    let renamed = stream.map(move |batch| {
        let batch = batch?;
        Ok(RecordBatch::try_new_with_options(
            batch_schema.clone(),
            batch.columns().to_vec(),
            &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )?)
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, renamed))
}

/// PostgreSQL's bound on the columns a query returns (`MaxTupleAttributeNumber`).
pub(crate) const TARGET_LIST_ENTRIES_MAX: usize = 1664;

/// Refuses a query returning more columns than PostgreSQL allows, as PostgreSQL does.
fn check_target_list(plan: &LogicalPlan) -> Result<()> {
    match plan.schema().fields().len() {
        columns if columns > TARGET_LIST_ENTRIES_MAX => Err(EngineError::Sqlstate {
            code: "54011",
            message: format!("target lists can have at most {TARGET_LIST_ENTRIES_MAX} entries (this one has {columns})"),
        }),
        _ => Ok(()),
    }
}

/// A statement ready to run.
#[derive(Debug, Clone)]
pub struct PreparedStatement {
    pub sql: String,
    /// Parameter types as inferred; `None` where nothing constrains a parameter.
    pub param_types: Vec<Option<DataType>>,
    /// Columns of the rows it returns; `None` if it returns none.
    pub result_schema: Option<SchemaRef>,
    kind: PreparedKind,
    /// The privileges it needs on which relations, checked at each execution (statements run
    /// from their parsed form check their own as they run).
    needs: Vec<(String, Privilege)>,
}

#[derive(Debug, Clone)]
enum PreparedKind {
    Parsed(Statement),
    Planned { plan: LogicalPlan, is_insert: bool, names: ColumnNames },
    /// A change to a keyed table: `plan` yields the rows to upsert (or, for DELETE, to delete).
    Keyed { plan: LogicalPlan, topic: Arc<streamhouse_storage::TopicLog>, write: KeyedWrite },
    /// `INSERT … VALUES` of literals, converted without DataFusion (see `literal_insert`).
    LiteralInsert(ResolvedInsert),
    /// asyncpg's type introspection statement, answered from [`crate::pg_types`].
    TypeLookup,
}

/// A literal INSERT with its topic and target columns resolved at prepare, as a planned
/// statement resolves its table.
#[derive(Clone)]
struct ResolvedInsert {
    topic: Arc<streamhouse_storage::TopicLog>,
    /// For each value of a row, the index of its column in the topic schema.
    targets: Vec<usize>,
    literal: LiteralInsert,
}

impl std::fmt::Debug for ResolvedInsert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedInsert").field("topic", &self.topic.name()).field("rows", &self.literal.rows.len()).finish()
    }
}

impl PreparedStatement {
    /// Whether this is `COPY … FROM STDIN`.
    pub fn is_copy_in(&self) -> bool {
        matches!(self.kind, PreparedKind::Parsed(Statement::CopyFrom { .. }))
    }
}

/// What executing a statement produced.
pub enum QueryOutput {
    /// Rows; the command tag is `{tag} {row count}`.
    Rows { schema: SchemaRef, stream: SendableRecordBatchStream, tag: &'static str },
    Command { tag: String },
    CopyIn(CopyIn),
    CopyOut { schema: SchemaRef, stream: SendableRecordBatchStream, encoder: CopyEncoder },
    Empty,
}

/// A `COPY … FROM STDIN` in progress: feed it the client's data, then finish it.
pub struct CopyIn {
    /// Each parsed batch is prepared for the append (cut, encoded) as it is parsed.
    decoder: CopyDecoder<streamhouse_storage::PreparedAppend>,
    topic: Arc<streamhouse_storage::TopicLog>,
    engine: Arc<Engine>,
    columns: usize,
}

impl CopyIn {
    /// Number of columns in each row (for CopyInResponse).
    pub fn column_count(&self) -> usize {
        self.columns
    }

    pub fn feed(&mut self, data: &[u8]) -> Result<()> {
        self.decoder.feed(data)
    }

    /// Appends every row atomically and returns the command tag.
    pub async fn finish(self) -> Result<String> {
        let mut write = streamhouse_storage::PreparedAppend::default();
        for part in self.decoder.finish()? {
            write.extend(part)?;
        }
        let outcome = self.engine.storage().append_prepared(&self.topic, write).await?;
        Ok(format!("COPY {}", outcome.rows()))
    }
}

fn default_settings(config: &crate::EngineConfig, user: &str) -> BTreeMap<String, String> {
    let statement_timeout = config.statement_timeout_ms.to_string();
    [
        ("server_version", SERVER_VERSION),
        ("server_version_num", SERVER_VERSION_NUM),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("datestyle", "ISO, MDY"),
        ("intervalstyle", "postgres"),
        ("timezone", "UTC"),
        ("standard_conforming_strings", "on"),
        ("integer_datetimes", "on"),
        ("transaction_isolation", "read committed"),
        ("default_transaction_isolation", "read committed"),
        ("transaction_read_only", "off"),
        ("search_path", "public"),
        ("application_name", ""),
        ("extra_float_digits", "1"),
        ("bytea_output", "hex"),
        ("statement_timeout", statement_timeout.as_str()),
        ("client_min_messages", "notice"),
        ("default_table_access_method", "heap"),
        ("max_identifier_length", "63"),
        ("lc_collate", "C"),
        ("lc_ctype", "C"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([("database".to_string(), config.database_name.clone()), ("session_authorization".to_string(), user.to_string())])
    .collect()
}

const UTC_NAMES: [&str; 7] = ["utc", "etc/utc", "gmt", "etc/gmt", "z", "+00:00", "0"];

/// A client session.
pub struct Session {
    engine: Arc<Engine>,
    context: SessionContext,
    schema: Arc<TopicSchemaProvider>,
    settings: BTreeMap<String, String>,
    in_transaction: bool,
    cursors: std::collections::HashMap<String, Cursor>,
    /// The role that logged in (`session_user`).
    session_user: String,
    /// The role set by `SET ROLE`, if any (`current_user` is it, else the session user).
    current_role: Option<String>,
    /// Where the session's client is, for the audit trail.
    client: crate::auth::audit::Client,
    /// The savepoints of the open transaction block, oldest first.
    savepoints: Vec<String>,
    /// A statement of the open transaction block failed (see [`Session::note_failure`]): COMMIT
    /// then ends it as a rollback, as PostgreSQL reports it.
    block_failed: bool,
}

/// Most savepoints one transaction block may hold.
const SAVEPOINTS_MAX: usize = 10_000;

/// A declared cursor: the rest of its query's rows (or of a subscription's changes).
struct Cursor {
    schema: SchemaRef,
    /// Only touched through `&mut` (`get_mut`, no locking); the mutex makes the session `Sync`.
    stream: Mutex<SendableRecordBatchStream>,
    /// Rows fetched from the stream but not yet returned.
    pending: Option<RecordBatch>,
    /// A subscription never ends: FETCH waits for the first rows only.
    endless: bool,
}

fn duplicate_cursor(name: &str) -> EngineError {
    EngineError::Sqlstate { code: "42P03", message: format!("cursor \"{name}\" already exists") }
}

fn unknown_cursor(name: &str) -> EngineError {
    EngineError::Sqlstate { code: "34000", message: format!("cursor \"{name}\" does not exist") }
}

pub(crate) fn single_column(name: &str, value: &str) -> (SchemaRef, RecordBatch) {
    let schema = Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, true)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(vec![value]))])
        .expect("one string column matches its schema");
    (schema, batch)
}

pub(crate) fn rows_output(schema: SchemaRef, batches: Vec<RecordBatch>, tag: &'static str) -> QueryOutput {
    let stream = futures::stream::iter(batches.into_iter().map(Ok));
    QueryOutput::Rows { schema: schema.clone(), stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)), tag }
}

fn settings_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("setting", DataType::Utf8, false),
    ]))
}

/// Most cursors one session may hold open (each keeps a running query's stream).
const CURSORS_MAX: usize = 1_000;

/// Most partitions a session may ask DataFusion to plan for (`datafusion.execution.target_partitions`).
const TARGET_PARTITIONS_MAX: usize = 256;

/// The settings in the `options` startup parameter, as PostgreSQL reads it: arguments
/// separated by spaces (a backslash keeps the next character, a space included), each
/// `-c name=value`, `-cname=value` or `--name=value` (dashes in the name are underscores).
fn parse_startup_options(options: &str) -> Result<Vec<(String, String)>> {
    let mut arguments = Vec::new();
    let mut current = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            c if c.is_ascii_whitespace() => {
                if !current.is_empty() {
                    arguments.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        arguments.push(current);
    }
    let mut settings = Vec::new();
    let mut arguments = arguments.into_iter();
    while let Some(argument) = arguments.next() {
        let setting = if argument == "-c" {
            arguments.next().ok_or_else(|| EngineError::InvalidParameter("-c in the options startup parameter needs name=value".into()))?
        } else if let Some(setting) = argument.strip_prefix("-c").or_else(|| argument.strip_prefix("--")) {
            setting.to_string()
        } else {
            return Err(EngineError::InvalidParameter(format!(
                "invalid command-line argument in the options startup parameter: {argument} (only -c name=value and --name=value are accepted)"
            )));
        };
        let Some((name, value)) = setting.split_once('=') else {
            return Err(EngineError::InvalidParameter(format!("{setting} in the options startup parameter requires a value")));
        };
        settings.push((name.trim().replace('-', "_").to_ascii_lowercase(), value.to_string()));
    }
    Ok(settings)
}

impl Session {
    pub(crate) fn new(engine: Arc<Engine>, role: &streamhouse_catalog::RoleMeta) -> Result<Self> {
        let (context, schema) = new_context(&engine)?;
        let mut session = Self {
            settings: default_settings(engine.config(), &role.name),
            engine,
            context,
            schema,
            in_transaction: false,
            cursors: Default::default(),
            session_user: role.name.clone(),
            current_role: None,
            client: Default::default(),
            savepoints: Vec::new(),
            block_failed: false,
        };
        session.act_as(None, role.superuser);
        Ok(session)
    }

    /// The role the session acts as (`current_user`).
    pub fn current_user(&self) -> &str {
        self.current_role.as_deref().unwrap_or(&self.session_user)
    }

    /// The role that logged in (`session_user`).
    pub fn session_user(&self) -> &str {
        &self.session_user
    }

    /// Where the client is (its address and protocol), as the audit trail records it.
    pub fn set_client(&mut self, client: crate::auth::audit::Client) {
        self.client = client;
    }

    /// `application_name`, for a protocol without startup parameters (Flight's `user-agent`).
    pub fn set_application_name(&mut self, name: &str) {
        self.settings.insert("application_name".into(), name.to_string());
    }

    /// An audit entry of this session's.
    pub fn audit_entry(&self, kind: crate::auth::audit::AuditKind, detail: String) -> crate::auth::audit::AuditEntry {
        crate::auth::audit::AuditEntry {
            kind,
            user_name: self.session_user.clone(),
            role_name: self.current_user().to_string(),
            client: self.client.clone(),
            application_name: self.setting("application_name").unwrap_or("").to_string(),
            detail,
        }
    }

    /// The audit entry of what `prepared`'s execution did, if it is audited: a DDL,
    /// privilege or role statement that succeeded, or any statement refused for want of a
    /// privilege.
    fn audit_of_execution(&self, prepared: &PreparedStatement, outcome: &Result<QueryOutput>) -> Option<crate::auth::audit::AuditEntry> {
        use crate::auth::audit::{redact_passwords, AuditKind};
        let kind = match (outcome, &prepared.kind) {
            (Err(error), _) if error.sqlstate() == "42501" => AuditKind::Denied,
            (Err(_), _) => return None,
            (Ok(_), PreparedKind::Parsed(statement)) => match statement {
                Statement::CreateTopic { .. } | Statement::DropTopic { .. } | Statement::CreateView { .. } | Statement::DropView { .. } => {
                    AuditKind::Ddl
                }
                Statement::Privilege(_) => AuditKind::Privilege,
                Statement::Role(_) => AuditKind::Role,
                _ => return None,
            },
            (Ok(_), _) => return None,
        };
        let statement = redact_passwords(prepared.sql.trim());
        let detail = match outcome {
            Err(error) => format!("{statement} -- refused: {error}"),
            Ok(_) => statement,
        };
        Some(self.audit_entry(kind, detail))
    }

    /// Acts as `role` (`None`: the session user again), whose superuser attribute is `superuser`:
    /// `current_user` and the `role` and `is_superuser` settings follow.
    fn act_as(&mut self, role: Option<String>, superuser: bool) {
        self.current_role = role;
        let current = self.current_user().to_string();
        self.settings.insert("role".into(), self.current_role.clone().unwrap_or_else(|| "none".into()));
        self.settings.insert("is_superuser".into(), if superuser { "on" } else { "off" }.into());
        let verify = crate::auth::audit_function::VerifyAuditFunction { engine: self.engine.clone(), role: current.clone() };
        self.context.register_udtf("streamhouse_verify_audit", Arc::new(verify));
        for (name, value) in [
            ("current_user", &current),
            ("current_role", &current),
            ("user", &current),
            ("session_user", &self.session_user.clone()),
        ] {
            let value = value.clone();
            self.context.register_udf(create_udf(
                name,
                vec![],
                DataType::Utf8,
                Volatility::Stable,
                Arc::new(move |_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(value.clone()))))),
            ));
        }
    }

    fn execute_role_statement(&mut self, statement: crate::auth::roles::RoleStatement) -> Result<QueryOutput> {
        let catalog = self.engine.storage().catalog().clone();
        let actor = crate::auth::roles::Actor { session_user: &self.session_user, current_user: self.current_user() };
        let (tag, set_role) = crate::auth::roles::execute(catalog.as_ref(), actor, statement)?;
        if let Some(role) = set_role {
            let acting = role.as_deref().unwrap_or(&self.session_user).to_string();
            let superuser = catalog.list_roles().map_err(|e| EngineError::Storage(e.into()))?.iter().any(|r| r.name == acting && r.superuser);
            self.act_as(role, superuser);
        }
        Ok(QueryOutput::Command { tag })
    }

    /// Runs a transaction statement in the autocommit model (every statement has committed
    /// already, so ROLLBACK undoes nothing): BEGIN opens a block, savepoints are names within it,
    /// checked as PostgreSQL checks them. Its command tag.
    fn transaction_command(&mut self, command: TransactionCommand) -> Result<&'static str> {
        let outside = |statement: &str| EngineError::Sqlstate { code: "25P01", message: format!("{statement} can only be used in transaction blocks") };
        let missing = |name: &str| EngineError::Sqlstate { code: "3B001", message: format!("savepoint \"{name}\" does not exist") };
        Ok(match command {
            TransactionCommand::Begin => {
                self.in_transaction = true;
                self.savepoints.clear();
                self.block_failed = false;
                "BEGIN"
            }
            TransactionCommand::Commit | TransactionCommand::Rollback => {
                let failed = std::mem::take(&mut self.block_failed);
                self.in_transaction = false;
                self.savepoints.clear();
                if matches!(command, TransactionCommand::Commit) && !failed { "COMMIT" } else { "ROLLBACK" }
            }
            TransactionCommand::Savepoint(_) | TransactionCommand::Release(_) | TransactionCommand::RollbackTo(_) if !self.in_transaction => {
                return Err(outside(match command {
                    TransactionCommand::Savepoint(_) => "SAVEPOINT",
                    TransactionCommand::Release(_) => "RELEASE SAVEPOINT",
                    _ => "ROLLBACK TO SAVEPOINT",
                }))
            }
            TransactionCommand::Savepoint(name) => {
                if self.savepoints.len() >= SAVEPOINTS_MAX {
                    return Err(EngineError::ProgramLimitExceeded(format!("too many savepoints in one transaction block ({SAVEPOINTS_MAX})")));
                }
                self.savepoints.push(name);
                "SAVEPOINT"
            }
            // The newest savepoint of the name, and every later one, end (RELEASE) or stay
            // with the later ones gone (ROLLBACK TO), as in PostgreSQL.
            TransactionCommand::Release(name) => {
                let at = self.savepoints.iter().rposition(|s| *s == name).ok_or_else(|| missing(&name))?;
                self.savepoints.truncate(at);
                "RELEASE"
            }
            TransactionCommand::RollbackTo(name) => {
                let at = self.savepoints.iter().rposition(|s| *s == name).ok_or_else(|| missing(&name))?;
                self.savepoints.truncate(at + 1);
                // Rolling back to a savepoint is how a block goes on after an error.
                self.block_failed = false;
                "ROLLBACK"
            }
            TransactionCommand::SetModes => "SET",
        })
    }

    /// Tells the session that a statement failed: inside a transaction block, the block has
    /// failed until ROLLBACK (to a savepoint) or its end.
    pub fn note_failure(&mut self) {
        if self.in_transaction {
            self.block_failed = true;
        }
    }

    /// A session setting, as SHOW reports it.
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.settings.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// `statement_timeout`, if set.
    pub fn statement_timeout(&self) -> Option<Duration> {
        let text = self.setting("statement_timeout")?;
        // A bare number is milliseconds, as in Postgres; otherwise a duration such as '5s'.
        let ms = match text.trim().parse::<i64>() {
            Ok(ms) => ms,
            Err(_) => crate::sql::duration::parse_duration_us(text).ok()? / 1000,
        };
        (ms > 0).then(|| Duration::from_millis(ms as u64))
    }

    /// `I` when idle, `T` inside BEGIN … COMMIT, `E` in a block a statement of which failed
    /// (ReadyForQuery status).
    pub fn transaction_status(&self) -> u8 {
        match (self.in_transaction, self.block_failed) {
            (false, _) => b'I',
            (true, false) => b'T',
            (true, true) => b'E',
        }
    }

    /// Applies a startup parameter. Unknown ones are kept as settings, like Postgres'
    /// custom options; values Postgres would reject here are rejected.
    pub fn apply_startup_parameter(&mut self, name: &str, value: &str) -> Result<()> {
        let name = name.to_ascii_lowercase();
        if name == "timezone" {
            // The session shows times in UTC; the client learns so from ParameterStatus.
            return Ok(());
        }
        if name == "options" {
            for (name, value) in parse_startup_options(value)? {
                self.set_variable(&name, Some(value))?;
            }
            return Ok(());
        }
        if name == "replication" {
            return Err(EngineError::NotSupported("replication connections".into()));
        }
        // Some drivers quote values here ('utf-8'); Postgres accepts that.
        let value = value.trim();
        let value = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')).unwrap_or(value);
        self.set_variable(&name, Some(value.to_string()))
    }

    fn set_variable(&mut self, name: &str, value: Option<String>) -> Result<()> {
        let Some(value) = value else {
            let user = self.settings.get("session_authorization").cloned().unwrap_or_default();
            match default_settings(self.engine.config(), &user).remove(name) {
                Some(default) => self.settings.insert(name.to_string(), default),
                None => self.settings.remove(name),
            };
            return Ok(());
        };
        let lowered = value.to_ascii_lowercase();
        let invalid = |why: &str| EngineError::InvalidParameter(format!("invalid value for parameter \"{name}\": \"{value}\" ({why})"));
        match name {
            "client_encoding" if !matches!(lowered.as_str(), "utf8" | "utf-8" | "unicode") => {
                return Err(invalid("only UTF8 is supported"))
            }
            "timezone" if !UTC_NAMES.contains(&lowered.as_str()) => {
                return Err(invalid("StreamHouse shows timestamptz values in UTC only"))
            }
            "datestyle" if !lowered.starts_with("iso") => return Err(invalid("only ISO is supported")),
            "standard_conforming_strings" if !matches!(lowered.as_str(), "on" | "true") => {
                return Err(invalid("only on is supported"))
            }
            "bytea_output" if lowered != "hex" => return Err(invalid("only hex is supported")),
            "statement_timeout" => {
                if value.parse::<u64>().is_err() && crate::sql::duration::parse_duration_us(&value).is_err() {
                    return Err(invalid("expected milliseconds or a duration such as '5s'"));
                }
            }
            // Each partition holds its own buffers and hash tables: 100 000 of them took 22 GB
            // for a GROUP BY of a thousand rows.
            "datafusion.execution.target_partitions"
                if value.trim().parse::<usize>().map_or(true, |n| n > TARGET_PARTITIONS_MAX) =>
            {
                return Err(invalid(&format!("at most {TARGET_PARTITIONS_MAX}")))
            }
            name if name.starts_with("datafusion.") => {
                let state = self.context.state_ref();
                let mut state = state.write();
                state.config_mut().options_mut().set(name, &value)?;
            }
            _ => {}
        }
        let stored = match name {
            "client_encoding" => "UTF8".to_string(),
            "timezone" => "UTC".to_string(),
            _ => value,
        };
        self.settings.insert(name.to_string(), stored);
        Ok(())
    }

    /// Parses and plans one statement (as split by [`crate::split_statements`]).
    pub async fn prepare(&self, sql: &str) -> Result<PreparedStatement> {
        if crate::pg_types::is_type_lookup(sql) {
            return Ok(PreparedStatement {
                sql: sql.to_string(),
                param_types: vec![Some(crate::pg_types::type_lookup_parameter())],
                result_schema: Some(crate::pg_types::type_lookup_schema()),
                kind: PreparedKind::TypeLookup,
                needs: Vec::new(),
            });
        }
        crate::sql::depth::check(sql, self.engine.config().statement_depth_max)?;
        let mut statement = parse_statement(sql)?;
        if let Statement::Query(query) = &mut statement {
            crate::pg_types::inline_current_setting(query.as_mut(), &self.settings)?;
            let user = self.settings.get("session_authorization").map_or("", String::as_str);
            crate::settings_catalog::inline_pg_settings(query.as_mut(), &self.settings, || default_settings(self.engine.config(), user))?;
        }
        let fast_insert = match &statement {
            Statement::Query(statement) => self.fast_insert(statement)?,
            _ => None,
        };
        let (kind, param_types, result_schema) = match (statement, fast_insert) {
            (_, Some(insert)) => (PreparedKind::LiteralInsert(insert), Vec::new(), None),
            (Statement::Query(statement), None) if matches!(*statement, ast::Statement::Update(_) | ast::Statement::Delete(_)) => {
                let storage = self.engine.storage().clone();
                let Some((topic, write, sql)) = rewrite_modification(&statement, &storage)? else {
                    return Err(EngineError::Internal("not an UPDATE or DELETE".into()));
                };
                let Statement::Query(select) = parse_statement(&sql)? else {
                    return Err(EngineError::Internal(format!("bad rewrite of {statement}: {sql}")));
                };
                let (plan, _, _) = self.plan(*select).await?;
                let param_types = crate::sql::parameters::parameter_types(&plan)?;
                (PreparedKind::Keyed { plan, topic, write }, param_types, None)
            }
            (Statement::Query(mut statement), None) if on_conflict_target(&statement, self.engine.storage())?.is_some() => {
                let topic = on_conflict_target(&statement, self.engine.storage())?
                    .ok_or_else(|| EngineError::Internal("ON CONFLICT target vanished".into()))?;
                if let ast::Statement::Insert(insert) = statement.as_mut() {
                    insert.on = None;
                }
                let (plan, _, _) = self.plan(*statement).await?;
                let LogicalPlan::Dml(dml) = plan else {
                    return Err(EngineError::Internal("INSERT did not plan as a DML statement".into()));
                };
                let plan = dml.input.as_ref().clone();
                let param_types = crate::sql::parameters::parameter_types(&plan)?;
                (PreparedKind::Keyed { plan, topic, write: KeyedWrite::InsertIgnore }, param_types, None)
            }
            (Statement::Query(statement), None) => {
                let (plan, is_insert, names) = self.plan(*statement).await?;
                let param_types = crate::sql::parameters::parameter_types(&plan)?;
                let schema = if is_insert { None } else { Some(names.present(&Arc::new(plan.schema().as_arrow().clone()))) };
                (PreparedKind::Planned { plan, is_insert, names }, param_types, schema)
            }
            (Statement::CopyTo { query, options }, None) => {
                // Planned now so that errors surface at prepare; planned again per execution.
                self.plan(ast::Statement::Query(query.clone())).await?;
                (PreparedKind::Parsed(Statement::CopyTo { query, options }), Vec::new(), None)
            }
            (other, None) => {
                let schema = match &other {
                    Statement::ShowTopics => Some(crate::show::show_topics_schema()),
                    Statement::Describe { .. } => Some(crate::show::describe_schema()),
                    Statement::ShowAll => Some(settings_schema()),
                    Statement::ShowVariable { name } => Some(single_column(crate::settings_catalog::display_name(name), "").0),
                    Statement::ShowViews => Some(crate::show::show_views_schema()),
                    Statement::Subscribe { view, .. } => {
                        let handle = self.engine.views().get(view).ok_or_else(|| EngineError::UndefinedTable(view.clone()))?;
                        Some(crate::stream::subscribe::subscription_schema(&handle)?)
                    }
                    Statement::Fetch { name, .. } => {
                        Some(self.cursors.get(name).ok_or_else(|| unknown_cursor(name))?.schema.clone())
                    }
                    Statement::ExplainView { .. } => Some(single_column("QUERY PLAN", "").0),
                    _ => None,
                };
                (PreparedKind::Parsed(other), Vec::new(), schema)
            }
        };
        let needs = match &kind {
            PreparedKind::LiteralInsert(insert) => vec![(insert.topic.name().to_string(), Privilege::Insert)],
            PreparedKind::Keyed { plan, topic, write } => {
                let mut needs = plan_needs(plan);
                let privilege = match write {
                    KeyedWrite::InsertIgnore => Privilege::Insert,
                    KeyedWrite::Update => Privilege::Update,
                    KeyedWrite::Delete => Privilege::Delete,
                };
                needs.push((topic.name().to_string(), privilege));
                needs
            }
            PreparedKind::Planned { plan, .. } => plan_needs(plan),
            PreparedKind::Parsed(_) | PreparedKind::TypeLookup => Vec::new(),
        };
        Ok(PreparedStatement { sql: sql.to_string(), param_types, result_schema, kind, needs })
    }

    /// The literal fast path for an INSERT, if every value fits its target column.
    fn fast_insert(&self, statement: &ast::Statement) -> Result<Option<ResolvedInsert>> {
        let Some(literal) = literal_insert(statement)? else { return Ok(None) };
        let Some(topic) = self.engine.storage().topic(&literal.table) else { return Ok(None) };
        let schema = topic.schema();
        let targets: Vec<usize> = if literal.columns.is_empty() {
            (0..schema.fields().len()).collect()
        } else {
            let mut targets = Vec::with_capacity(literal.columns.len());
            for name in &literal.columns {
                match schema.index_of(name) {
                    Ok(index) if !targets.contains(&index) => targets.push(index),
                    _ => return Ok(None), // DataFusion reports the error
                }
            }
            targets
        };
        let fits = literal.rows.iter().all(|row| {
            row.len() == targets.len()
                && row.iter().zip(&targets).all(|(value, &t)| value.fits(schema.field(t).data_type()))
        });
        Ok(fits.then(|| ResolvedInsert { topic: topic.clone(), targets, literal }))
    }

    async fn insert_literals(&self, insert: &ResolvedInsert) -> Result<u64> {
        let ResolvedInsert { topic, targets, literal } = insert;
        let schema = topic.schema().clone();
        let rows = literal.rows.len();
        let mut columns: Vec<arrow::array::ArrayRef> =
            schema.fields().iter().map(|f| arrow::array::new_null_array(f.data_type(), rows)).collect();
        for (position, &target) in targets.iter().enumerate() {
            let field = schema.field(target);
            let texts: Vec<Option<String>> = literal.rows.iter().map(|row| row[position].text()).collect();
            let values: Vec<Option<&str>> = texts.iter().map(|t| t.as_deref()).collect();
            columns[target] = crate::text::input::parse_column(&values, field.data_type())
                .map_err(|e| EngineError::InvalidText(e.message))?;
        }
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<_>>())),
            columns,
        )?;
        let batch = crate::provider::conform_batch(topic, &batch)?;
        Ok(self.engine.storage().append(topic, vec![batch]).await?.rows())
    }

    /// Plans a statement; a query's result columns get PostgreSQL's names (see
    /// [`crate::sql::column_names`]).
    async fn plan(&self, mut statement: ast::Statement) -> Result<(LogicalPlan, bool, ColumnNames)> {
        let storage = self.engine.storage().clone();
        let insert = match &statement {
            ast::Statement::Insert(insert) => Some(insert),
            ast::Statement::Explain { statement, .. } => match statement.as_ref() {
                ast::Statement::Insert(insert) => Some(insert),
                _ => None,
            },
            _ => None,
        };
        let target = match insert.map(|i| &i.table) {
            Some(ast::TableObject::TableName(name)) => Some(object_name(name)?),
            Some(other) => return Err(EngineError::NotSupported(format!("INSERT INTO {other}"))),
            None => None,
        };
        let is_insert = matches!(statement, ast::Statement::Insert(_));
        if let Some(target) = &target {
            if storage.topic(target).is_none() {
                return Err(EngineError::UndefinedTable(target.clone()));
            }
        }
        let is_topic = |name: &str| Some(name) != target.as_deref() && storage.topic(name).is_some();
        hide_system_columns(&mut statement, &is_topic);
        let names = match &mut statement {
            ast::Statement::Query(query) => {
                let names = name_columns(query);
                give_postgres_meaning(query)?;
                names
            }
            ast::Statement::Insert(ast::Insert { source: Some(query), .. }) => {
                give_postgres_meaning(query)?;
                ColumnNames::default()
            }
            _ => ColumnNames::default(),
        };
        *self.schema.write_target.lock().unwrap_or_else(|p| p.into_inner()) = target.clone();
        let state = self.context.state();
        let planned = state.statement_to_plan(DfStatement::Statement(Box::new(statement))).await;
        *self.schema.write_target.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let plan = planned?;
        check_target_list(&plan)?;
        Ok((plan, is_insert, names))
    }

    /// Runs a prepared statement with parameter values (one per parameter), and records it in
    /// the audit trail if it is audited.
    pub async fn execute(&mut self, prepared: &PreparedStatement, params: Vec<ScalarValue>) -> Result<QueryOutput> {
        let outcome = self.execute_unaudited(prepared, params).await;
        // Made before the await: the outcome's streams are not `Sync`.
        if let Some(entry) = self.audit_of_execution(prepared, &outcome) {
            self.engine.audit(entry).await;
        }
        outcome
    }

    async fn execute_unaudited(&mut self, prepared: &PreparedStatement, params: Vec<ScalarValue>) -> Result<QueryOutput> {
        if params.len() != prepared.param_types.len() {
            return Err(EngineError::Syntax(format!(
                "bind message supplies {} parameters, but prepared statement requires {}",
                params.len(),
                prepared.param_types.len()
            )));
        }
        self.engine.authorize(self.current_user(), &prepared.needs)?;
        match &prepared.kind {
            PreparedKind::Planned { plan, is_insert, names } => {
                let plan = if params.is_empty() { plan.clone() } else { plan.clone().with_param_values(params)? };
                let frame = self.context.execute_logical_plan(plan).await?;
                let stream = frame.execute_stream().await?;
                if *is_insert {
                    let rows = count_rows_written(stream).await?;
                    return Ok(QueryOutput::Command { tag: format!("INSERT 0 {rows}") });
                }
                let tag = if prepared.sql.trim_start().get(..7).is_some_and(|s| s.eq_ignore_ascii_case("explain")) {
                    "EXPLAIN"
                } else {
                    "SELECT"
                };
                let stream = present(names, stream);
                Ok(QueryOutput::Rows { schema: stream.schema(), stream, tag })
            }
            PreparedKind::Keyed { plan, topic, write } => {
                let plan = if params.is_empty() { plan.clone() } else { plan.clone().with_param_values(params)? };
                let rows = crate::keyed::write(&self.context, self.engine.storage(), self.engine.config().statement_bytes_max, plan, topic, *write).await?;
                Ok(QueryOutput::Command { tag: write.tag(rows) })
            }
            PreparedKind::Parsed(statement) => self.execute_parsed(statement.clone()).await,
            PreparedKind::TypeLookup => {
                let batch = crate::pg_types::type_lookup(&params)?;
                Ok(rows_output(batch.schema(), vec![batch], "SELECT"))
            }
            PreparedKind::LiteralInsert(insert) => {
                let rows = self.insert_literals(insert).await?;
                Ok(QueryOutput::Command { tag: format!("INSERT 0 {rows}") })
            }
        }
    }

    async fn execute_parsed(&mut self, statement: Statement) -> Result<QueryOutput> {
        let storage = self.engine.storage().clone();
        match statement {
            Statement::Empty => Ok(QueryOutput::Empty),
            Statement::Role(statement) => self.execute_role_statement(statement),
            Statement::Privilege(statement) => {
                let tag = crate::auth::grants::execute(&self.engine, self.current_user(), statement)?;
                Ok(QueryOutput::Command { tag })
            }
            Statement::CreateTopic { definition, if_not_exists } => {
                self.engine.authorize(self.current_user(), &[("public".into(), Privilege::Create)])?;
                match storage.create_topic(&definition) {
                    Ok(_) => self.engine.record_owner(self.current_user(), &definition.name)?,
                    Err(streamhouse_storage::StorageError::TopicExists(_)) if if_not_exists => {}
                    Err(streamhouse_storage::StorageError::TopicExists(name)) => {
                        return Err(EngineError::DuplicateTable(name))
                    }
                    Err(other) => return Err(other.into()),
                }
                let tag = if definition.primary_key.is_empty() { "CREATE TOPIC" } else { "CREATE TABLE" };
                Ok(QueryOutput::Command { tag: tag.into() })
            }
            Statement::DropTopic { name, if_exists, as_table } => {
                self.engine.authorize_owner(self.current_user(), &name)?;
                match storage.drop_topic(&name) {
                    Ok(()) => {}
                    Err(streamhouse_storage::StorageError::TopicNotFound(_)) if if_exists => {}
                    Err(streamhouse_storage::StorageError::TopicNotFound(name)) => return Err(EngineError::UndefinedTable(name)),
                    Err(streamhouse_storage::StorageError::Catalog(error @ streamhouse_catalog::CatalogError::InUse { .. })) => {
                        return Err(EngineError::Sqlstate { code: "2BP01", message: error.to_string() })
                    }
                    Err(other) => return Err(other.into()),
                }
                Ok(QueryOutput::Command { tag: if as_table { "DROP TABLE" } else { "DROP TOPIC" }.into() })
            }
            Statement::CreateView { name, query, options, if_not_exists, .. } => {
                // The creator needs CREATE and SELECT on what the view reads; the view then
                // reads with its owner's rights.
                let (plan, _, _) = self.plan(ast::Statement::Query(query.clone())).await?;
                let mut needs = plan_needs(&plan);
                needs.push(("public".into(), Privilege::Create));
                self.engine.authorize(self.current_user(), &needs)?;
                let existed = self.engine.views().get(&name).is_some();
                let state = self.context.state();
                crate::stream::ddl::create_view(&self.engine, &state, &name, &query, options, if_not_exists).await?;
                if !existed {
                    self.engine.record_owner(self.current_user(), &name)?;
                }
                Ok(QueryOutput::Command { tag: "CREATE MATERIALIZED VIEW".into() })
            }
            Statement::ExplainView { query, emit_on_window_close } => {
                let state = self.context.state();
                let plan = crate::stream::ddl::plan_view(&self.engine, &state, &query, 0, emit_on_window_close).await?;
                let schema = single_column("QUERY PLAN", "").0;
                let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(plan.explain()))])?;
                Ok(rows_output(schema, vec![batch], "EXPLAIN"))
            }
            Statement::DropView { name, if_exists, cascade } => {
                self.engine.authorize_owner(self.current_user(), &name)?;
                crate::stream::ddl::drop_view(&self.engine, &name, if_exists, cascade).await?;
                Ok(QueryOutput::Command { tag: "DROP MATERIALIZED VIEW".into() })
            }
            Statement::Flush { view } => {
                // REFRESH MATERIALIZED VIEW is its owner's, as in PostgreSQL; FLUSH (every view)
                // only waits for work already accepted, and is anyone's.
                if let Some(view) = &view {
                    self.engine.authorize_owner(self.current_user(), view)?;
                }
                crate::stream::ddl::flush(&self.engine, view.as_deref()).await?;
                Ok(QueryOutput::Command { tag: if view.is_some() { "REFRESH MATERIALIZED VIEW" } else { "FLUSH" }.into() })
            }
            Statement::Subscribe { view, snapshot } => {
                self.engine.authorize(self.current_user(), &[(view.clone(), Privilege::Select)])?;
                let handle = self.engine.views().get(&view).ok_or(EngineError::UndefinedTable(view))?;
                let stream = crate::stream::subscribe::subscribe(handle, snapshot)?;
                Ok(QueryOutput::Rows { schema: stream.schema(), stream, tag: "SUBSCRIBE" })
            }
            Statement::Declare { name, sql, statement } => {
                if self.cursors.contains_key(&name) {
                    return Err(duplicate_cursor(&name));
                }
                if self.cursors.len() >= CURSORS_MAX {
                    return Err(EngineError::ProgramLimitExceeded(format!(
                        "too many open cursors in this session ({CURSORS_MAX}): CLOSE some first"
                    )));
                }
                let endless = matches!(*statement, Statement::Subscribe { .. });
                let prepared = self.prepare(&sql).await?;
                let QueryOutput::Rows { schema, stream, .. } = Box::pin(self.execute(&prepared, vec![])).await? else {
                    return Err(EngineError::Syntax("a cursor is declared FOR a query or a SUBSCRIBE".into()));
                };
                self.cursors.insert(name, Cursor { schema, stream: Mutex::new(stream), pending: None, endless });
                Ok(QueryOutput::Command { tag: "DECLARE CURSOR".into() })
            }
            Statement::Fetch { name, count, timeout_us } => {
                let deadline = timeout_us.map(|us| tokio::time::Instant::now() + Duration::from_micros(us.max(0) as u64));
                let cursor = self.cursors.get_mut(&name).ok_or_else(|| unknown_cursor(&name))?;
                let limit = count.unwrap_or(u64::MAX) as usize;
                let mut batches = Vec::new();
                let mut rows = 0;
                while rows < limit {
                    let batch = match cursor.pending.take() {
                        Some(batch) => batch,
                        None => {
                            let stream = cursor.stream.get_mut().unwrap_or_else(|p| p.into_inner());
                            let next = if cursor.endless && rows > 0 {
                                // A subscription: after the first rows, only what is ready now.
                                match futures::FutureExt::now_or_never(stream.next()) {
                                    Some(next) => next,
                                    None => break,
                                }
                            } else if let Some(deadline) = deadline {
                                match tokio::time::timeout_at(deadline, stream.next()).await {
                                    Ok(next) => next,
                                    Err(_) => break, // nothing within the timeout
                                }
                            } else {
                                stream.next().await
                            };
                            match next {
                                Some(batch) => batch?,
                                None => break,
                            }
                        }
                    };
                    let take = batch.num_rows().min(limit - rows);
                    if take < batch.num_rows() {
                        cursor.pending = Some(batch.slice(take, batch.num_rows() - take));
                    }
                    rows += take;
                    batches.push(batch.slice(0, take));
                }
                Ok(rows_output(cursor.schema.clone(), batches, "FETCH"))
            }
            Statement::Close { name } => {
                match name {
                    Some(name) => {
                        self.cursors.remove(&name).ok_or_else(|| unknown_cursor(&name))?;
                    }
                    None => self.cursors.clear(),
                }
                Ok(QueryOutput::Command { tag: "CLOSE CURSOR".into() })
            }
            Statement::ShowViews => {
                let schema = crate::show::show_views_schema();
                let batch = crate::stream::ddl::show_views(&self.engine, schema.clone())?;
                Ok(rows_output(schema, vec![batch], "SHOW"))
            }
            Statement::ShowTopics => crate::show::show_topics(&self.engine.listed_topics()),
            Statement::Describe { name } => crate::show::describe(&self.engine, &name),
            Statement::SetVariable { name, value } => {
                self.set_variable(&name, value)?;
                Ok(QueryOutput::Command { tag: "SET".into() })
            }
            Statement::ResetVariable { name } => {
                match name {
                    Some(name) => self.set_variable(&name, None)?,
                    None => {
                        let user = self.settings.get("session_authorization").cloned().unwrap_or_default();
                        let superuser = self.setting("is_superuser") == Some("on");
                        self.settings = default_settings(self.engine.config(), &user);
                        // As in PostgreSQL, RESET ALL leaves the role set by SET ROLE.
                        self.act_as(self.current_role.clone(), superuser);
                    }
                }
                Ok(QueryOutput::Command { tag: "RESET".into() })
            }
            Statement::ShowVariable { name } => {
                let value = match self.settings.get(&name) {
                    Some(value) => value.clone(),
                    None if name.starts_with("datafusion.") => {
                        let state = self.context.state();
                        state
                            .config_options()
                            .entries()
                            .into_iter()
                            .find(|e| e.key == name)
                            .and_then(|e| e.value)
                            .unwrap_or_default()
                    }
                    None => {
                        return Err(EngineError::UndefinedObject(format!("unrecognized configuration parameter \"{name}\"")))
                    }
                };
                let (schema, batch) = single_column(crate::settings_catalog::display_name(&name), &value);
                Ok(rows_output(schema, vec![batch], "SHOW"))
            }
            Statement::ShowAll => {
                let schema = settings_schema();
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(StringArray::from_iter_values(self.settings.keys())),
                        Arc::new(StringArray::from_iter_values(self.settings.values())),
                    ],
                )?;
                Ok(rows_output(schema, vec![batch], "SHOW"))
            }
            Statement::Transaction(command) => {
                let tag = self.transaction_command(command)?;
                Ok(QueryOutput::Command { tag: tag.into() })
            }
            Statement::Ignored { tag } => Ok(QueryOutput::Command { tag }),
            Statement::CopyFrom { table, columns, options } => {
                self.engine.authorize(self.current_user(), &[(table.clone(), Privilege::Insert)])?;
                let topic = storage.topic(&table).ok_or_else(|| EngineError::UndefinedTable(table.clone()))?;
                let prepare_topic = topic.clone();
                let step: crate::copy::BatchStep<streamhouse_storage::PreparedAppend> =
                    Arc::new(move |batch| Ok(streamhouse_storage::prepare(&prepare_topic, vec![batch])?));
                let decoder =
                    CopyDecoder::with_step(&table, topic.schema().clone(), &columns, options, self.engine.config().copy_bytes_max, step)?;
                let column_count = if columns.is_empty() { topic.schema().fields().len() } else { columns.len() };
                Ok(QueryOutput::CopyIn(CopyIn { decoder, topic, engine: self.engine.clone(), columns: column_count }))
            }
            Statement::CopyTo { query, options } => {
                let (plan, _, names) = self.plan(ast::Statement::Query(query)).await?;
                self.engine.authorize(self.current_user(), &plan_needs(&plan))?;
                let frame = self.context.execute_logical_plan(plan).await?;
                let stream = present(&names, frame.execute_stream().await?);
                Ok(QueryOutput::CopyOut { schema: stream.schema(), stream, encoder: CopyEncoder::new(options) })
            }
            Statement::CopySubscribe { view, snapshot, options } => {
                self.engine.authorize(self.current_user(), &[(view.clone(), Privilege::Select)])?;
                let handle = self.engine.views().get(&view).ok_or(EngineError::UndefinedTable(view))?;
                let stream = crate::stream::subscribe::subscribe(handle, snapshot)?;
                Ok(QueryOutput::CopyOut { schema: stream.schema(), stream, encoder: CopyEncoder::new(options) })
            }
            Statement::Query(_) => Err(EngineError::Internal("query statements are planned at prepare".into())),
        }
    }
}

/// The row count of a DML plan's single-row result.
async fn count_rows_written(mut stream: SendableRecordBatchStream) -> Result<u64> {
    let mut total = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        if let Some(counts) = batch.column(0).as_any().downcast_ref::<UInt64Array>() {
            total += counts.values().iter().sum::<u64>();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse_startup_options;

    #[test]
    fn startup_options_are_read_as_postgres_reads_them() {
        let settings = parse_startup_options("-c statement_timeout=250  --application-name=my\\ app -cDateStyle=ISO").unwrap();
        let expected = [("statement_timeout", "250"), ("application_name", "my app"), ("datestyle", "ISO")];
        assert_eq!(settings, expected.map(|(n, v)| (n.to_string(), v.to_string())));
        assert!(parse_startup_options("").unwrap().is_empty());
        for bad in ["-c", "-d 5", "--flag", "-c name"] {
            assert_eq!(parse_startup_options(bad).unwrap_err().sqlstate(), "22023", "{bad}");
        }
    }
}
