//! Server configuration: command-line flags, then `STREAMHOUSE_*` environment variables, then
//! an optional TOML file, then defaults. Every limit is a named value with a unit in its name.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use streamhouse_engine::{EngineConfig, StorageConfig};

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (flags and environment take precedence).
    #[arg(long, env = "STREAMHOUSE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory: WAL, catalog and (by default) segment objects.
    #[arg(long, env = "STREAMHOUSE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Object store for segments: file:///path or s3://bucket/prefix (AWS_* variables configure S3).
    #[arg(long, env = "STREAMHOUSE_OBJECT_STORE")]
    pub object_store: Option<String>,
    /// Postgres wire protocol address.
    #[arg(long, env = "STREAMHOUSE_PG_LISTEN")]
    pub pg_listen: Option<String>,
    /// HTTP address (/health, /metrics).
    #[arg(long, env = "STREAMHOUSE_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// Arrow Flight and Flight SQL address.
    #[arg(long, env = "STREAMHOUSE_FLIGHT_LISTEN")]
    pub flight_listen: Option<String>,
    /// Largest gRPC message accepted from a Flight client (bytes).
    #[arg(long, env = "STREAMHOUSE_FLIGHT_MESSAGE_BYTES_MAX")]
    pub flight_message_bytes_max: Option<u64>,
    /// Concurrent Flight requests on one client connection.
    #[arg(long, env = "STREAMHOUSE_FLIGHT_STREAMS_PER_CONNECTION_MAX")]
    pub flight_streams_per_connection_max: Option<u64>,
    /// Bytes a Flight client may send on one request before the server acknowledges them
    /// (the HTTP/2 receive window; twice this per connection).
    #[arg(long, env = "STREAMHOUSE_FLIGHT_RECEIVE_WINDOW_BYTES")]
    pub flight_receive_window_bytes: Option<u64>,
    /// How long a Flight bearer token (from Handshake) stays valid (ms).
    #[arg(long, env = "STREAMHOUSE_FLIGHT_TOKEN_LIFETIME_MS")]
    pub flight_token_lifetime_ms: Option<u64>,
    /// Seal a partition's open segment at this many bytes.
    #[arg(long, env = "STREAMHOUSE_SEGMENT_BYTES_MAX")]
    pub segment_bytes_max: Option<u64>,
    /// Seal a partition's open segment once its oldest row is this old.
    #[arg(long, env = "STREAMHOUSE_SEGMENT_AGE_MAX_MS")]
    pub segment_age_max_ms: Option<u64>,
    /// Byte budget of the in-memory segment cache.
    #[arg(long, env = "STREAMHOUSE_SEGMENT_CACHE_BYTES_MAX")]
    pub segment_cache_bytes_max: Option<u64>,
    /// Start a new WAL file past this size.
    #[arg(long, env = "STREAMHOUSE_WAL_FILE_BYTES_MAX")]
    pub wal_file_bytes_max: Option<u64>,
    /// How often retention runs.
    #[arg(long, env = "STREAMHOUSE_RETENTION_CHECK_INTERVAL_MS")]
    pub retention_check_interval_ms: Option<u64>,
    /// How often keyed tables are checked for compaction.
    #[arg(long, env = "STREAMHOUSE_COMPACTION_INTERVAL_MS")]
    pub compaction_interval_ms: Option<u64>,
    /// Compact a keyed table's partition once it has this many segments.
    #[arg(long, env = "STREAMHOUSE_COMPACTION_SEGMENTS_MIN")]
    pub compaction_segments_min: Option<u64>,
    /// Compaction drops a deleted key's tombstone once it is this old.
    #[arg(long, env = "STREAMHOUSE_TOMBSTONE_RETENTION_MS")]
    pub tombstone_retention_ms: Option<u64>,
    /// Most unsealed bytes per partition before appends wait for sealing.
    #[arg(long, env = "STREAMHOUSE_PARTITION_TAIL_BYTES_MAX")]
    pub partition_tail_bytes_max: Option<u64>,
    /// How long an append waits for sealing to catch up before failing.
    #[arg(long, env = "STREAMHOUSE_APPEND_WAIT_MS_MAX")]
    pub append_wait_ms_max: Option<u64>,
    /// Disk space held in reserve and given back when the disk is full, so DROP can free space.
    #[arg(long, env = "STREAMHOUSE_DISK_RESERVE_BYTES")]
    pub disk_reserve_bytes: Option<u64>,
    /// Largest Postgres protocol message accepted.
    #[arg(long, env = "STREAMHOUSE_MESSAGE_BYTES_MAX")]
    pub message_bytes_max: Option<usize>,
    /// Most Postgres connections at once; one more is refused with 53300.
    #[arg(long, env = "STREAMHOUSE_PG_CONNECTIONS_MAX")]
    pub pg_connections_max: Option<u64>,
    /// How long a Postgres connection may take to send its startup packet (ms).
    #[arg(long, env = "STREAMHOUSE_PG_STARTUP_TIMEOUT_MS")]
    pub pg_startup_timeout_ms: Option<u64>,
    /// Largest INSERT (bytes of Arrow data), appended atomically.
    #[arg(long, env = "STREAMHOUSE_STATEMENT_BYTES_MAX")]
    pub statement_bytes_max: Option<u64>,
    /// Largest COPY FROM input, appended atomically.
    #[arg(long, env = "STREAMHOUSE_COPY_BYTES_MAX")]
    pub copy_bytes_max: Option<u64>,
    /// How often a materialized view commits an epoch (ms).
    #[arg(long, env = "STREAMHOUSE_EPOCH_INTERVAL_MS")]
    pub epoch_interval_ms: Option<u64>,
    /// How often the state store's WAL is synced to disk (ms).
    #[arg(long, env = "STREAMHOUSE_CHECKPOINT_INTERVAL_MS")]
    pub checkpoint_interval_ms: Option<u64>,
    /// A source partition with no new rows for this long stops holding back the watermark (ms).
    #[arg(long, env = "STREAMHOUSE_WATERMARK_IDLE_TIMEOUT_MS")]
    pub watermark_idle_timeout_ms: Option<u64>,
    /// Memory each materialized view holds for its state, its epoch's writes and output; an
    /// epoch reaching it ends early (bytes).
    #[arg(long, env = "STREAMHOUSE_STATE_CACHE_BYTES_MAX")]
    pub state_cache_bytes_max: Option<u64>,
    /// RocksDB's memory for view state and results, shared by every view: its block cache,
    /// with the memtables charged to it (bytes).
    #[arg(long, env = "STREAMHOUSE_STATE_BLOCK_CACHE_BYTES")]
    pub state_block_cache_bytes: Option<u64>,
    /// Memory for complete reads of views, kept until each view's next commit and shared by
    /// every view; 0 turns the cache off (bytes).
    #[arg(long, env = "STREAMHOUSE_VIEW_READ_CACHE_BYTES")]
    pub view_read_cache_bytes: Option<u64>,
    /// Deepest nesting a statement may have (operators in a chain, parentheses, query blocks);
    /// deeper ones are refused with 54001.
    #[arg(long, env = "STREAMHOUSE_STATEMENT_DEPTH_MAX")]
    pub statement_depth_max: Option<u64>,
    /// Every session's statement_timeout until it sets its own (ms; 0: none).
    #[arg(long, env = "STREAMHOUSE_STATEMENT_TIMEOUT_MS")]
    pub statement_timeout_ms: Option<u64>,
    /// Memory one session's running statement may reserve (sorts, aggregates, joins); past it
    /// they spill or fail with 53200 (bytes).
    #[arg(long, env = "STREAMHOUSE_QUERY_MEMORY_BYTES_MAX")]
    pub query_memory_bytes_max: Option<u64>,
    /// Memory all sessions' statements together may reserve (bytes).
    #[arg(long, env = "STREAMHOUSE_SERVER_MEMORY_BYTES_MAX")]
    pub server_memory_bytes_max: Option<u64>,
    /// Most iterations of a recursive CTE; one more fails the statement with 54000.
    #[arg(long, env = "STREAMHOUSE_RECURSIVE_ITERATIONS_MAX")]
    pub recursive_iterations_max: Option<u64>,
    /// Stack of each server thread, where statements are planned and run (bytes).
    #[arg(long, env = "STREAMHOUSE_THREAD_STACK_BYTES")]
    pub thread_stack_bytes: Option<u64>,
    /// How clients prove who they are: loopback-trust (connections from loopback are trusted,
    /// others use SCRAM-SHA-256), scram (SCRAM everywhere) or password (cleartext password).
    #[arg(long, env = "STREAMHOUSE_AUTH")]
    pub auth: Option<String>,
    /// Password of the superuser "streamhouse": its password on the first start, and a new one
    /// on a later start. Without it the first start writes a generated one to
    /// <data dir>/superuser-password.
    #[arg(long, env = "STREAMHOUSE_SUPERUSER_PASSWORD", hide_env_values = true)]
    pub superuser_password: Option<String>,
    /// Server certificate (PEM, the chain from the server's certificate up): TLS on the
    /// Postgres, Flight and HTTP listeners.
    #[arg(long, env = "STREAMHOUSE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "STREAMHOUSE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Certificate authority (PEM) whose client certificates log in as the role their common
    /// name names, without a password.
    #[arg(long, env = "STREAMHOUSE_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Refuse Postgres connections from other hosts that do not use TLS.
    #[arg(long, env = "STREAMHOUSE_TLS_REQUIRED")]
    pub tls_required: bool,
    /// Log filter, e.g. info or streamhouse_storage=debug.
    #[arg(long, env = "STREAMHOUSE_LOG")]
    pub log: Option<String>,
}

/// The TOML file: the same settings, all optional.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    object_store: Option<String>,
    pg_listen: Option<String>,
    http_listen: Option<String>,
    flight_listen: Option<String>,
    flight_message_bytes_max: Option<u64>,
    flight_streams_per_connection_max: Option<u64>,
    flight_receive_window_bytes: Option<u64>,
    flight_token_lifetime_ms: Option<u64>,
    segment_bytes_max: Option<u64>,
    segment_age_max_ms: Option<u64>,
    segment_cache_bytes_max: Option<u64>,
    wal_file_bytes_max: Option<u64>,
    retention_check_interval_ms: Option<u64>,
    compaction_interval_ms: Option<u64>,
    compaction_segments_min: Option<u64>,
    tombstone_retention_ms: Option<u64>,
    partition_tail_bytes_max: Option<u64>,
    append_wait_ms_max: Option<u64>,
    disk_reserve_bytes: Option<u64>,
    message_bytes_max: Option<usize>,
    pg_connections_max: Option<u64>,
    pg_startup_timeout_ms: Option<u64>,
    statement_bytes_max: Option<u64>,
    copy_bytes_max: Option<u64>,
    epoch_interval_ms: Option<u64>,
    checkpoint_interval_ms: Option<u64>,
    watermark_idle_timeout_ms: Option<u64>,
    state_cache_bytes_max: Option<u64>,
    state_block_cache_bytes: Option<u64>,
    view_read_cache_bytes: Option<u64>,
    statement_depth_max: Option<u64>,
    statement_timeout_ms: Option<u64>,
    query_memory_bytes_max: Option<u64>,
    server_memory_bytes_max: Option<u64>,
    recursive_iterations_max: Option<u64>,
    thread_stack_bytes: Option<u64>,
    log: Option<String>,
    auth: Option<String>,
    superuser_password: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    tls_required: Option<bool>,
}

/// Everything the server needs, resolved.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub storage: StorageConfig,
    pub engine: EngineConfig,
    pub pg_listen: String,
    pub http_listen: String,
    pub flight_listen: String,
    pub flight: streamhouse_flight::FlightConfig,
    /// Limits of the Postgres front end.
    pub pg: streamhouse_pgwire::PgServerConfig,
    /// The certificate of every listener, if TLS is on.
    pub tls: Option<std::sync::Arc<streamhouse_engine::auth::tls::Tls>>,
    /// Stack of each runtime thread (workers and the blocking pool).
    pub thread_stack_bytes: usize,
    pub log: String,
}

impl ServerConfig {
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let file: FileConfig = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let data_dir = args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./streamhouse-data"));
        let mut storage = StorageConfig::new(data_dir);
        storage.object_store_url = args.object_store.or(file.object_store);
        let positive = |name: &str, value: Option<u64>, default: u64| -> anyhow::Result<u64> {
            match value {
                Some(0) => anyhow::bail!("{name} must be greater than 0"),
                Some(v) => Ok(v),
                None => Ok(default),
            }
        };
        storage.segment_bytes_max = positive("segment_bytes_max", args.segment_bytes_max.or(file.segment_bytes_max), storage.segment_bytes_max)?;
        storage.segment_age_max_ms = positive("segment_age_max_ms", args.segment_age_max_ms.or(file.segment_age_max_ms), storage.segment_age_max_ms)?;
        storage.segment_cache_bytes_max = positive(
            "segment_cache_bytes_max",
            args.segment_cache_bytes_max.or(file.segment_cache_bytes_max),
            storage.segment_cache_bytes_max,
        )?;
        storage.wal_file_bytes_max = positive("wal_file_bytes_max", args.wal_file_bytes_max.or(file.wal_file_bytes_max), storage.wal_file_bytes_max)?;
        storage.retention_check_interval_ms = positive(
            "retention_check_interval_ms",
            args.retention_check_interval_ms.or(file.retention_check_interval_ms),
            storage.retention_check_interval_ms,
        )?;
        storage.compaction_interval_ms = positive(
            "compaction_interval_ms",
            args.compaction_interval_ms.or(file.compaction_interval_ms),
            storage.compaction_interval_ms,
        )?;
        storage.compaction_segments_min = positive(
            "compaction_segments_min",
            args.compaction_segments_min.or(file.compaction_segments_min),
            storage.compaction_segments_min,
        )?;
        // Zero is allowed: tombstones go at the first compaction no reader objects to.
        storage.tombstone_retention_ms =
            args.tombstone_retention_ms.or(file.tombstone_retention_ms).unwrap_or(storage.tombstone_retention_ms);
        storage.partition_tail_bytes_max = positive(
            "partition_tail_bytes_max",
            args.partition_tail_bytes_max.or(file.partition_tail_bytes_max),
            storage.partition_tail_bytes_max,
        )?;
        storage.append_wait_ms_max =
            positive("append_wait_ms_max", args.append_wait_ms_max.or(file.append_wait_ms_max), storage.append_wait_ms_max)?;
        // Zero is allowed: no reserve.
        storage.disk_reserve_bytes = args.disk_reserve_bytes.or(file.disk_reserve_bytes).unwrap_or(storage.disk_reserve_bytes);
        let mut engine = EngineConfig::default();
        engine.statement_bytes_max = positive("statement_bytes_max", args.statement_bytes_max.or(file.statement_bytes_max), engine.statement_bytes_max)?;
        engine.copy_bytes_max = positive("copy_bytes_max", args.copy_bytes_max.or(file.copy_bytes_max), engine.copy_bytes_max)?;
        engine.epoch_interval = Duration::from_millis(positive(
            "epoch_interval_ms",
            args.epoch_interval_ms.or(file.epoch_interval_ms),
            engine.epoch_interval.as_millis() as u64,
        )?);
        engine.checkpoint_interval = Duration::from_millis(positive(
            "checkpoint_interval_ms",
            args.checkpoint_interval_ms.or(file.checkpoint_interval_ms),
            engine.checkpoint_interval.as_millis() as u64,
        )?);
        engine.idle_timeout = Duration::from_millis(positive(
            "watermark_idle_timeout_ms",
            args.watermark_idle_timeout_ms.or(file.watermark_idle_timeout_ms),
            engine.idle_timeout.as_millis() as u64,
        )?);
        engine.state_cache_bytes_max = positive(
            "state_cache_bytes_max",
            args.state_cache_bytes_max.or(file.state_cache_bytes_max),
            engine.state_cache_bytes_max,
        )?;
        engine.state_block_cache_bytes = positive(
            "state_block_cache_bytes",
            args.state_block_cache_bytes.or(file.state_block_cache_bytes),
            engine.state_block_cache_bytes,
        )?;
        engine.statement_depth_max = positive(
            "statement_depth_max",
            args.statement_depth_max.or(file.statement_depth_max),
            engine.statement_depth_max as u64,
        )? as usize;
        let thread_stack_bytes = positive(
            "thread_stack_bytes",
            args.thread_stack_bytes.or(file.thread_stack_bytes),
            streamhouse_engine::THREAD_STACK_BYTES_DEFAULT as u64,
        )?;
        anyhow::ensure!(thread_stack_bytes >= 1 << 20, "thread_stack_bytes must be at least 1048576");
        let thread_stack_bytes = usize::try_from(thread_stack_bytes).context("thread_stack_bytes is too large")?;
        engine.query_memory_bytes_max = positive(
            "query_memory_bytes_max",
            args.query_memory_bytes_max.or(file.query_memory_bytes_max),
            engine.query_memory_bytes_max,
        )?;
        engine.server_memory_bytes_max = positive(
            "server_memory_bytes_max",
            args.server_memory_bytes_max.or(file.server_memory_bytes_max),
            engine.server_memory_bytes_max,
        )?;
        engine.recursive_iterations_max = positive(
            "recursive_iterations_max",
            args.recursive_iterations_max.or(file.recursive_iterations_max),
            engine.recursive_iterations_max,
        )?;
        if let Some(method) = args.auth.or(file.auth) {
            engine.auth = method.parse().map_err(|e: String| anyhow::anyhow!(e))?;
        }
        engine.superuser_password = args.superuser_password.or(file.superuser_password).map(streamhouse_engine::auth::Secret);
        if engine.superuser_password.as_ref().is_some_and(|p| p.0.is_empty()) {
            anyhow::bail!("superuser_password must not be empty");
        }
        let tls = resolve_tls(&args.tls_cert, &args.tls_key, &args.tls_client_ca, file.tls_cert, file.tls_key, file.tls_client_ca)?;
        engine.tls_required = args.tls_required || file.tls_required.unwrap_or(false);
        if engine.tls_required && tls.is_none() {
            anyhow::bail!("tls_required needs a certificate: give --tls-cert and --tls-key");
        }
        // 0 is allowed: no timeout.
        engine.statement_timeout_ms = args.statement_timeout_ms.or(file.statement_timeout_ms).unwrap_or(engine.statement_timeout_ms);
        // 0 is allowed: no cache.
        engine.view_read_cache_bytes = args.view_read_cache_bytes.or(file.view_read_cache_bytes).unwrap_or(engine.view_read_cache_bytes);
        let message_bytes_max = positive(
            "message_bytes_max",
            args.message_bytes_max.or(file.message_bytes_max).map(|v| v as u64),
            64 * 1024 * 1024,
        )? as usize;
        let mut pg = streamhouse_pgwire::PgServerConfig { message_bytes_max, tls: tls.clone(), ..Default::default() };
        pg.connections_max = positive("pg_connections_max", args.pg_connections_max.or(file.pg_connections_max), pg.connections_max as u64)? as usize;
        pg.startup_timeout = Duration::from_millis(positive(
            "pg_startup_timeout_ms",
            args.pg_startup_timeout_ms.or(file.pg_startup_timeout_ms),
            pg.startup_timeout.as_millis() as u64,
        )?);
        let mut flight = streamhouse_flight::FlightConfig { tls: tls.clone(), ..Default::default() };
        flight.message_bytes_max = positive(
            "flight_message_bytes_max",
            args.flight_message_bytes_max.or(file.flight_message_bytes_max),
            flight.message_bytes_max as u64,
        )? as usize;
        flight.streams_per_connection_max = u32::try_from(positive(
            "flight_streams_per_connection_max",
            args.flight_streams_per_connection_max.or(file.flight_streams_per_connection_max),
            u64::from(flight.streams_per_connection_max),
        )?)
        .context("flight_streams_per_connection_max is too large")?;
        // HTTP/2 windows are at most 2^31 - 1 bytes.
        flight.receive_window_bytes = u32::try_from(positive(
            "flight_receive_window_bytes",
            args.flight_receive_window_bytes.or(file.flight_receive_window_bytes),
            u64::from(flight.receive_window_bytes),
        )?)
        .ok()
        .filter(|&bytes| bytes <= (1 << 30))
        .context("flight_receive_window_bytes must be at most 1073741824")?;
        flight.token_lifetime = Duration::from_millis(positive(
            "flight_token_lifetime_ms",
            args.flight_token_lifetime_ms.or(file.flight_token_lifetime_ms),
            flight.token_lifetime.as_millis() as u64,
        )?);
        Ok(Self {
            storage,
            flight,
            flight_listen: args.flight_listen.or(file.flight_listen).unwrap_or_else(|| "127.0.0.1:8815".into()),
            engine,
            pg_listen: args.pg_listen.or(file.pg_listen).unwrap_or_else(|| "127.0.0.1:5433".into()),
            http_listen: args.http_listen.or(file.http_listen).unwrap_or_else(|| "127.0.0.1:8080".into()),
            pg,
            tls,
            thread_stack_bytes,
            log: args.log.or(file.log).unwrap_or_else(|| "info".into()),
        })
    }
}

/// Loads the TLS files from the flags, or else from the file: a certificate and its key
/// together, a client authority only beside them.
fn resolve_tls(
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    client_ca: &Option<PathBuf>,
    file_cert: Option<PathBuf>,
    file_key: Option<PathBuf>,
    file_client_ca: Option<PathBuf>,
) -> anyhow::Result<Option<std::sync::Arc<streamhouse_engine::auth::tls::Tls>>> {
    use streamhouse_engine::auth::tls::{Tls, TlsFiles};
    let client_ca = client_ca.clone().or(file_client_ca);
    let (certificate, key) = match (cert.clone().or(file_cert), key.clone().or(file_key)) {
        (Some(certificate), Some(key)) => (certificate, key),
        (None, None) if client_ca.is_none() => return Ok(None),
        (None, None) => anyhow::bail!("tls_client_ca needs a server certificate: give tls_cert and tls_key too"),
        (Some(_), None) => anyhow::bail!("tls_cert needs tls_key"),
        (None, Some(_)) => anyhow::bail!("tls_key needs tls_cert"),
    };
    let tls = Tls::load(&TlsFiles { certificate, key, client_ca }).context("cannot use the TLS files")?;
    Ok(Some(std::sync::Arc::new(tls)))
}
