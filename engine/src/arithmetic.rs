//! Arithmetic as PostgreSQL does it.
//!
//! - Overflow: DataFusion adds, subtracts and multiplies integers with wrapping kernels
//!   (`9223372036854775807 + 1` is a negative number); PostgreSQL raises `22003`. DataFusion's
//!   physical `BinaryExpr` can use checked kernels (`with_fail_on_overflow`), but its planner
//!   never asks for them, so [`checked`] rebuilds every integer `+`, `-`, `*` of an expression
//!   that way and [`CheckedArithmetic`] applies it to the expressions of projections and filters
//!   (where queries compute); the streaming planner applies [`checked`] to every expression it
//!   builds. The plan keeps DataFusion's own shape: casts or functions in its place would make
//!   deep expressions (a chain of 999 CTEs adding 1) exponential to type or deeper to recurse.
//!   Integer literals are `int4` already (see [`crate::sql::postgres_meaning`]), so `int4 +
//!   int4` stays `int4` and overflows at its range, as in PostgreSQL.
//! - Constants: DataFusion's optimizer folds `2147483647 + 1` with its own (wrapping) kernels
//!   before any physical rule could see it, so [`PostgresArithmetic`], an expression planner
//!   consulted by DataFusion's SQL planner for every binary operator, computes an operation of
//!   two integer constants itself, checked: `22003` at planning, as PostgreSQL's constant
//!   folding does, or the constant (which also keeps `1 + 1 + … + 1` one literal deep).
//! - `date ± interval` is a timestamp, as PostgreSQL's result is (the same planner).
//!
//! Not covered yet (they still wrap): arithmetic inside an aggregate's arguments or grouping
//! (`sum(a * b)`, `GROUP BY a + 1`), in join conditions and sort keys, and constants the
//! optimizer folds after inlining a subquery.

use std::sync::Arc;

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ExprSchema, Result as DfResult, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{binary_expr, cast, Expr, Operator};
use datafusion::physical_expr::expressions::BinaryExpr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::sqlparser::ast::BinaryOperator;

use crate::EngineError;

/// The expression planner for constants and `date ± interval`; see the module documentation.
#[derive(Debug, Default)]
pub struct PostgresArithmetic;

/// An operand's type when it can be told without walking down a chain of operators.
fn quick_type(expr: &Expr, schema: &DFSchema) -> Option<DataType> {
    match expr {
        Expr::Literal(value, _) => Some(value.data_type()),
        Expr::Cast(cast) => Some(cast.field.data_type().clone()),
        Expr::Column(column) => schema.field_from_column(column).ok().map(|f| f.data_type().clone()),
        _ => None,
    }
}

/// An integer constant: a literal, or a constant cast to an integer type whose range holds it
/// (how an `int4` literal arrives, see [`crate::sql::postgres_meaning`]), with its type.
fn integer_constant(expr: &Expr) -> Option<(i64, DataType)> {
    let value = |scalar: &ScalarValue| match scalar {
        ScalarValue::Int16(Some(v)) => Some(*v as i64),
        ScalarValue::Int32(Some(v)) => Some(*v as i64),
        ScalarValue::Int64(Some(v)) => Some(*v),
        _ => None,
    };
    match expr {
        Expr::Literal(scalar, _) => Some((value(scalar)?, scalar.data_type())),
        Expr::Cast(cast) => {
            let target = cast.field.data_type();
            let (v, _) = integer_constant(&cast.expr)?;
            let fits = match target {
                DataType::Int16 => i16::try_from(v).is_ok(),
                DataType::Int32 => i32::try_from(v).is_ok(),
                DataType::Int64 => true,
                _ => false,
            };
            fits.then(|| (v, target.clone()))
        }
        _ => None,
    }
}

/// `left op right` over two integer constants, in the wider type, checked.
fn fold(left: (i64, DataType), op: Operator, right: (i64, DataType)) -> DfResult<Expr> {
    let width = |t: &DataType| match t {
        DataType::Int16 => 2,
        DataType::Int32 => 4,
        _ => 8,
    };
    let data_type = if width(&left.1) >= width(&right.1) { left.1 } else { right.1 };
    let (a, b) = (left.0, right.0);
    let result = match op {
        Operator::Plus => a.checked_add(b),
        Operator::Minus => a.checked_sub(b),
        _ => a.checked_mul(b),
    };
    let (scalar, name) = match data_type {
        DataType::Int16 => (result.and_then(|r| i16::try_from(r).ok()).map(|r| ScalarValue::Int16(Some(r))), "smallint"),
        DataType::Int32 => (result.and_then(|r| i32::try_from(r).ok()).map(|r| ScalarValue::Int32(Some(r))), "integer"),
        _ => (result.map(|r| ScalarValue::Int64(Some(r))), "bigint"),
    };
    match scalar {
        Some(scalar) => Ok(Expr::Literal(scalar, None)),
        None => Err(DataFusionError::External(Box::new(EngineError::NumericOutOfRange(format!("{name} out of range"))))),
    }
}

impl ExprPlanner for PostgresArithmetic {
    fn plan_binary_op(&self, expr: RawBinaryExpr, schema: &DFSchema) -> DfResult<PlannerResult<RawBinaryExpr>> {
        let operator = match expr.op {
            BinaryOperator::Plus => Operator::Plus,
            BinaryOperator::Minus => Operator::Minus,
            BinaryOperator::Multiply => Operator::Multiply,
            _ => return Ok(PlannerResult::Original(expr)),
        };
        if let (Some(left), Some(right)) = (integer_constant(&expr.left), integer_constant(&expr.right)) {
            return Ok(PlannerResult::Planned(fold(left, operator, right)?));
        }
        if operator == Operator::Multiply {
            return Ok(PlannerResult::Original(expr));
        }
        let is_date = quick_type(&expr.left, schema) == Some(DataType::Date32);
        if is_date && matches!(quick_type(&expr.right, schema), Some(DataType::Interval(_))) {
            let timestamp = cast(expr.left, DataType::Timestamp(TimeUnit::Microsecond, None));
            return Ok(PlannerResult::Planned(binary_expr(timestamp, operator, expr.right)));
        }
        Ok(PlannerResult::Original(expr))
    }
}

fn is_integer(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64
    )
}

/// `expr` with every integer `+`, `-` and `*` failing on overflow instead of wrapping.
pub fn checked(expr: Arc<dyn PhysicalExpr>, schema: &arrow::datatypes::Schema) -> DfResult<Transformed<Arc<dyn PhysicalExpr>>> {
    expr.transform_up(|node| {
        let Some(binary) = node.downcast_ref::<BinaryExpr>() else { return Ok(Transformed::no(node)) };
        let arithmetic = matches!(binary.op(), Operator::Plus | Operator::Minus | Operator::Multiply);
        if !arithmetic || !is_integer(&binary.left().data_type(schema)?) {
            return Ok(Transformed::no(node));
        }
        let checked = BinaryExpr::new(binary.left().clone(), *binary.op(), binary.right().clone()).with_fail_on_overflow(true);
        Ok(Transformed::yes(Arc::new(checked) as Arc<dyn PhysicalExpr>))
    })
}

/// The physical optimizer rule; see the module documentation.
#[derive(Debug, Default)]
pub struct CheckedArithmetic;

impl PhysicalOptimizerRule for CheckedArithmetic {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if let Some(projection) = node.downcast_ref::<ProjectionExec>() {
                let schema = projection.input().schema();
                let mut changed = false;
                let mut exprs = Vec::with_capacity(projection.expr().len());
                for item in projection.expr() {
                    let rewritten = checked(item.expr.clone(), &schema)?;
                    changed |= rewritten.transformed;
                    exprs.push(ProjectionExpr { expr: rewritten.data, alias: item.alias.clone() });
                }
                if !changed {
                    return Ok(Transformed::no(node));
                }
                let rebuilt = ProjectionExec::try_new(exprs, projection.input().clone())?;
                return Ok(Transformed::yes(Arc::new(rebuilt) as Arc<dyn ExecutionPlan>));
            }
            if let Some(filter) = node.downcast_ref::<FilterExec>() {
                let rewritten = checked(filter.predicate().clone(), &filter.input().schema())?;
                if !rewritten.transformed {
                    return Ok(Transformed::no(node));
                }
                let rebuilt = FilterExecBuilder::from(filter).with_predicate(rewritten.data).build()?;
                return Ok(Transformed::yes(Arc::new(rebuilt) as Arc<dyn ExecutionPlan>));
            }
            Ok(Transformed::no(node))
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "CheckedArithmetic"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int32Array, RecordBatch};
    use arrow::datatypes::{Field, Schema};
    use datafusion::physical_expr::expressions::{col, lit};

    use super::*;

    #[test]
    fn constants_fold_checked() {
        let int4 = |v: i64| Expr::Cast(datafusion::logical_expr::Cast::new(Box::new(Expr::Literal(ScalarValue::Int64(Some(v)), None)), DataType::Int32));
        let plan = |left: Expr, op: BinaryOperator, right: Expr| match PostgresArithmetic
            .plan_binary_op(RawBinaryExpr { op, left, right }, &DFSchema::empty())
        {
            Ok(PlannerResult::Planned(expr)) => Ok(expr),
            Ok(PlannerResult::Original(_)) => panic!("not planned"),
            Err(error) => Err(crate::EngineError::from(error)),
        };
        assert_eq!(plan(int4(2), BinaryOperator::Plus, int4(3)).unwrap(), Expr::Literal(ScalarValue::Int32(Some(5)), None));
        assert_eq!(plan(int4(i32::MAX as i64), BinaryOperator::Plus, int4(1)).unwrap_err().sqlstate(), "22003");
        let big = Expr::Literal(ScalarValue::Int64(Some(i64::MAX)), None);
        assert_eq!(plan(big, BinaryOperator::Plus, int4(1)).unwrap_err().to_string(), "bigint out of range");
        assert_eq!(plan(int4(-2), BinaryOperator::Multiply, int4(3)).unwrap(), Expr::Literal(ScalarValue::Int32(Some(-6)), None));
    }

    #[test]
    fn integer_operations_fail_on_overflow_after_the_rewrite() {
        let schema = Schema::new(vec![Field::new("a", DataType::Int32, false)]);
        let batch = RecordBatch::try_new(Arc::new(schema.clone()), vec![Arc::new(Int32Array::from(vec![1, i32::MAX]))]).unwrap();
        let sum: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(col("a", &schema).unwrap(), Operator::Plus, lit(1i32)));
        // DataFusion's own: wraps.
        let wrapped = sum.evaluate(&batch).unwrap().into_array(2).unwrap();
        assert_eq!(wrapped.as_ref(), &Int32Array::from(vec![2, i32::MIN]) as &dyn arrow::array::Array);
        let rewritten = checked(sum, &schema).unwrap();
        assert!(rewritten.transformed);
        let error = rewritten.data.evaluate(&batch).unwrap_err();
        assert_eq!(crate::EngineError::from(error).sqlstate(), "22003");
    }
}
