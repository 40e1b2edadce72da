//! Arithmetic as PostgreSQL does it. DataFusion adds, subtracts and multiplies integers with
//! wrapping kernels (`9223372036854775807 + 1` is a negative number) and types every integer
//! literal as `int8`; PostgreSQL raises `22003 … out of range` and types a literal that fits as
//! `int4` (so `2147483647 + 1` overflows, and `int4_column + 1` stays `int4`).
//!
//! [`PostgresArithmetic`] is an expression planner consulted by DataFusion's SQL planner for
//! every binary operator: an integer literal that fits `int4` becomes `int4` beside another
//! integer; `+`, `-` and `*` between integers become [`CheckedArithmetic`], which uses Arrow's
//! checked kernels; `date ± interval` is computed on a timestamp, as PostgreSQL's result is one.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::compute::kernels::numeric;
use arrow::datatypes::{DataType, TimeUnit};
use arrow::error::ArrowError;
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    binary_expr, cast, ColumnarValue, Expr, ExprSchemable, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;

use crate::EngineError;

/// The expression planner; see the module documentation.
#[derive(Debug, Default)]
pub struct PostgresArithmetic;

/// An operation [`CheckedArithmetic`] performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Checked {
    Add,
    Subtract,
    Multiply,
}

impl Checked {
    fn of(op: &BinaryOperator) -> Option<Self> {
        match op {
            BinaryOperator::Plus => Some(Self::Add),
            BinaryOperator::Minus => Some(Self::Subtract),
            BinaryOperator::Multiply => Some(Self::Multiply),
            _ => None,
        }
    }
}

fn is_integer(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Int16 | DataType::Int32 | DataType::Int64)
}

/// An `int8` literal whose value fits `int4`, as `int4` (PostgreSQL's type for it).
fn narrow_literal(expr: Expr) -> Expr {
    match expr {
        Expr::Literal(ScalarValue::Int64(Some(value)), metadata) if i32::try_from(value).is_ok() => {
            Expr::Literal(ScalarValue::Int32(Some(value as i32)), metadata)
        }
        other => other,
    }
}

/// The type of two integer operands after PostgreSQL's promotion: the wider one.
fn promoted(left: &DataType, right: &DataType) -> DataType {
    let width = |t: &DataType| match t {
        DataType::Int16 => 2,
        DataType::Int32 => 4,
        _ => 8,
    };
    if width(left) >= width(right) {
        left.clone()
    } else {
        right.clone()
    }
}

impl ExprPlanner for PostgresArithmetic {
    fn plan_binary_op(&self, expr: RawBinaryExpr, schema: &DFSchema) -> DfResult<PlannerResult<RawBinaryExpr>> {
        let arithmetic = matches!(
            expr.op,
            BinaryOperator::Plus | BinaryOperator::Minus | BinaryOperator::Multiply | BinaryOperator::Divide | BinaryOperator::Modulo
        );
        if !arithmetic {
            return Ok(PlannerResult::Original(expr));
        }
        let (Ok(left_type), Ok(right_type)) = (expr.left.get_type(schema), expr.right.get_type(schema)) else {
            return Ok(PlannerResult::Original(expr)); // parameters and the like: DataFusion decides
        };
        if left_type == DataType::Date32 && matches!(right_type, DataType::Interval(_)) {
            let operator = match expr.op {
                BinaryOperator::Plus => Operator::Plus,
                BinaryOperator::Minus => Operator::Minus,
                _ => return Ok(PlannerResult::Original(expr)),
            };
            let timestamp = cast(expr.left, DataType::Timestamp(TimeUnit::Microsecond, None));
            return Ok(PlannerResult::Planned(binary_expr(timestamp, operator, expr.right)));
        }
        if !is_integer(&left_type) || !is_integer(&right_type) {
            return Ok(PlannerResult::Original(expr));
        }
        let left = narrow_literal(expr.left);
        let right = narrow_literal(expr.right);
        let result_type = promoted(&left.get_type(schema)?, &right.get_type(schema)?);
        let widen = |e: Expr| -> DfResult<Expr> {
            Ok(if e.get_type(schema)? == result_type { e } else { cast(e, result_type.clone()) })
        };
        let (left, right) = (widen(left)?, widen(right)?);
        match Checked::of(&expr.op) {
            Some(operation) => {
                let function = Arc::new(ScalarUDF::from(CheckedArithmetic::new(operation)));
                Ok(PlannerResult::Planned(Expr::ScalarFunction(ScalarFunction::new_udf(function, vec![left, right]))))
            }
            // Integer division and modulo are already checked (overflow and division by zero).
            None => Ok(PlannerResult::Original(RawBinaryExpr { op: expr.op, left, right })),
        }
    }
}

/// `a + b`, `a - b` or `a * b` over two integers of one type, failing with `22003` on overflow.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CheckedArithmetic {
    operation: Checked,
    signature: Signature,
}

impl CheckedArithmetic {
    pub fn new(operation: Checked) -> Self {
        let types = vec![DataType::Int16, DataType::Int32, DataType::Int64];
        let signature = Signature::one_of(
            types.into_iter().map(|t| datafusion::logical_expr::TypeSignature::Exact(vec![t.clone(), t])).collect(),
            Volatility::Immutable,
        );
        Self { operation, signature }
    }
}

fn out_of_range(data_type: &DataType) -> DataFusionError {
    let name = match data_type {
        DataType::Int16 => "smallint",
        DataType::Int32 => "integer",
        _ => "bigint",
    };
    DataFusionError::External(Box::new(EngineError::NumericOutOfRange(format!("{name} out of range"))))
}

impl ScalarUDFImpl for CheckedArithmetic {
    fn name(&self) -> &str {
        match self.operation {
            Checked::Add => "checked_add",
            Checked::Subtract => "checked_subtract",
            Checked::Multiply => "checked_multiply",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Int64))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let data_type = args.return_field.data_type().clone();
        let all_scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [left, right] = arrays.as_slice() else {
            return Err(DataFusionError::Internal(format!("{} takes two arguments", self.name())));
        };
        let result: Result<ArrayRef, ArrowError> = match self.operation {
            Checked::Add => numeric::add(left, right),
            Checked::Subtract => numeric::sub(left, right),
            Checked::Multiply => numeric::mul(left, right),
        };
        let result = result.map_err(|error| match error {
            ArrowError::ArithmeticOverflow(_) => out_of_range(&data_type),
            other => DataFusionError::ArrowError(Box::new(other), None),
        })?;
        if all_scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?));
        }
        Ok(ColumnarValue::Array(result))
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int16Array, Int64Array};
    use arrow::datatypes::Field;
    use datafusion::common::config::ConfigOptions;

    use super::*;

    fn run(operation: Checked, left: ArrayRef, right: ArrayRef) -> DfResult<ArrayRef> {
        let data_type = left.data_type().clone();
        let function = CheckedArithmetic::new(operation);
        let args = ScalarFunctionArgs {
            arg_fields: vec![Arc::new(Field::new("a", data_type.clone(), true)), Arc::new(Field::new("b", data_type.clone(), true))],
            args: vec![ColumnarValue::Array(left), ColumnarValue::Array(right)],
            number_rows: 2,
            return_field: Arc::new(Field::new("r", data_type, true)),
            config_options: Arc::new(ConfigOptions::default()),
        };
        match function.invoke_with_args(args)? {
            ColumnarValue::Array(array) => Ok(array),
            ColumnarValue::Scalar(scalar) => scalar.to_array(),
        }
    }

    #[test]
    fn overflow_is_an_error_named_for_the_type() {
        let sum = run(Checked::Add, Arc::new(Int64Array::from(vec![Some(1), None])), Arc::new(Int64Array::from(vec![2, 3]))).unwrap();
        assert_eq!(sum.as_ref(), &Int64Array::from(vec![Some(3), None]) as &dyn arrow::array::Array);
        let error = run(Checked::Add, Arc::new(Int64Array::from(vec![i64::MAX, 0])), Arc::new(Int64Array::from(vec![1, 0]))).unwrap_err();
        assert_eq!(crate::EngineError::from(error).sqlstate(), "22003");
        let error = run(Checked::Multiply, Arc::new(Int16Array::from(vec![300, 1])), Arc::new(Int16Array::from(vec![300, 1]))).unwrap_err();
        assert!(error.to_string().contains("smallint out of range"), "{error}");
    }
}
