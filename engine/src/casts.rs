//! Functions behind casts that PostgreSQL reads otherwise than DataFusion (see
//! [`crate::sql::postgres_meaning`], which puts them into queries):
//!
//! - [`round_for_integer`]: the rounding PostgreSQL does before a cast to an integer — numeric
//!   rounds half away from zero (`2.5::int` is 3), float to the nearest even (`2.5::float8::int`
//!   is 2). Other types pass unchanged (the cast itself then does what PostgreSQL does).
//! - [`bytea_input`]: `text::bytea` as PostgreSQL reads it: `\x` followed by hex digits, or the
//!   escape format (`\\` is a backslash, `\ooo` an octal byte, any other character itself).
//! - [`text_output`]: `value::text` in PostgreSQL's output format.
//! - [`NumericIntegral`]: `ceil`, `floor` and `trunc` of a numeric as whole numbers of scale 0, as
//!   PostgreSQL gives them (`ceil(1.2)` is `2`, not `2.0`).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Decimal128Array, Float32Array, Float64Array, StringBuilder};
use arrow::datatypes::{DataType, Float32Type, Float64Type};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

use crate::sql::postgres_meaning::{BYTEA_INPUT, ROUND_FOR_INTEGER, TEXT_OUTPUT};
use crate::text::input::parse_column;
use crate::text::output::write_text;
use crate::EngineError;

/// A function of one argument of any type, computed a whole array at a time.
#[derive(Debug)]
pub struct ArrayFunction {
    name: &'static str,
    /// The result's type; `None`: the argument's.
    output: Option<DataType>,
    compute: fn(&ArrayRef) -> DfResult<ArrayRef>,
    signature: Signature,
}

impl ArrayFunction {
    fn new(name: &'static str, output: Option<DataType>, compute: fn(&ArrayRef) -> DfResult<ArrayRef>) -> Self {
        Self { name, output, compute, signature: Signature::any(1, Volatility::Immutable) }
    }
}

/// One function a name: the name is the identity.
impl PartialEq for ArrayFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for ArrayFunction {}

impl std::hash::Hash for ArrayFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for ArrayFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.output.clone().or_else(|| arg_types.first().cloned()).unwrap_or(DataType::Null))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [argument] = args.args.as_slice() else {
            return Err(DataFusionError::Internal(format!("{} takes one argument", self.name)));
        };
        match argument {
            ColumnarValue::Array(array) => Ok(ColumnarValue::Array((self.compute)(array)?)),
            ColumnarValue::Scalar(scalar) => {
                let result = (self.compute)(&scalar.to_array()?)?;
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?))
            }
        }
    }
}

fn round_decimal(array: &Decimal128Array, scale: i8) -> DfResult<ArrayRef> {
    if scale <= 0 {
        return Ok(Arc::new(array.clone()));
    }
    let unit = 10i128.pow(scale as u32);
    let half = unit / 2;
    let rounded: Decimal128Array = array.unary(|value| {
        let whole = value / unit;
        let rest = value % unit;
        let away = if rest >= half { 1 } else if rest <= -half { -1 } else { 0 };
        (whole + away) * unit
    });
    Ok(Arc::new(rounded.with_data_type(array.data_type().clone())))
}

/// The rounding PostgreSQL does before a cast to an integer (see the module documentation).
pub fn round_for_integer() -> ArrayFunction {
    ArrayFunction::new(ROUND_FOR_INTEGER, None, |array| match array.data_type() {
        DataType::Decimal128(_, scale) => round_decimal(array.as_primitive(), *scale),
        DataType::Float64 => {
            let rounded: Float64Array = array.as_primitive::<Float64Type>().unary(f64::round_ties_even);
            Ok(Arc::new(rounded))
        }
        DataType::Float32 => {
            let rounded: Float32Array = array.as_primitive::<Float32Type>().unary(f32::round_ties_even);
            Ok(Arc::new(rounded))
        }
        _ => Ok(array.clone()),
    })
}

/// `text::bytea` as PostgreSQL reads it (see the module documentation).
pub fn bytea_input() -> ArrayFunction {
    ArrayFunction::new(BYTEA_INPUT, Some(DataType::Binary), |array| {
        let text = match array.data_type() {
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 | DataType::Null => {
                arrow::compute::cast(array, &DataType::Utf8)?
            }
            _ => return Ok(arrow::compute::cast(array, &DataType::Binary)?),
        };
        let values: Vec<Option<&str>> = text.as_string::<i32>().iter().collect();
        parse_column(&values, &DataType::Binary).map_err(|e| DataFusionError::External(Box::new(EngineError::InvalidText(e.message))))
    })
}

/// `value::text` as PostgreSQL writes it (`2020-01-01 10:00:00`, `1 day`, `t`), not as Arrow's
/// cast does (`2020-01-01T10:00:00`, `1 days`, `true`).
pub fn text_output() -> ArrayFunction {
    ArrayFunction::new(TEXT_OUTPUT, Some(DataType::Utf8), |array| {
        if matches!(array.data_type(), DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8) {
            return Ok(arrow::compute::cast(array, &DataType::Utf8)?);
        }
        let mut builder = StringBuilder::with_capacity(array.len(), array.len() * 8);
        let mut text = String::new();
        for row in 0..array.len() {
            text.clear();
            if write_text(array, row, &mut text).map_err(|e| DataFusionError::External(Box::new(e)))? {
                builder.append_value(&text);
            } else {
                builder.append_null();
            }
        }
        Ok(Arc::new(builder.finish()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_as_postgres_before_an_integer_cast() {
        let decimals = Decimal128Array::from(vec![25, -25, 37, -34, 24]).with_precision_and_scale(5, 1).unwrap();
        let rounded = round_decimal(&decimals, 1).unwrap();
        let rounded = rounded.as_primitive::<arrow::datatypes::Decimal128Type>();
        assert_eq!(rounded.values().to_vec(), vec![30, -30, 40, -30, 20]);
        assert_eq!(2.5f64.round_ties_even(), 2.0);
        assert_eq!(3.5f64.round_ties_even(), 4.0);
    }
}

/// `ceil(x)`, `floor(x)` and `trunc(x)` as PostgreSQL computes and types them: of a numeric, a
/// whole number of scale 0 (DataFusion keeps the argument's scale, `2.0`, and overflows on
/// `ceil(9.9)`); of a float or an integer, a float8 (as DataFusion's).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct NumericIntegral {
    name: &'static str,
    signature: Signature,
}

impl NumericIntegral {
    /// The function for `ceil`, `floor` or `trunc` (see [`numeric_integral_name`]).
    pub fn new(function: &str) -> Option<Self> {
        let name = numeric_integral_name(function)?;
        Some(Self { name, signature: Signature::any(1, Volatility::Immutable) })
    }

    fn integral(data_type: &DataType) -> DataType {
        match data_type {
            // One more digit: ceil(9.9) is 10.
            DataType::Decimal128(precision, scale) => {
                DataType::Decimal128((precision.saturating_sub((*scale).max(0) as u8) + 1).min(arrow::datatypes::DECIMAL128_MAX_PRECISION), 0)
            }
            DataType::Float32 => DataType::Float32,
            _ => DataType::Float64,
        }
    }

    fn round_whole(&self, value: i128, unit: i128) -> i128 {
        let (whole, rest) = (value / unit, value % unit);
        match self.name {
            "numeric_ceil" if rest > 0 => whole + 1,
            "numeric_floor" if rest < 0 => whole - 1,
            _ => whole,
        }
    }

    fn float(&self, value: f64) -> f64 {
        match self.name {
            "numeric_ceil" => value.ceil(),
            "numeric_floor" => value.floor(),
            _ => value.trunc(),
        }
    }
}

/// The function that computes PostgreSQL's `ceil`/`ceiling`, `floor` or `trunc` of one argument.
pub fn numeric_integral_name(function: &str) -> Option<&'static str> {
    match function.to_ascii_lowercase().as_str() {
        "ceil" | "ceiling" => Some("numeric_ceil"),
        "floor" => Some("numeric_floor"),
        "trunc" => Some("numeric_trunc"),
        _ => None,
    }
}

impl ScalarUDFImpl for NumericIntegral {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types.first().map(Self::integral).unwrap_or(DataType::Float64))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [argument] = args.args.as_slice() else {
            return Err(DataFusionError::Internal(format!("{} takes one argument", self.name)));
        };
        let (array, scalar) = match argument {
            ColumnarValue::Array(array) => (array.clone(), false),
            ColumnarValue::Scalar(value) => (value.to_array()?, true),
        };
        let target = Self::integral(array.data_type());
        let result: ArrayRef = match array.data_type() {
            DataType::Decimal128(_, scale) => {
                let unit = 10i128.pow((*scale).max(0) as u32);
                let whole: Decimal128Array = array.as_primitive::<arrow::datatypes::Decimal128Type>().unary(|v| self.round_whole(v, unit));
                Arc::new(whole.with_data_type(target))
            }
            DataType::Float32 => Arc::new(array.as_primitive::<Float32Type>().unary::<_, Float32Type>(|v| self.float(f64::from(v)) as f32)),
            _ => {
                let floats = arrow::compute::cast(&array, &DataType::Float64)?;
                Arc::new(floats.as_primitive::<Float64Type>().unary::<_, Float64Type>(|v| self.float(v)))
            }
        };
        Ok(if scalar { ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?) } else { ColumnarValue::Array(result) })
    }
}

#[cfg(test)]
mod integral_tests {
    use super::*;

    fn apply(function: &str, value: ScalarValue) -> ScalarValue {
        let udf = NumericIntegral::new(function).unwrap();
        let field = Arc::new(arrow::datatypes::Field::new("x", value.data_type(), true));
        let args = ScalarFunctionArgs {
            args: vec![ColumnarValue::Scalar(value.clone())],
            arg_fields: vec![field.clone()],
            number_rows: 1,
            return_field: Arc::new(arrow::datatypes::Field::new("r", NumericIntegral::integral(&value.data_type()), true)),
            config_options: Arc::new(Default::default()),
        };
        match udf.invoke_with_args(args).unwrap() {
            ColumnarValue::Scalar(s) => s,
            ColumnarValue::Array(a) => ScalarValue::try_from_array(&a, 0).unwrap(),
        }
    }

    #[test]
    fn numerics_become_whole_numbers_of_scale_zero() {
        // ceil/floor/trunc(…) as PostgreSQL 15 answers: 1.2 → 2, -1.2 → -2 and -1, 9.9 → 10.
        let d = |v: i128| ScalarValue::Decimal128(Some(v), 2, 1);
        assert_eq!(apply("ceil", d(12)), ScalarValue::Decimal128(Some(2), 2, 0));
        assert_eq!(apply("ceiling", d(99)), ScalarValue::Decimal128(Some(10), 2, 0));
        assert_eq!(apply("floor", d(-12)), ScalarValue::Decimal128(Some(-2), 2, 0));
        assert_eq!(apply("trunc", d(-12)), ScalarValue::Decimal128(Some(-1), 2, 0));
        assert_eq!(apply("ceil", d(-12)), ScalarValue::Decimal128(Some(-1), 2, 0));
        assert_eq!(apply("floor", ScalarValue::Float64(Some(-1.5))), ScalarValue::Float64(Some(-2.0)));
        assert_eq!(apply("trunc", ScalarValue::Int64(Some(5))), ScalarValue::Float64(Some(5.0)));
        assert_eq!(apply("ceil", ScalarValue::Decimal128(None, 2, 1)), ScalarValue::Decimal128(None, 2, 0));
    }
}
