//! A group's accumulators: what each aggregate keeps per group, how a row updates it, and how
//! it is stored (the state value of a group in RocksDB).

use std::collections::BTreeMap;

use arrow::array::{Array, ArrayRef, BooleanArray};
use arrow::row::Rows;

use super::aggregate::AggFunc;
use super::changes::{allocation_bytes, counted_entry_bytes};
use super::state::{Decoder, Encoder};
use crate::{EngineError, Result};

/// The accumulator of one aggregate in one group.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Acc {
    Count(i64),
    /// Exact sums (integers, decimals) and the number of non-null values in them.
    SumInt { sum: i128, count: i64 },
    SumFloat { sum: f64, count: i64 },
    Bools { trues: i64, falses: i64 },
    /// A multiset of values (arrow-row bytes → count).
    Values(BTreeMap<Vec<u8>, i64>),
    /// The extreme value so far (append-only input).
    Extreme(Option<Vec<u8>>),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct GroupState {
    pub(super) rows: i64,
    pub(super) accs: Vec<Acc>,
}

const TAG_COUNT: u8 = 1;
const TAG_SUM_INT: u8 = 2;
const TAG_SUM_FLOAT: u8 = 3;
const TAG_BOOLS: u8 = 4;
const TAG_VALUES: u8 = 5;
const TAG_EXTREME: u8 = 6;

impl GroupState {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Encoder::default();
        out.i64(self.rows);
        for acc in &self.accs {
            match acc {
                Acc::Count(n) => {
                    out.u8(TAG_COUNT);
                    out.i64(*n);
                }
                Acc::SumInt { sum, count } => {
                    out.u8(TAG_SUM_INT);
                    out.i128(*sum);
                    out.i64(*count);
                }
                Acc::SumFloat { sum, count } => {
                    out.u8(TAG_SUM_FLOAT);
                    out.f64(*sum);
                    out.i64(*count);
                }
                Acc::Bools { trues, falses } => {
                    out.u8(TAG_BOOLS);
                    out.i64(*trues);
                    out.i64(*falses);
                }
                Acc::Values(values) => {
                    out.u8(TAG_VALUES);
                    out.u64(values.len() as u64);
                    for (value, count) in values {
                        out.bytes(value);
                        out.i64(*count);
                    }
                }
                Acc::Extreme(value) => {
                    out.u8(TAG_EXTREME);
                    match value {
                        Some(v) => {
                            out.u8(1);
                            out.bytes(v);
                        }
                        None => out.u8(0),
                    }
                }
            }
        }
        out.0
    }

    pub(super) fn decode(bytes: &[u8], accs: usize) -> Result<Self> {
        let mut input = Decoder(bytes);
        let rows = input.i64()?;
        let mut out = Vec::with_capacity(accs);
        for _ in 0..accs {
            out.push(match input.u8()? {
                TAG_COUNT => Acc::Count(input.i64()?),
                TAG_SUM_INT => Acc::SumInt { sum: input.i128()?, count: input.i64()? },
                TAG_SUM_FLOAT => Acc::SumFloat { sum: input.f64()?, count: input.i64()? },
                TAG_BOOLS => Acc::Bools { trues: input.i64()?, falses: input.i64()? },
                TAG_VALUES => {
                    let n = input.u64()?;
                    let mut values = BTreeMap::new();
                    for _ in 0..n {
                        let value = input.bytes()?.to_vec();
                        values.insert(value, input.i64()?);
                    }
                    Acc::Values(values)
                }
                TAG_EXTREME => match input.u8()? {
                    0 => Acc::Extreme(None),
                    _ => Acc::Extreme(Some(input.bytes()?.to_vec())),
                },
                _ => return Err(EngineError::Internal("state store holds an unknown accumulator".into())),
            });
        }
        Ok(Self { rows, accs: out })
    }

    /// Bytes the state's accumulators take on the heap, approximately.
    pub(super) fn heap_bytes(&self) -> usize {
        allocation_bytes(self.accs.len() * std::mem::size_of::<Acc>())
            + self
                .accs
                .iter()
                .map(|a| match a {
                    Acc::Values(v) => v.keys().map(|k| counted_entry_bytes(k.len())).sum::<usize>(),
                    Acc::Extreme(Some(v)) => allocation_bytes(v.len()),
                    _ => 0,
                })
                .sum::<usize>()
    }
}

/// An aggregate's argument column for one batch, in the form its accumulator reads.
pub(super) enum ArgColumn {
    Present(ArrayRef),
    SumInt(IntColumn),
    SumFloat(arrow::array::Float64Array),
    Bools(BooleanArray),
    /// Encoded values and the array they came from (for its nulls).
    Values(Rows, ArrayRef),
    /// Encoded (order key, value) pairs; NULL values count.
    Ordered(Rows),
}

/// An exact sum's argument, cast to what it sums in.
pub(super) enum IntColumn {
    Int64(arrow::array::Int64Array),
    UInt64(arrow::array::UInt64Array),
    Decimal(arrow::array::Decimal128Array),
}

impl IntColumn {
    pub(super) fn value(&self, row: usize) -> Option<i128> {
        match self {
            IntColumn::Int64(a) => a.is_valid(row).then(|| a.value(row) as i128),
            IntColumn::UInt64(a) => a.is_valid(row).then(|| a.value(row) as i128),
            IntColumn::Decimal(a) => a.is_valid(row).then(|| a.value(row)),
        }
    }
}

pub(super) fn out_of_range(type_name: &str) -> EngineError {
    EngineError::NumericOutOfRange(format!("{type_name} out of range"))
}

/// Adds `sign` occurrences of `value`; returns the change in the multiset's heap bytes.
fn add_value(values: &mut BTreeMap<Vec<u8>, i64>, value: &[u8], sign: i64) -> isize {
    let entry_bytes = counted_entry_bytes(value.len()) as isize;
    match values.get_mut(value) {
        Some(count) => {
            *count += sign;
            if *count == 0 {
                values.remove(value);
                return -entry_bytes;
            }
            0
        }
        None => {
            values.insert(value.to_vec(), sign);
            entry_bytes
        }
    }
}

/// Keeps `value` if it beats the current extreme (`smaller`: the smallest wins); returns the
/// change in heap bytes.
fn keep_extreme(current: &mut Option<Vec<u8>>, value: &[u8], smaller: bool) -> isize {
    let better = match current {
        None => true,
        Some(existing) if smaller => value < existing.as_slice(),
        Some(existing) => value > existing.as_slice(),
    };
    if !better {
        return 0;
    }
    let old = current.as_ref().map_or(0, |v| allocation_bytes(v.len())) as isize;
    *current = Some(value.to_vec());
    allocation_bytes(value.len()) as isize - old
}

/// Applies one row to an accumulator; returns the change in its heap bytes.
pub(super) fn update(acc: &mut Acc, func: AggFunc, column: &ArgColumn, row: usize, sign: i64) -> Result<isize> {
    match (acc, column) {
        (Acc::Count(n), ArgColumn::Present(array)) => {
            if array.is_valid(row) {
                *n += sign;
            }
        }
        (Acc::SumInt { sum, count }, ArgColumn::SumInt(column)) => {
            if let Some(value) = column.value(row) {
                *sum = sum.checked_add(value * sign as i128).ok_or_else(|| out_of_range("numeric"))?;
                *count += sign;
            }
        }
        (Acc::SumFloat { sum, count }, ArgColumn::SumFloat(array)) => {
            if array.is_valid(row) {
                *sum += array.value(row) * sign as f64;
                *count += sign;
            }
        }
        (Acc::Bools { trues, falses }, ArgColumn::Bools(array)) if array.is_valid(row) => {
            if array.value(row) {
                *trues += sign;
            } else {
                *falses += sign;
            }
        }
        // NULL is never a min, max or distinct value.
        (Acc::Values(values), ArgColumn::Values(rows, array)) => {
            if array.is_valid(row) {
                return Ok(add_value(values, rows.row(row).as_ref(), sign));
            }
        }
        (Acc::Values(values), ArgColumn::Ordered(rows)) => return Ok(add_value(values, rows.row(row).as_ref(), sign)),
        (Acc::Extreme(current), ArgColumn::Ordered(rows)) => {
            return Ok(keep_extreme(current, rows.row(row).as_ref(), func == AggFunc::FirstValue));
        }
        (Acc::Extreme(current), ArgColumn::Values(rows, array)) => {
            if array.is_valid(row) {
                return Ok(keep_extreme(current, rows.row(row).as_ref(), func == AggFunc::Min));
            }
        }
        (Acc::Bools { .. }, ArgColumn::Bools(_)) => {} // NULL argument
        (acc, _) => return Err(EngineError::Internal(format!("{} cannot update accumulator {acc:?}", func.name()))),
    }
    Ok(0)
}
