//! `scalar_subquery_value(x)`: the one value of a scalar subquery, as PostgreSQL gives it. A subquery used
//! as an expression is NULL when it has no row, its value with one, and an error (`21000`) with
//! more. DataFusion plans a correlated scalar subquery only when it aggregates (it joins the
//! aggregate's groups back to the outer rows), so [`crate::sql::postgres_meaning`] wraps the
//! select item of one that does not in this aggregate: the same answer for zero and one row, and
//! PostgreSQL's error for more, where `max(x)` or `first_value(x)` would answer wrongly.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, FieldRef, UInt64Type};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

use crate::EngineError;

/// The aggregate's name in queries.
pub const SINGLE_VALUE: &str = "scalar_subquery_value";

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SingleValue {
    signature: Signature,
}

impl Default for SingleValue {
    fn default() -> Self {
        Self { signature: Signature::any(1, Volatility::Immutable) }
    }
}

fn too_many_rows() -> DataFusionError {
    DataFusionError::External(Box::new(EngineError::CardinalityViolation(
        "more than one row returned by a subquery used as an expression".into(),
    )))
}

impl AggregateUDFImpl for SingleValue {
    fn name(&self) -> &str {
        SINGLE_VALUE
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Null))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let empty = ScalarValue::try_from(args.return_field.data_type())?;
        Ok(Box::new(SingleValueAccumulator { value: empty, rows: 0 }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(format!("{}[value]", args.name), args.return_field.data_type().clone(), true)),
            Arc::new(Field::new(format!("{}[rows]", args.name), DataType::UInt64, false)),
        ])
    }
}

/// The value seen and how many rows (0, 1; a second is an error at once).
#[derive(Debug)]
struct SingleValueAccumulator {
    value: ScalarValue,
    rows: u64,
}

impl SingleValueAccumulator {
    fn add(&mut self, values: &ArrayRef, row: usize, rows: u64) -> DfResult<()> {
        if rows == 0 {
            return Ok(());
        }
        if self.rows + rows > 1 {
            return Err(too_many_rows());
        }
        self.value = ScalarValue::try_from_array(values, row)?;
        self.rows = 1;
        Ok(())
    }
}

impl Accumulator for SingleValueAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let values = &values[0];
        if self.rows + values.len() as u64 > 1 {
            return Err(too_many_rows());
        }
        if !values.is_empty() {
            self.add(values, 0, 1)?;
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let counts = states[1].as_primitive::<UInt64Type>();
        for row in 0..counts.len() {
            self.add(&states[0], row, counts.value(row))?;
        }
        Ok(())
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![self.value.clone(), ScalarValue::UInt64(Some(self.rows))])
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(self.value.clone())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.value.size() - std::mem::size_of_val(&self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, UInt64Array};

    fn accumulator() -> SingleValueAccumulator {
        SingleValueAccumulator { value: ScalarValue::Int64(None), rows: 0 }
    }

    #[test]
    fn no_row_is_null_one_row_is_its_value_and_two_are_an_error() {
        let mut none = accumulator();
        none.update_batch(&[Arc::new(Int64Array::from(Vec::<i64>::new()))]).unwrap();
        assert_eq!(none.evaluate().unwrap(), ScalarValue::Int64(None));

        let mut one = accumulator();
        one.update_batch(&[Arc::new(Int64Array::from(vec![7]))]).unwrap();
        one.update_batch(&[Arc::new(Int64Array::from(Vec::<i64>::new()))]).unwrap();
        assert_eq!(one.evaluate().unwrap(), ScalarValue::Int64(Some(7)));

        let mut two = accumulator();
        two.update_batch(&[Arc::new(Int64Array::from(vec![7]))]).unwrap();
        let error = two.update_batch(&[Arc::new(Int64Array::from(vec![8]))]).unwrap_err();
        assert!(error.to_string().contains("more than one row"), "{error}");
        assert!(accumulator().update_batch(&[Arc::new(Int64Array::from(vec![1, 2]))]).is_err());
        // A NULL is a row too.
        assert!(accumulator().update_batch(&[Arc::new(Int64Array::from(vec![None, None]))]).is_err());
    }

    #[test]
    fn partial_states_merge_by_their_row_counts() {
        let mut merged = accumulator();
        let values: ArrayRef = Arc::new(Int64Array::from(vec![None, Some(5), None]));
        let counts: ArrayRef = Arc::new(UInt64Array::from(vec![0, 1, 0]));
        merged.merge_batch(&[values.clone(), counts]).unwrap();
        assert_eq!(merged.evaluate().unwrap(), ScalarValue::Int64(Some(5)));
        let twice: ArrayRef = Arc::new(UInt64Array::from(vec![0, 1, 1]));
        assert!(accumulator().merge_batch(&[values, twice]).is_err());
    }
}
