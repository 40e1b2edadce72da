//! A group's accumulators: what each aggregate keeps per group, how a row updates it, and how
//! it is stored (the state value of a group in RocksDB).
//!
//! A multiset of values (min/max over retracting input, count(DISTINCT), string_agg,
//! first/last_value) is kept inside the group's state value while it is small. Once it holds more
//! than [`INLINE_VALUES_MAX`] values it is stored one state entry per value instead, under the
//! operator's value space ([`ValueSet`]): an epoch then writes only the values whose counts
//! changed, not the whole set again (a count(DISTINCT) over 100 000 bidders re-encoded its set on
//! every epoch).

use std::collections::{BTreeMap, HashSet};

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
    Values(ValueSet),
    /// The extreme value so far (append-only input).
    Extreme(Option<Vec<u8>>),
}

/// Largest multiset kept inline in its group's state value.
pub(super) const INLINE_VALUES_MAX: usize = 32;

/// A multiset of values: arrow-row bytes → count, in byte order (so the smallest and largest are
/// the first and last), with the number of values present kept as it changes.
///
/// Small sets are encoded inline in the group's state. A set that has grown past
/// [`INLINE_VALUES_MAX`] is *keyed*: each value is its own state entry (value → count, see
/// [`value_key`]), the group's state records only that it is keyed, and the values whose counts
/// changed since the last write are remembered so that a write touches just them.
#[derive(Debug, Clone, Default)]
pub(super) struct ValueSet {
    counts: BTreeMap<ValueBytes, i64>,
    /// Values whose count is above zero.
    present: usize,
    keyed: bool,
    /// Keyed: every value must be written (the set has just become keyed).
    write_all: bool,
    /// Keyed: values whose count changed since the last write.
    changed: HashSet<Vec<u8>, foldhash::fast::RandomState>,
}

/// Values up to this many bytes are kept in a set without an allocation of their own.
const INLINE_BYTES: usize = 22;

/// A value of a set: inline when short (integers, dates, short strings), so that a set of
/// a million bigints takes about 48 bytes a value rather than 80.
#[derive(Clone)]
enum ValueBytes {
    Inline(u8, [u8; INLINE_BYTES]),
    Heap(Box<[u8]>),
}

impl ValueBytes {
    fn new(value: &[u8]) -> Self {
        if value.len() <= INLINE_BYTES {
            let mut bytes = [0; INLINE_BYTES];
            bytes[..value.len()].copy_from_slice(value);
            ValueBytes::Inline(value.len() as u8, bytes)
        } else {
            ValueBytes::Heap(value.into())
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            ValueBytes::Inline(len, bytes) => &bytes[..*len as usize],
            ValueBytes::Heap(bytes) => bytes,
        }
    }

    /// Heap bytes a set's entry for a value of `len` bytes takes: its share of the B-tree's
    /// nodes (32-byte entries, nodes about two thirds full) and the value's own allocation.
    fn entry_bytes(len: usize) -> usize {
        48 + if len <= INLINE_BYTES { 0 } else { allocation_bytes(len) }
    }
}

impl std::borrow::Borrow<[u8]> for ValueBytes {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for ValueBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for ValueBytes {}

impl PartialOrd for ValueBytes {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Byte order, as `[u8]` orders: what `Borrow<[u8]>` requires.
impl Ord for ValueBytes {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl std::fmt::Debug for ValueBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_slice())
    }
}

/// Sets are equal when their values and counts are: how they are stored does not matter.
impl PartialEq for ValueSet {
    fn eq(&self, other: &Self) -> bool {
        self.counts == other.counts
    }
}

impl ValueSet {
    /// A keyed set whose values are still to be read from the store.
    pub(super) fn keyed() -> Self {
        Self { keyed: true, ..Self::default() }
    }

    pub(super) fn is_keyed(&self) -> bool {
        self.keyed
    }

    /// Values with their counts, in byte order (counts may be below zero while a retraction is
    /// ahead of its insertion).
    pub(super) fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], i64)> {
        self.counts.iter().map(|(v, c)| (v.as_slice(), *c))
    }

    /// How many values are present (count above zero).
    pub(super) fn present(&self) -> usize {
        self.present
    }

    /// Adds a value read back from the store (a keyed set being loaded).
    pub(super) fn load(&mut self, value: &[u8], count: i64) {
        if count > 0 {
            self.present += 1;
        }
        self.counts.insert(ValueBytes::new(value), count);
    }

    /// Adds `sign` occurrences of `value`; returns the change in the set's heap bytes.
    fn add(&mut self, value: &[u8], sign: i64) -> isize {
        let entry_bytes = ValueBytes::entry_bytes(value.len()) as isize;
        let (before, after, mut grown) = match self.counts.get_mut(value) {
            Some(count) => {
                let before = *count;
                *count += sign;
                let after = *count;
                if after == 0 {
                    self.counts.remove(value);
                    (before, after, -entry_bytes)
                } else {
                    (before, after, 0)
                }
            }
            None => {
                self.counts.insert(ValueBytes::new(value), sign);
                (0, sign, entry_bytes)
            }
        };
        self.present = self.present + usize::from(after > 0) - usize::from(before > 0);
        if !self.keyed && self.counts.len() > INLINE_VALUES_MAX {
            self.keyed = true;
            self.write_all = true;
        } else if self.keyed && !self.write_all && !self.changed.contains(value) {
            self.changed.insert(value.to_vec());
            grown += counted_entry_bytes(value.len()) as isize;
        }
        grown
    }

    /// Writes what changed of a keyed set since its last write: `write(value, Some(count))`
    /// for each value in it, `write(value, None)` for each value no longer in it. Returns the
    /// heap bytes freed.
    pub(super) fn write_changes(&mut self, mut write: impl FnMut(&[u8], Option<i64>)) -> usize {
        if std::mem::take(&mut self.write_all) {
            for (value, count) in &self.counts {
                write(value.as_slice(), Some(*count));
            }
        }
        let freed = self.changed.iter().map(|v| counted_entry_bytes(v.len())).sum();
        for value in self.changed.drain() {
            write(&value, self.counts.get(value.as_slice()).copied());
        }
        freed
    }

    fn heap_bytes(&self) -> usize {
        self.counts.keys().map(|k| ValueBytes::entry_bytes(k.as_slice().len())).sum::<usize>()
            + self.changed.iter().map(|k| counted_entry_bytes(k.len())).sum::<usize>()
    }
}

/// The key, within an aggregate's value space, of one value of a keyed set: the group's key,
/// the aggregate's position, then the value. Group keys are arrow-row bytes (a window's end
/// first, 8 bytes): no group's key is a prefix of another's, so a group's values are exactly the
/// entries whose keys start with the group's key.
pub(super) fn value_key(out: &mut Vec<u8>, group: &[u8], acc: usize, value: &[u8]) {
    out.clear();
    out.extend_from_slice(group);
    out.extend_from_slice(&(acc as u16).to_be_bytes());
    out.extend_from_slice(value);
}

/// Splits an entry's key under a group's prefix into the aggregate's position and the value.
pub(super) fn split_value_key(rest: &[u8]) -> Result<(usize, &[u8])> {
    match rest {
        [high, low, value @ ..] => Ok((u16::from_be_bytes([*high, *low]) as usize, value)),
        _ => Err(EngineError::Internal("state store holds a value key without its aggregate".into())),
    }
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
const TAG_VALUES_KEYED: u8 = 7;

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
                Acc::Values(values) if values.keyed => out.u8(TAG_VALUES_KEYED),
                Acc::Values(values) => {
                    out.u8(TAG_VALUES);
                    out.u64(values.counts.len() as u64);
                    for (value, count) in &values.counts {
                        out.bytes(value.as_slice());
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

    /// Decodes a state value. A keyed set comes back empty: its values are read separately
    /// (see [`Self::has_keyed_values`]).
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
                    let mut values = ValueSet::default();
                    for _ in 0..n {
                        let value = input.bytes()?;
                        values.load(value, input.i64()?);
                    }
                    Acc::Values(values)
                }
                TAG_VALUES_KEYED => Acc::Values(ValueSet::keyed()),
                TAG_EXTREME => match input.u8()? {
                    0 => Acc::Extreme(None),
                    _ => Acc::Extreme(Some(input.bytes()?.to_vec())),
                },
                _ => return Err(EngineError::Internal("state store holds an unknown accumulator".into())),
            });
        }
        Ok(Self { rows, accs: out })
    }

    pub(super) fn has_keyed_values(&self) -> bool {
        self.accs.iter().any(|acc| matches!(acc, Acc::Values(values) if values.keyed))
    }

    /// Bytes the state's accumulators take on the heap, approximately.
    pub(super) fn heap_bytes(&self) -> usize {
        allocation_bytes(self.accs.len() * std::mem::size_of::<Acc>())
            + self
                .accs
                .iter()
                .map(|a| match a {
                    Acc::Values(v) => v.heap_bytes(),
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
                return Ok(values.add(rows.row(row).as_ref(), sign));
            }
        }
        (Acc::Values(values), ArgColumn::Ordered(rows)) => return Ok(values.add(rows.row(row).as_ref(), sign)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_are_kept_inline_when_short_and_order_as_bytes() {
        assert_eq!(std::mem::size_of::<ValueBytes>(), 24);
        let mut set = ValueSet::default();
        let long = vec![7u8; INLINE_BYTES + 1];
        for value in [&b"b"[..], &[], &long, b"a", &long[..INLINE_BYTES]] {
            set.add(value, 1);
        }
        set.add(b"b", -1);
        let values: Vec<&[u8]> = set.iter().map(|(v, _)| v).collect();
        // Byte order: 7 < 'a', a prefix before what it begins.
        assert_eq!(values, vec![&b""[..], &long[..INLINE_BYTES], &long, b"a"]);
        assert_eq!(set.present(), 4);
        assert!(matches!(set.counts.keys().nth(2), Some(ValueBytes::Heap(_))));
    }
}
