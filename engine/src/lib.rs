//! The SQL engine of StreamHouse: the one door between front ends and the log.
//!
//! The engine owns SQL parsing (our DDL as extensions of sqlparser's Postgres dialect), the
//! DataFusion session and topic table providers, COPY encoding and decoding, and the Postgres
//! text formats of values. Front ends (Postgres wire, Flight, HTTP) hand it statements and
//! bytes and get back Arrow batches and command tags; they never touch storage or the catalog.

mod copy;
mod error;
pub mod provider;
mod session;
pub mod sql;
pub mod text;

use std::sync::Arc;

use streamhouse_catalog::SqliteCatalog;
use streamhouse_storage::Storage;

pub use copy::{CopyDecoder, CopyEncoder, CopyFormat, CopyOptions};
pub use error::{EngineError, Result};
pub use session::{version_string, CopyIn, PreparedStatement, QueryOutput, Session, SERVER_VERSION};
pub use sql::statement::split_statements;
pub use sql::types::PG_TYPE_METADATA;

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
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            database_name: "streamhouse".into(),
            statement_bytes_max: 256 * 1024 * 1024,
            copy_bytes_max: 1024 * 1024 * 1024,
        }
    }
}

/// The engine: storage plus what sessions share.
pub struct Engine {
    storage: Storage,
    config: EngineConfig,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("config", &self.config).finish()
    }
}

impl Engine {
    /// Opens the catalog (`catalog.db` in the data directory) and storage.
    pub async fn open(storage_config: StorageConfig, config: EngineConfig) -> Result<Arc<Self>> {
        std::fs::create_dir_all(&storage_config.data_dir).map_err(|source| {
            EngineError::Storage(streamhouse_storage::StorageError::DataDirectory {
                path: storage_config.data_dir.display().to_string(),
                source,
            })
        })?;
        let catalog = SqliteCatalog::open(&storage_config.data_dir.join("catalog.db"))
            .map_err(|e| EngineError::Storage(e.into()))?;
        let storage = Storage::open(storage_config, Arc::new(catalog)).await?;
        Ok(Arc::new(Self { storage, config }))
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// A new session for a client.
    pub fn new_session(self: &Arc<Self>, user: &str) -> Result<Session> {
        Session::new(self.clone(), user)
    }

    /// Prometheus text of the engine's and storage's metrics.
    pub fn render_metrics(&self, out: &mut String) {
        self.storage.metrics().render(out);
    }

    /// Stops background work after every acknowledged write is on disk.
    pub async fn shutdown(&self) {
        self.storage.shutdown().await;
    }
}
