//! An iteration limit for recursive CTEs (`WITH RECURSIVE`).
//!
//! DataFusion runs a recursive CTE as a `RecursiveQueryExec`: its static term once, then its
//! recursive term again and again, as long as the last iteration produced rows. A recursion
//! with no end condition that produces one row per iteration never ends and holds no memory to
//! speak of, so neither memory limits nor anything else stops it but `statement_timeout`.
//!
//! The physical optimizer rule [`RecursionLimit`] puts a marker over each of the two terms: the
//! static term's resets a counter when the statement starts, the recursive term's counts each
//! time it is started, and fails the statement with `54000` once more than
//! `recursive_iterations_max` iterations have produced rows (the run after the last of them,
//! which would find none, is allowed). PostgreSQL has no such limit (only `statement_timeout`); a
//! recursion that ends keeps PostgreSQL's answer.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::recursive_query::RecursiveQueryExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

use crate::EngineError;

/// Puts [`IterationCount`] markers over the terms of every recursive CTE.
#[derive(Debug)]
pub(crate) struct RecursionLimit {
    pub iterations_max: u64,
}

impl PhysicalOptimizerRule for RecursionLimit {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|plan| {
            if !plan.is::<RecursiveQueryExec>() {
                return Ok(Transformed::no(plan));
            }
            let children: Vec<_> = plan.children().into_iter().cloned().collect();
            let [static_term, recursive_term] = <[_; 2]>::try_from(children)
                .map_err(|_| DataFusionError::Internal("a recursive query has two terms".into()))?;
            if recursive_term.is::<IterationCount>() {
                return Ok(Transformed::no(plan));
            }
            let iterations = Arc::new(AtomicU64::new(0));
            let start = IterationCount::new(static_term, Role::Start, iterations.clone(), self.iterations_max);
            let iterate = IterationCount::new(recursive_term, Role::Iteration, iterations, self.iterations_max);
            let children: Vec<Arc<dyn ExecutionPlan>> = vec![Arc::new(start), Arc::new(iterate)];
            Ok(Transformed::yes(plan.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))?))
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "RecursionLimit"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    /// Over the static term: the statement starts, no iteration has run.
    Start,
    /// Over the recursive term: one more iteration.
    Iteration,
}

/// Passes its input through; counts the executions of a recursive term (see the module doc).
#[derive(Debug)]
pub(crate) struct IterationCount {
    input: Arc<dyn ExecutionPlan>,
    role: Role,
    /// Shared by the two markers of one recursive query.
    iterations: Arc<AtomicU64>,
    iterations_max: u64,
}

impl IterationCount {
    fn new(input: Arc<dyn ExecutionPlan>, role: Role, iterations: Arc<AtomicU64>, iterations_max: u64) -> Self {
        Self { input, role, iterations, iterations_max }
    }
}

impl DisplayAs for IterationCount {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match self.role {
            Role::Start => write!(f, "IterationCount: start"),
            Role::Iteration => write!(f, "IterationCount: at most {}", self.iterations_max),
        }
    }
}

impl ExecutionPlan for IterationCount {
    fn name(&self) -> &str {
        "IterationCount"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn datafusion::physical_expr::PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    #[allow(deprecated)]
    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = children.into_iter().next().ok_or_else(|| DataFusionError::Internal("IterationCount needs its input".into()))?;
        Ok(Arc::new(IterationCount::new(input, self.role, self.iterations.clone(), self.iterations_max)))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        match self.role {
            Role::Start => self.iterations.store(0, Ordering::Relaxed),
            Role::Iteration => {
                // Run k starts only if run k - 1 produced rows: run `iterations_max + 2`
                // means `iterations_max + 1` iterations produced rows.
                let runs = self.iterations.fetch_add(1, Ordering::Relaxed) + 1;
                if runs > self.iterations_max.saturating_add(1) {
                    return Err(DataFusionError::External(Box::new(EngineError::ProgramLimitExceeded(format!(
                        "recursive query still producing rows after {} iterations (recursive_iterations_max); \
                         does its recursive term have a condition that ends it?",
                        self.iterations_max
                    )))));
                }
            }
        }
        self.input.execute(partition, context)
    }
}
