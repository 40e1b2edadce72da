//! Parameter types of a prepared statement, as its ParameterDescription reports them.

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::LogicalPlan;

use crate::{EngineError, Result};

/// Parameter types of a plan in `$1, $2, …` order.
pub fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>> {
    let mut types = plan.get_parameter_types()?;
    // A parameter nothing else constrains takes the type it is cast to (`$1::BIGINT[]`), as in
    // Postgres.
    for (id, data_type) in cast_parameter_types(plan)? {
        if let Some(slot @ None) = types.get_mut(&id) {
            *slot = Some(data_type);
        }
    }
    let mut indexed: Vec<(usize, Option<DataType>)> = Vec::with_capacity(types.len());
    for (name, data_type) in types {
        let index: usize = name
            .trim_start_matches('$')
            .parse()
            .map_err(|_| EngineError::Syntax(format!("parameter {name} must be written $1, $2, …")))?;
        indexed.push((index, data_type));
    }
    indexed.sort_by_key(|(i, _)| *i);
    let count = indexed.last().map_or(0, |(i, _)| *i);
    let mut result = vec![None; count];
    for (index, data_type) in indexed {
        if index == 0 {
            return Err(EngineError::Syntax("there is no parameter $0".into()));
        }
        result[index - 1] = data_type;
    }
    Ok(result)
}

/// The type each parameter is directly cast to somewhere in `plan` (the first cast found).
fn cast_parameter_types(plan: &LogicalPlan) -> Result<Vec<(String, DataType)>> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{expr::Placeholder, Cast, Expr};
    let mut found = Vec::new();
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::Cast(Cast { expr, field }) = e {
                    if let Expr::Placeholder(Placeholder { id, field: None }) = expr.as_ref() {
                        found.push((id.clone(), field.data_type().clone()));
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok(found)
}
