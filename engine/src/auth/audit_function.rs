//! `streamhouse_verify_audit()`: the audit chain's check ([`super::audit::verify`]) as a table
//! function a superuser calls with SQL.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::audit::{verification_batch, verification_schema, verify, AUDIT_TOPIC};
use crate::{Engine, EngineError};

/// The function, bound to the role a session acts as.
#[derive(Debug)]
pub(crate) struct VerifyAuditFunction {
    pub engine: Arc<Engine>,
    pub role: String,
}

fn external(error: EngineError) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

impl TableFunctionImpl for VerifyAuditFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        if !args.exprs().is_empty() {
            return Err(external(EngineError::Sqlstate {
                code: "42883",
                message: "function streamhouse_verify_audit takes no arguments".into(),
            }));
        }
        Ok(Arc::new(VerifyAuditTable { engine: self.engine.clone(), role: self.role.clone() }))
    }
}

/// The one row of the check, made when the statement runs.
#[derive(Debug)]
struct VerifyAuditTable {
    engine: Arc<Engine>,
    role: String,
}

#[async_trait]
impl TableProvider for VerifyAuditTable {
    fn schema(&self) -> SchemaRef {
        verification_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(&self, state: &dyn Session, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let roles = self.engine.storage().catalog().list_roles().map_err(|e| external(EngineError::Storage(e.into())))?;
        if !roles.iter().any(|role| role.name == self.role && role.superuser) {
            return Err(external(EngineError::Sqlstate {
                code: "42501",
                message: format!("permission denied for function streamhouse_verify_audit: only superusers read {AUDIT_TOPIC}"),
            }));
        }
        let verification = verify(self.engine.storage()).await.map_err(external)?;
        let batch = verification_batch(&verification).map_err(external)?;
        MemTable::try_new(batch.schema(), vec![vec![batch]])?.scan(state, projection, filters, limit).await
    }
}
