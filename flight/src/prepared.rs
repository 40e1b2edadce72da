//! Prepared statements of Flight SQL clients, by handle: the engine's prepared statement and the
//! parameter rows last bound to it. Held across requests (a client prepares, binds, executes and
//! closes in separate calls), bounded in number. A statement belongs to the role that prepared
//! it: to any other its handle names nothing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use streamhouse_engine::datafusion::common::ScalarValue;
use streamhouse_engine::PreparedStatement;
use tonic::Status;

/// One prepared statement.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub statement: PreparedStatement,
    /// Each bound row of parameter values; one empty row for a statement without parameters.
    pub parameter_rows: Vec<Vec<ScalarValue>>,
    /// The role that prepared it.
    role: String,
}

#[derive(Debug)]
pub struct PreparedStatements {
    next_id: AtomicU64,
    /// Ids ascend, so the first entry is the oldest.
    statements: Mutex<BTreeMap<u64, Prepared>>,
    count_max: usize,
}

impl PreparedStatements {
    pub fn new(count_max: usize) -> Self {
        Self { next_id: AtomicU64::new(1), statements: Mutex::new(BTreeMap::new()), count_max: count_max.max(1) }
    }

    fn statements(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Prepared>> {
        self.statements.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Holds a statement; past the bound the oldest one is closed.
    pub fn insert(&self, statement: PreparedStatement, role: &str) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let parameter_rows = if statement.param_types.is_empty() { vec![Vec::new()] } else { Vec::new() };
        let mut statements = self.statements();
        statements.insert(id, Prepared { statement, parameter_rows, role: role.to_string() });
        while statements.len() > self.count_max {
            statements.pop_first();
        }
        id
    }

    pub fn get(&self, id: u64, role: &str) -> Result<Prepared, Status> {
        self.statements().get(&id).filter(|p| p.role == role).cloned().ok_or_else(|| unknown(id))
    }

    pub fn bind(&self, id: u64, role: &str, parameter_rows: Vec<Vec<ScalarValue>>) -> Result<(), Status> {
        let mut statements = self.statements();
        let prepared = statements.get_mut(&id).filter(|p| p.role == role).ok_or_else(|| unknown(id))?;
        prepared.parameter_rows = parameter_rows;
        Ok(())
    }

    pub fn close(&self, id: u64, role: &str) -> Result<(), Status> {
        let mut statements = self.statements();
        statements.get(&id).filter(|p| p.role == role).ok_or_else(|| unknown(id))?;
        statements.remove(&id);
        Ok(())
    }

}

fn unknown(id: u64) -> Status {
    Status::not_found(format!("prepared statement {id} does not exist (closed, or the server restarted) (SQLSTATE 26000)"))
}
