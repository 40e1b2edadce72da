//! The SQL engine of StreamHouse: the one door between front ends and the log.
//!
//! The engine owns SQL parsing (our DDL as extensions of sqlparser's Postgres dialect), the
//! DataFusion session and topic table providers, COPY encoding and decoding, the Postgres text
//! formats of values, and the streaming engine (materialized views and their RocksDB state). Front ends (Postgres wire, Flight, HTTP) hand it statements and
//! bytes and get back Arrow batches and command tags; they never touch storage or the catalog.

mod arithmetic;
pub mod auth;
pub mod bulk;
mod casts;
mod copy;
mod error;
mod information_schema;
pub mod keyed;
pub mod memory;
pub mod pg_catalog;
mod pg_functions;
pub mod pg_types;
pub mod provider;
pub mod query_memory;
mod recursion_limit;
mod session;
mod settings_catalog;
mod show;
mod single_value;
pub mod sql;
pub mod stream;
pub mod text;
mod to_char;

use std::sync::Arc;

use streamhouse_catalog::SqliteCatalog;
use streamhouse_storage::Storage;

pub use copy::{CopyDecoder, CopyEncoder, CopyFormat, CopyOptions};
pub use error::{EngineError, Result};
pub use session::{version_string, CopyIn, PreparedStatement, QueryOutput, Session, SERVER_VERSION};
pub use sql::statement::split_statements;
pub use sql::types::PG_TYPE_METADATA;
pub use to_char::ToChar;

pub use arrow;
pub use datafusion;
pub use streamhouse_storage::metrics;
pub use streamhouse_storage::StorageConfig;

/// Limits of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The database name clients see; every database name they ask for maps to it.
    pub database_name: String,
    /// Most bytes one INSERT may write (it is appended atomically, so it is held in memory).
    pub statement_bytes_max: u64,
    /// Most bytes of input one COPY FROM may take (appended atomically, likewise).
    pub copy_bytes_max: u64,
    /// How often a materialized view may commit an epoch.
    pub epoch_interval: std::time::Duration,
    /// How often the state store's WAL is synced (what a power loss may roll back).
    pub checkpoint_interval: std::time::Duration,
    /// A source partition with no new rows for this long stops holding back its topic's
    /// watermark in views.
    pub idle_timeout: std::time::Duration,
    /// Memory each view holds for its operators' state (touched this epoch and cached from
    /// earlier ones), its epoch's write batch and output: an epoch reaching it ends early, and
    /// caches are dropped between epochs past half of it. The state itself lives in RocksDB.
    pub state_cache_bytes_max: u64,
    /// RocksDB's memory for the state store, shared by every view: its block cache
    /// (uncompressed blocks, index and filter blocks) with the memtables charged to it.
    pub state_block_cache_bytes: u64,
    /// Memory for complete reads of views kept until the view's next commit, shared by every
    /// view (0: none): a view read again before it changes is not read from RocksDB again.
    pub view_read_cache_bytes: u64,
    /// Deepest nesting a statement may have (operators in a chain, parentheses, query blocks;
    /// see [`sql::depth`]): deeper ones are refused with `54001` before planning, so that
    /// planning stays within the threads' stack.
    pub statement_depth_max: usize,
    /// Every session's `statement_timeout` until it sets its own (ms; 0: none).
    pub statement_timeout_ms: u64,
    /// Memory a session's running statement may reserve in DataFusion's operators (sorts,
    /// aggregates, joins); past it they spill to disk where they can, else fail with `53200`.
    pub query_memory_bytes_max: u64,
    /// Memory all sessions' statements together may reserve.
    pub server_memory_bytes_max: u64,
    /// Most iterations of a recursive CTE's recursive term; one more fails the statement with
    /// `54000` (see [`recursion_limit`]).
    pub recursive_iterations_max: u64,
    /// How connections prove which role they are (see [`auth`]).
    pub auth: auth::AuthMethod,
    /// The bootstrap superuser's password: given at the first start, it is the password; on a
    /// later start it replaces the stored one. Without it the first start generates one.
    pub superuser_password: Option<auth::Secret>,
    /// Refuse connections from other hosts that do not use TLS (`--tls-required`).
    pub tls_required: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            database_name: "streamhouse".into(),
            statement_bytes_max: 256 * 1024 * 1024,
            copy_bytes_max: 1024 * 1024 * 1024,
            epoch_interval: std::time::Duration::from_millis(20),
            checkpoint_interval: std::time::Duration::from_secs(1),
            idle_timeout: std::time::Duration::from_secs(5),
            state_cache_bytes_max: 64 * 1024 * 1024,
            state_block_cache_bytes: 256 * 1024 * 1024,
            view_read_cache_bytes: 256 * 1024 * 1024,
            statement_depth_max: STATEMENT_DEPTH_MAX_DEFAULT,
            statement_timeout_ms: 0,
            query_memory_bytes_max: 2 << 30,
            server_memory_bytes_max: 8 << 30,
            recursive_iterations_max: 1_000_000,
            auth: auth::AuthMethod::default(),
            superuser_password: None,
            tls_required: false,
        }
    }
}

/// The default of [`EngineConfig::statement_depth_max`]: what the default thread stack
/// ([`THREAD_STACK_BYTES_DEFAULT`]) plans with a wide margin, measured in `tests/hostile.rs`.
pub const STATEMENT_DEPTH_MAX_DEFAULT: usize = 1000;

/// The default stack of the server's threads (runtime workers and the blocking pool), where
/// statements are planned and run.
pub const THREAD_STACK_BYTES_DEFAULT: usize = 64 * 1024 * 1024;

/// The engine: storage plus what sessions share.
pub struct Engine {
    storage: Storage,
    config: EngineConfig,
    views: Arc<stream::Views>,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// What every session's queries reserve together (see [`query_memory`]).
    query_memory: Arc<dyn datafusion::execution::memory_pool::MemoryPool>,
    /// Salts made-up SCRAM challenges for unknown roles (see [`auth::Challenge`]).
    mock_secret: Vec<u8>,
    /// Where the first start wrote the generated superuser password, when this start was it.
    superuser_password_file: Option<std::path::PathBuf>,
    /// The writer of the audit trail (see [`auth::audit`]).
    audit: auth::audit::AuditLog,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("config", &self.config).finish()
    }
}

impl Engine {
    /// Opens the catalog (`catalog.db` in the data directory), storage and the state store
    /// (`state/`), and starts every materialized view from its last committed epoch.
    pub async fn open(storage_config: StorageConfig, config: EngineConfig) -> Result<Arc<Self>> {
        std::fs::create_dir_all(&storage_config.data_dir).map_err(|source| {
            EngineError::Storage(streamhouse_storage::StorageError::DataDirectory {
                path: storage_config.data_dir.display().to_string(),
                source,
            })
        })?;
        let catalog = SqliteCatalog::open(&storage_config.data_dir.join("catalog.db"))
            .map_err(|e| EngineError::Storage(e.into()))?;
        let state_dir = storage_config.data_dir.join("state");
        let superuser_password_file =
            auth::bootstrap(&catalog, config.superuser_password.as_ref(), &storage_config.data_dir)?;
        let storage = Storage::open(storage_config, Arc::new(catalog)).await?;
        let audit = auth::audit::AuditLog::open(&storage).await?;
        let timing = stream::EpochTiming { epoch_interval: config.epoch_interval, idle_timeout: config.idle_timeout };
        let views = Arc::new(stream::Views::open(&state_dir, timing, config.checkpoint_interval, usize::try_from(config.state_block_cache_bytes).unwrap_or(usize::MAX), usize::try_from(config.view_read_cache_bytes).unwrap_or(usize::MAX))?);
        let (shutdown, shutdown_receiver) = tokio::sync::watch::channel(false);
        tokio::spawn(views.clone().checkpoint(shutdown_receiver));
        let (readers, catalog) = (views.clone(), storage.catalog().clone());
        storage.set_compaction_floor(Arc::new(move |topic, partition| match catalog.list_views() {
            Ok(metas) => readers.tombstone_floor(&metas, topic, partition),
            Err(_) => 0, // unknown readers: keep every tombstone
        }));
        let query_memory = query_memory::server_pool(usize::try_from(config.server_memory_bytes_max).unwrap_or(usize::MAX));
        let mock_secret = auth::scram::random_bytes(32);
        let engine =
            Arc::new(Self { storage, config, views, shutdown, query_memory, mock_secret, superuser_password_file, audit });
        stream::ddl::start_views(&engine).await?;
        Ok(engine)
    }

    /// The materialized views of this node.
    pub fn views(&self) -> &Arc<stream::Views> {
        &self.views
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Every topic and keyed table users see in listings: all but the audit trail's (which is
    /// read by name, as PostgreSQL's catalogs are).
    pub fn listed_topics(&self) -> Vec<Arc<streamhouse_storage::TopicLog>> {
        let mut topics = self.storage.topics();
        topics.retain(|topic| topic.name() != auth::audit::AUDIT_TOPIC);
        topics
    }

    /// Records an event in the audit trail and waits until it is durable (see [`auth::audit`]).
    pub async fn audit(&self, entry: auth::audit::AuditEntry) {
        self.audit.record(entry).await;
    }

    /// Records a successful login in the audit trail: in order, durable with the next append,
    /// not waited for (see [`auth::audit`]).
    pub async fn audit_login(&self, entry: auth::audit::AuditEntry) {
        self.audit.record_in_order(entry).await;
    }

    /// A new session's DataFusion runtime: its own memory pool of `query_memory_bytes_max`,
    /// drawing from the server's.
    pub(crate) fn session_runtime(&self) -> Result<Arc<datafusion::execution::runtime_env::RuntimeEnv>> {
        let limit = usize::try_from(self.config.query_memory_bytes_max).unwrap_or(usize::MAX);
        let pool = Arc::new(query_memory::SessionPool::new(self.query_memory.clone(), limit));
        Ok(datafusion::execution::runtime_env::RuntimeEnvBuilder::new().with_memory_pool(pool).build_arc()?)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// A new session of the role `user`, which must exist and may log in (`28000` otherwise);
    /// the front end has authenticated the client as that role.
    pub fn new_session(self: &Arc<Self>, user: &str) -> Result<Session> {
        let role = self.login_role(user)?;
        Session::new(self.clone(), &role)
    }

    /// A session of the bootstrap superuser, for the server's own work and for front ends that
    /// do not authenticate yet (Arrow Flight).
    pub fn superuser_session(self: &Arc<Self>) -> Result<Session> {
        self.new_session(auth::BOOTSTRAP_SUPERUSER)
    }

    /// Where this start wrote the superuser's generated password (the first start without a
    /// configured one).
    pub fn superuser_password_file(&self) -> Option<&std::path::Path> {
        self.superuser_password_file.as_deref()
    }

    pub(crate) fn mock_secret(&self) -> &[u8] {
        &self.mock_secret
    }

    /// Prometheus text of the engine's and storage's metrics.
    pub fn render_metrics(&self, out: &mut String) {
        self.storage.metrics().render(out);
        stream::render_metrics(&self.views, out);
        out.push_str("# HELP streamhouse_audit_entries_lost_total Audit entries that could not be written (see the log).\n");
        out.push_str("# TYPE streamhouse_audit_entries_lost_total counter\n");
        out.push_str(&format!("streamhouse_audit_entries_lost_total {}\n", self.audit.lost()));
    }

    /// Stops background work after every acknowledged write and committed epoch is on disk.
    pub async fn shutdown(&self) {
        self.shutdown.send_replace(true);
        self.views.shutdown().await;
        self.storage.shutdown().await;
    }
}
