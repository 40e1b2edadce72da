//! Incremental GROUP BY.
//!
//! Each group's state (its row count and one accumulator per aggregate) lives in RocksDB under
//! the group key (arrow-row bytes of the GROUP BY values), with the groups an epoch touches
//! cached in memory. Every accumulator can retract: count and sum keep counts, min/max and
//! count(DISTINCT) keep a multiset of values (ordered by their arrow-row bytes, so the smallest
//! and largest are the first and last keys) — unless the input is append-only, where min/max keep
//! just the extreme value. A multiset that grows large is stored one state entry per value, in
//! the aggregate's value space, so that an epoch writes only the values it changed (see
//! `accumulator`). At the end of an epoch each touched group whose output changed emits
//! a retraction of its old row and its new row; a group whose rows were all retracted emits only
//! the retraction and its state is deleted.

/// Group lookups run once per input row: a fast hasher matters.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type, SchemaRef, UInt64Type};
use arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;

use super::accumulator::{out_of_range, split_value_key, update, value_key, Acc, ArgColumn, GroupState, IntColumn, ValueSet};
use super::changes::{allocation_bytes, table_bytes, Changes, EpochContext, Operator};
use super::state::{state_key, EpochWriter, StateStore};
use super::view::READ_BATCH_ROWS;
use crate::{EngineError, Result};


#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    Count,
    CountDistinct,
    Sum,
    Avg,
    Min,
    Max,
    BoolAnd,
    BoolOr,
    /// Values joined by a separator, in value order.
    StringAgg,
    /// The value of the row first (last) by an ORDER BY key.
    FirstValue,
    LastValue,
}

impl AggFunc {
    pub fn name(self) -> &'static str {
        match self {
            AggFunc::Count => "count",
            AggFunc::CountDistinct => "count(DISTINCT)",
            AggFunc::Sum => "sum",
            AggFunc::Avg => "avg",
            AggFunc::Min => "min",
            AggFunc::Max => "max",
            AggFunc::BoolAnd => "bool_and",
            AggFunc::BoolOr => "bool_or",
            AggFunc::StringAgg => "string_agg",
            AggFunc::FirstValue => "first_value",
            AggFunc::LastValue => "last_value",
        }
    }
}

/// One aggregate call of a GROUP BY.
pub struct AggCall {
    pub func: AggFunc,
    pub arg: Arc<dyn PhysicalExpr>,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    pub output_type: DataType,
    pub text: String,
    /// For min, max, count(DISTINCT): encodes argument values order-preservingly.
    values: Option<RowConverter>,
    /// What sum and avg accumulate in.
    sum_type: Option<DataType>,
    /// first_value / last_value: the ORDER BY keys; values are encoded as (keys…, value).
    order: Vec<Arc<dyn PhysicalExpr>>,
    /// string_agg: the separator.
    separator: String,
}

impl AggCall {
    pub fn new(
        func: AggFunc,
        arg: Arc<dyn PhysicalExpr>,
        arg_type: &DataType,
        filter: Option<Arc<dyn PhysicalExpr>>,
        output_type: DataType,
        text: String,
    ) -> Result<Self> {
        let values = match func {
            AggFunc::Min | AggFunc::Max | AggFunc::CountDistinct | AggFunc::StringAgg => {
                Some(RowConverter::new(vec![SortField::new(arg_type.clone())])?)
            }
            _ => None,
        };
        let sum_type = match func {
            AggFunc::Sum => match &output_type {
                DataType::Int64 | DataType::UInt64 | DataType::Float64 | DataType::Decimal128(_, _) => Some(output_type.clone()),
                other => return Err(EngineError::NotSupported(format!("sum returning {other} in a materialized view"))),
            },
            AggFunc::Avg => match arg_type {
                t if t.is_integer() => Some(DataType::Int64),
                t if t.is_floating() => Some(DataType::Float64),
                other => return Err(EngineError::NotSupported(format!("avg of {other} in a materialized view"))),
            },
            AggFunc::BoolAnd | AggFunc::BoolOr if arg_type != &DataType::Boolean => {
                return Err(EngineError::PlanError(format!("{} needs a boolean argument", func.name())))
            }
            _ => None,
        };
        Ok(Self { func, arg, filter, output_type, text, values, sum_type, order: Vec::new(), separator: String::new() })
    }

    /// `string_agg(arg, separator)`.
    pub fn string_agg(arg: Arc<dyn PhysicalExpr>, arg_type: &DataType, separator: String, filter: Option<Arc<dyn PhysicalExpr>>, output_type: DataType, text: String) -> Result<Self> {
        let mut call = Self::new(AggFunc::StringAgg, arg, arg_type, filter, output_type, text)?;
        call.separator = separator;
        Ok(call)
    }

    /// `first_value(arg ORDER BY keys…)` or `last_value(…)`: values are ordered by the keys as
    /// sorted (direction and NULL placement), then by the value.
    pub fn ordered(
        func: AggFunc,
        arg: Arc<dyn PhysicalExpr>,
        arg_type: &DataType,
        order: Vec<(Arc<dyn PhysicalExpr>, DataType, arrow::compute::SortOptions)>,
        filter: Option<Arc<dyn PhysicalExpr>>,
        output_type: DataType,
        text: String,
    ) -> Result<Self> {
        let mut call = Self::new(func, arg, arg_type, filter, output_type, text)?;
        let mut fields: Vec<SortField> =
            order.iter().map(|(_, t, options)| SortField::new_with_options(t.clone(), *options)).collect();
        fields.push(SortField::new(arg_type.clone()));
        call.values = Some(RowConverter::new(fields)?);
        call.order = order.into_iter().map(|(e, _, _)| e).collect();
        Ok(call)
    }
}


/// What a write-batch entry costs beside its key: the state key's prefix, the record's header
/// and lengths, and the value's fixed part.
const WRITE_ENTRY_BYTES: usize = 32;

/// Bytes an aggregate's value takes in a group's stored state and result row, about (a tag and
/// a 16-byte sum; a multiset's values are counted as the cache counts them).
const WRITE_VALUE_BYTES: usize = 24;


/// A GROUP BY over a window column: which group column it is and how far the window's end is
/// from its value (0 for `window_end`, the window size for `window_start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowKey {
    pub group_index: usize,
    pub end_offset_us: i64,
}

/// An aggregate's keyed value sets live under its operator id with this bit set (its value
/// space): `[group key][aggregate u16][value] → count`.
const VALUE_SPACE: u16 = 0x8000;

/// Bytes of the window-end prefix of a windowed group's key.
const WINDOW_PREFIX: usize = 8;

/// Big-endian with the sign bit flipped: byte order equals numeric order.
fn ordered(value: i64) -> [u8; 8] {
    ((value as u64) ^ (1 << 63)).to_be_bytes()
}


/// Incremental GROUP BY (also a global aggregate without GROUP BY: one group that always exists).
///
/// Grouped by a window column of a source with a watermark, a group's state key starts with its
/// window's end, so the windows a watermark closes are one key range: their state is deleted
/// then (no row can reach them any more), and with EMIT ON WINDOW CLOSE their final rows are
/// emitted then and only then.
pub struct AggregateOp {
    id: u16,
    view: u64,
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    group_texts: Vec<String>,
    groups: RowConverter,
    calls: Vec<AggCall>,
    schema: SchemaRef,
    /// Input has no retractions: min/max keep only the extreme.
    append_only: bool,
    /// Group states read or changed this epoch and kept from earlier ones (until the view's
    /// memory bound has them dropped).
    cache: HashMap<Vec<u8>, GroupState>,
    /// Heap bytes of the cache's keys and states.
    cache_bytes: usize,
    /// Groups touched this epoch, with their aggregate values before it (`None`: the group did
    /// not exist).
    touched: HashMap<Vec<u8>, Option<Vec<ScalarValue>>>,
    /// Heap bytes of the touched groups' keys and values.
    touched_bytes: usize,
    /// Set when groups are windows that a watermark closes.
    window: Option<WindowKey>,
    /// Emit each window's final row once it closes, instead of updates as rows arrive.
    emit_on_close: bool,
}

impl AggregateOp {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u16,
        view: u64,
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        group_texts: Vec<String>,
        group_types: Vec<DataType>,
        calls: Vec<AggCall>,
        schema: SchemaRef,
        append_only: bool,
        window: Option<WindowKey>,
        emit_on_close: bool,
    ) -> Result<Self> {
        if id >= VALUE_SPACE {
            return Err(EngineError::NotSupported("a materialized view with this many operators".into()));
        }
        let groups = RowConverter::new(group_types.into_iter().map(SortField::new).collect())?;
        Ok(Self {
            id,
            view,
            group_exprs,
            group_texts,
            groups,
            calls,
            schema,
            append_only,
            cache: HashMap::default(),
            cache_bytes: 0,
            touched: HashMap::default(),
            touched_bytes: 0,
            window,
            emit_on_close,
        })
    }

    /// The group-key bytes of a state key (after the window prefix, if any).
    fn group_bytes<'k>(&self, key: &'k [u8]) -> &'k [u8] {
        if self.window.is_some() {
            &key[WINDOW_PREFIX.min(key.len())..]
        } else {
            key
        }
    }

    fn global(&self) -> bool {
        self.group_exprs.is_empty()
    }

    fn empty_state(&self) -> GroupState {
        let accs = self
            .calls
            .iter()
            .map(|call| match call.func {
                AggFunc::Count => Acc::Count(0),
                AggFunc::Sum | AggFunc::Avg => match call.sum_type {
                    Some(DataType::Float64) => Acc::SumFloat { sum: 0.0, count: 0 },
                    _ => Acc::SumInt { sum: 0, count: 0 },
                },
                AggFunc::BoolAnd | AggFunc::BoolOr => Acc::Bools { trues: 0, falses: 0 },
                AggFunc::Min | AggFunc::Max | AggFunc::FirstValue | AggFunc::LastValue if self.append_only => {
                    Acc::Extreme(None)
                }
                AggFunc::Min
                | AggFunc::Max
                | AggFunc::CountDistinct
                | AggFunc::StringAgg
                | AggFunc::FirstValue
                | AggFunc::LastValue => Acc::Values(ValueSet::default()),
            })
            .collect();
        GroupState { rows: 0, accs }
    }

    /// Whether a group with this state has an output row.
    fn exists(&self, state: &GroupState) -> bool {
        group_exists(self.global(), state)
    }

    /// The group's state, loaded into the cache (and noted as touched) on first use this epoch.
    fn group(&mut self, key: &[u8], context: &EpochContext<'_>) -> Result<&mut GroupState> {
        if !self.touched.contains_key(key) {
            if !self.cache.contains_key(key) {
                let stored = context.store.get(&state_key(self.view, self.id, key))?;
                let state = match stored {
                    Some(bytes) => self.stored_state(context.store, key, &bytes)?,
                    None => self.empty_state(),
                };
                self.cache_bytes += allocation_bytes(key.len()) + state.heap_bytes();
                self.cache.insert(key.to_vec(), state);
            }
            // With EMIT ON WINDOW CLOSE nothing is emitted as groups change: no old values needed.
            let before = match self.cache.get(key) {
                Some(state) if self.exists(state) && !self.emit_on_close => Some(self.aggregate_values(state)?),
                _ => None,
            };
            // The group's key, its previous values, and what the epoch will write for it: its
            // state (key and accumulators) and its result rows.
            self.touched_bytes += allocation_bytes(key.len())
                + 3 * (key.len() + WRITE_ENTRY_BYTES)
                + self.calls.len() * WRITE_VALUE_BYTES
                + before.as_ref().map_or(0, |values| {
                    allocation_bytes(values.len() * std::mem::size_of::<ScalarValue>())
                        + values.iter().map(|v| v.size().saturating_sub(std::mem::size_of::<ScalarValue>())).sum::<usize>()
                });
            self.touched.insert(key.to_vec(), before);
        }
        self.cache.get_mut(key).ok_or_else(|| EngineError::Internal("aggregate group vanished from its cache".into()))
    }

    /// A group's state as stored under `key`, with the values of its keyed sets read back.
    fn stored_state(&self, store: &StateStore, key: &[u8], bytes: &[u8]) -> Result<GroupState> {
        let mut state = GroupState::decode(bytes, self.calls.len())?;
        if state.has_keyed_values() {
            store.scan_state_prefix(self.view, self.id | VALUE_SPACE, key, |rest, count| {
                let (acc, value) = split_value_key(rest)?;
                let count = count.try_into().map(i64::from_le_bytes).map_err(|_| EngineError::Internal("state store holds a value count that cannot be decoded".into()))?;
                match state.accs.get_mut(acc) {
                    Some(Acc::Values(set)) if set.is_keyed() => set.load(value, count),
                    _ => return Err(EngineError::Internal("state store holds a value of an aggregate that keeps none".into())),
                }
                Ok(true)
            })?;
        }
        Ok(state)
    }

    fn arg_column(call: &AggCall, batch: &RecordBatch) -> Result<ArgColumn> {
        let array = call.arg.evaluate(batch)?.into_array(batch.num_rows())?;
        Ok(match call.func {
            AggFunc::Count => ArgColumn::Present(array),
            AggFunc::Sum | AggFunc::Avg => {
                let target = call.sum_type.as_ref().unwrap_or(&call.output_type);
                let array = cast(&array, target)?;
                match array.data_type() {
                    DataType::Float64 => ArgColumn::SumFloat(array.as_primitive::<Float64Type>().clone()),
                    DataType::Int64 => ArgColumn::SumInt(IntColumn::Int64(array.as_primitive::<Int64Type>().clone())),
                    DataType::UInt64 => ArgColumn::SumInt(IntColumn::UInt64(array.as_primitive::<UInt64Type>().clone())),
                    DataType::Decimal128(_, _) => {
                        ArgColumn::SumInt(IntColumn::Decimal(array.as_primitive::<Decimal128Type>().clone()))
                    }
                    other => return Err(EngineError::Internal(format!("sum over {other}"))),
                }
            }
            AggFunc::BoolAnd | AggFunc::BoolOr => ArgColumn::Bools(array.as_boolean().clone()),
            AggFunc::Min | AggFunc::Max | AggFunc::CountDistinct | AggFunc::StringAgg => {
                let converter = call.values.as_ref().ok_or_else(|| EngineError::Internal("value encoder missing".into()))?;
                ArgColumn::Values(converter.convert_columns(&[array.clone()])?, array)
            }
            AggFunc::FirstValue | AggFunc::LastValue => {
                let converter = call.values.as_ref().ok_or_else(|| EngineError::Internal("value encoder missing".into()))?;
                let mut columns = call
                    .order
                    .iter()
                    .map(|key| Ok(key.evaluate(batch)?.into_array(batch.num_rows())?))
                    .collect::<Result<Vec<ArrayRef>>>()?;
                columns.push(array);
                ArgColumn::Ordered(converter.convert_columns(&columns)?)
            }
        })
    }

    fn output_value(&self, call: &AggCall, acc: &Acc) -> Result<ScalarValue> {
        let null = || ScalarValue::try_from(&call.output_type);
        let value = match (call.func, acc) {
            (AggFunc::Count, Acc::Count(n)) => ScalarValue::Int64(Some(*n)),
            (AggFunc::CountDistinct, Acc::Values(values)) => ScalarValue::Int64(Some(values.present() as i64)),
            (AggFunc::Sum, Acc::SumInt { count: 0, .. } | Acc::SumFloat { count: 0, .. }) => null()?,
            (AggFunc::Sum, Acc::SumInt { sum, .. }) => match &call.output_type {
                DataType::Int64 => ScalarValue::Int64(Some(i64::try_from(*sum).map_err(|_| out_of_range("bigint"))?)),
                DataType::UInt64 => ScalarValue::UInt64(Some(u64::try_from(*sum).map_err(|_| out_of_range("bigint"))?)),
                DataType::Decimal128(p, s) => ScalarValue::Decimal128(Some(*sum), *p, *s),
                other => return Err(EngineError::Internal(format!("integer sum as {other}"))),
            },
            (AggFunc::Sum, Acc::SumFloat { sum, .. }) => ScalarValue::Float64(Some(*sum)),
            (AggFunc::Avg, Acc::SumInt { count: 0, .. } | Acc::SumFloat { count: 0, .. }) => null()?,
            (AggFunc::Avg, Acc::SumInt { sum, count }) => ScalarValue::Float64(Some(*sum as f64 / *count as f64)),
            (AggFunc::Avg, Acc::SumFloat { sum, count }) => ScalarValue::Float64(Some(*sum / *count as f64)),
            (AggFunc::BoolAnd | AggFunc::BoolOr, Acc::Bools { trues: 0, falses: 0 }) => null()?,
            (AggFunc::BoolAnd, Acc::Bools { falses, .. }) => ScalarValue::Boolean(Some(*falses == 0)),
            (AggFunc::BoolOr, Acc::Bools { trues, .. }) => ScalarValue::Boolean(Some(*trues > 0)),
            // The extreme kept, or the first (last) value present in the ordered multiset.
            (AggFunc::Min | AggFunc::Max | AggFunc::FirstValue | AggFunc::LastValue, Acc::Extreme(value)) => {
                match value {
                    Some(bytes) => decode_value(call, bytes)?,
                    None => null()?,
                }
            }
            (AggFunc::Min | AggFunc::FirstValue, Acc::Values(values)) => match values.iter().find(|(_, c)| *c > 0) {
                Some((bytes, _)) => decode_value(call, bytes)?,
                None => null()?,
            },
            (AggFunc::Max | AggFunc::LastValue, Acc::Values(values)) => match values.iter().rev().find(|(_, c)| *c > 0) {
                Some((bytes, _)) => decode_value(call, bytes)?,
                None => null()?,
            },
            (AggFunc::StringAgg, Acc::Values(values)) => {
                let present: Vec<(&[u8], i64)> = values.iter().filter(|(_, c)| *c > 0).collect();
                if present.is_empty() {
                    null()?
                } else {
                    let converter = call.values.as_ref().ok_or_else(|| EngineError::Internal("value encoder missing".into()))?;
                    let parser = converter.parser();
                    let decoded = converter.convert_rows(present.iter().map(|(v, _)| parser.parse(v)))?;
                    let texts = cast(&decoded[0], &DataType::Utf8)?;
                    let texts = texts.as_string::<i32>();
                    let mut joined = String::new();
                    let mut first = true;
                    for (index, (_, count)) in present.iter().enumerate() {
                        for _ in 0..*count {
                            if !first {
                                joined.push_str(&call.separator);
                            }
                            first = false;
                            joined.push_str(texts.value(index));
                        }
                    }
                    ScalarValue::Utf8(Some(joined))
                }
            }
            (func, acc) => return Err(EngineError::Internal(format!("{} cannot read accumulator {acc:?}", func.name()))),
        };
        if value.data_type() == call.output_type {
            Ok(value)
        } else {
            Ok(value.cast_to(&call.output_type)?)
        }
    }

    /// A group's aggregate values, as its output row holds them.
    fn aggregate_values(&self, state: &GroupState) -> Result<Vec<ScalarValue>> {
        self.calls.iter().zip(&state.accs).map(|(call, acc)| self.output_value(call, acc)).collect()
    }

    /// Output rows for the given groups' states.
    fn state_batch(&self, rows: &[(&[u8], &GroupState)]) -> Result<RecordBatch> {
        let values = rows.iter().map(|(key, state)| Ok((key.to_vec(), self.aggregate_values(state)?))).collect::<Result<Vec<_>>>()?;
        self.output_batch(&values)
    }

    /// Turns retracted and inserted rows into change batches (retractions first), emptying both.
    fn emit(&self, retracted: &mut Vec<(Vec<u8>, Vec<ScalarValue>)>, inserted: &mut Vec<(Vec<u8>, Vec<ScalarValue>)>, output: &mut Vec<Changes>) -> Result<()> {
        if !retracted.is_empty() {
            let batch = self.output_batch(retracted)?;
            let retract = BooleanArray::from(vec![true; retracted.len()]);
            output.push(Changes { batch, retract: Some(retract) });
            retracted.clear();
        }
        if !inserted.is_empty() {
            output.push(Changes::inserts(self.output_batch(inserted)?));
            inserted.clear();
        }
        Ok(())
    }

    /// Output rows for the given groups: group columns, then one column per aggregate (from
    /// each group's aggregate values).
    fn output_batch(&self, rows: &[(Vec<u8>, Vec<ScalarValue>)]) -> Result<RecordBatch> {
        let parser = self.groups.parser();
        let keys = self.groups.convert_rows(rows.iter().map(|(key, _)| parser.parse(self.group_bytes(key))))?;
        let mut columns: Vec<ArrayRef> = keys;
        for (index, call) in self.calls.iter().enumerate() {
            let values = rows
                .iter()
                .map(|(_, values)| values.get(index).cloned().ok_or_else(|| EngineError::Internal("aggregate value missing".into())))
                .collect::<Result<Vec<_>>>()?;
            let array = if values.is_empty() {
                arrow::array::new_empty_array(&call.output_type)
            } else {
                ScalarValue::iter_to_array(values)?
            };
            columns.push(array);
        }
        let columns = columns
            .into_iter()
            .zip(self.schema.fields())
            .map(|(column, field)| {
                if column.data_type() == field.data_type() {
                    Ok(column)
                } else {
                    Ok(cast(&column, field.data_type())?)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
        Ok(RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?)
    }
}


/// Whether a group has an output row: it has rows, or it is the one group of a global
/// aggregate (which always has one). `AggregateOp::exists` asks this; `finish_epoch` asks it
/// directly while it holds the cache borrowed mutably.
fn group_exists(global: bool, state: &GroupState) -> bool {
    global || state.rows > 0
}

/// Writes the changed values of a group's keyed sets to the value space `space`; returns the
/// heap bytes freed.
fn write_keyed_values(space: u16, group: &[u8], state: &mut GroupState, writer: &mut EpochWriter) -> usize {
    let mut key = Vec::new();
    let mut freed = 0;
    for (index, acc) in state.accs.iter_mut().enumerate() {
        let Acc::Values(set) = acc else { continue };
        if !set.is_keyed() {
            continue;
        }
        freed += set.write_changes(|value, count| {
            value_key(&mut key, group, index, value);
            match count {
                Some(count) => writer.put_state(space, &key, &count.to_le_bytes()),
                None => writer.delete_state(space, &key),
            }
        });
    }
    freed
}

fn decode_value(call: &AggCall, bytes: &[u8]) -> Result<ScalarValue> {
    let converter = call.values.as_ref().ok_or_else(|| EngineError::Internal("value encoder missing".into()))?;
    let parser = converter.parser();
    let columns = converter.convert_rows([parser.parse(bytes)])?;
    // Ordered values are (keys…, value).
    let column = call.order.len();
    Ok(ScalarValue::try_from_array(&columns[column], 0)?)
}


impl AggregateOp {
    /// Deletes the state of every window ending at or before the watermark; returns the
    /// closed groups (with EMIT ON WINDOW CLOSE, to emit; otherwise empty).
    fn close_windows(
        &mut self,
        watermark: i64,
        touched: Vec<Vec<u8>>,
        context: &mut EpochContext<'_>,
    ) -> Result<Vec<(Vec<u8>, GroupState)>> {
        let bound = ordered(watermark.saturating_add(1));
        let mut closed: std::collections::BTreeMap<Vec<u8>, GroupState> = std::collections::BTreeMap::new();
        let mut stored: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        context.store.scan_state(self.view, self.id, &bound, |key, value| stored.push((key.to_vec(), value.to_vec())))?;
        for (key, value) in stored {
            // The cache holds this epoch's changes; the store holds the last commit.
            let state = match self.cache.get(&key) {
                Some(state) => state.clone(),
                None => self.stored_state(context.store, &key, &value)?,
            };
            closed.insert(key, state);
        }
        for key in touched.into_iter().filter(|k| k.as_slice() < bound.as_slice()) {
            if let Some(state) = self.cache.get(&key) {
                closed.insert(key, state.clone());
            }
        }
        if !closed.is_empty() && self.calls.iter().any(|c| c.values.is_some()) {
            // The closed windows' keyed values: every key of the value space below the bound.
            context.writer.delete_state_range(self.id | VALUE_SPACE, &[], &bound);
        }
        for key in closed.keys() {
            context.writer.delete_state(self.id, key);
            if let Some(state) = self.cache.remove(key) {
                self.cache_bytes = self.cache_bytes.saturating_sub(allocation_bytes(key.len()) + state.heap_bytes());
            }
        }
        Ok(if self.emit_on_close { closed.into_iter().filter(|(_, s)| self.exists(s)).collect() } else { Vec::new() })
    }
}

impl Operator for AggregateOp {
    fn process(&mut self, input: Changes, context: &mut EpochContext<'_>) -> Result<Vec<Changes>> {
        let rows = input.num_rows();
        if rows == 0 {
            return Ok(Vec::new());
        }
        let group_columns = self
            .group_exprs
            .iter()
            .map(|e| Ok(e.evaluate(&input.batch)?.into_array(rows)?))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let keys = if self.global() { None } else { Some(self.groups.convert_columns(&group_columns)?) };
        let args = self.calls.iter().map(|c| Self::arg_column(c, &input.batch)).collect::<Result<Vec<_>>>()?;
        let filters = self
            .calls
            .iter()
            .map(|c| match &c.filter {
                Some(f) => Ok(Some(f.evaluate(&input.batch)?.into_array(rows)?.as_boolean().clone())),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        let funcs: Vec<AggFunc> = self.calls.iter().map(|c| c.func).collect();
        let window_ends = match self.window {
            Some(window) => {
                let column = cast(&group_columns[window.group_index], &DataType::Int64)?;
                Some((column.as_primitive::<Int64Type>().clone(), window.end_offset_us))
            }
            None => None,
        };
        // First the batch's distinct groups and their rows (one cheap lookup per row), then
        // each group's state once and its rows' updates.
        let mut positions: std::collections::HashMap<(i64, &[u8]), usize, foldhash::fast::RandomState> = Default::default();
        let mut groups: Vec<((i64, &[u8]), Vec<u32>)> = Vec::new();
        for row in 0..rows {
            let end = window_ends.as_ref().map_or(0, |(ends, offset)| ends.value(row).saturating_add(*offset));
            let group_key: &[u8] = keys.as_ref().map_or(&[], |k| k.row(row).data());
            let position = *positions.entry((end, group_key)).or_insert_with(|| {
                groups.push(((end, group_key), Vec::new()));
                groups.len() - 1
            });
            groups[position].1.push(row as u32);
        }
        let mut key = Vec::new();
        for ((end, group_key), members) in &groups {
            key.clear();
            if self.window.is_some() {
                key.extend_from_slice(&ordered(*end));
            }
            key.extend_from_slice(group_key);
            let state = self.group(&key, context)?;
            let mut grown = 0isize;
            for &row in members {
                let row = row as usize;
                let sign = input.sign(row);
                state.rows += sign;
                for (index, acc) in state.accs.iter_mut().enumerate() {
                    if filters[index].as_ref().is_some_and(|f| !(f.is_valid(row) && f.value(row))) {
                        continue;
                    }
                    grown += update(acc, funcs[index], &args[index], row, sign)?;
                }
            }
            self.cache_bytes = self.cache_bytes.saturating_add_signed(grown);
        }
        Ok(Vec::new())
    }

    fn finish_epoch(&mut self, context: &mut EpochContext<'_>) -> Result<Vec<Changes>> {
        let touched = std::mem::take(&mut self.touched);
        self.touched_bytes = 0;
        let mut retracted: Vec<(Vec<u8>, Vec<ScalarValue>)> = Vec::new();
        let mut inserted: Vec<(Vec<u8>, Vec<ScalarValue>)> = Vec::new();
        let mut touched_keys: Vec<Vec<u8>> = Vec::new();
        let mut output = Vec::new();
        let global = self.global();
        for (key, before) in touched {
            // A touched group had rows this epoch: its state is written (or deleted) as it is,
            // and its keyed sets' changed values.
            let exists = match self.cache.get_mut(&key) {
                Some(state) => {
                    let freed = write_keyed_values(self.id | VALUE_SPACE, &key, state, context.writer);
                    self.cache_bytes = self.cache_bytes.saturating_sub(freed);
                    let exists = group_exists(global, state);
                    if exists {
                        context.writer.put_state(self.id, &key, &state.encode());
                    }
                    exists
                }
                None => false,
            };
            if !exists {
                context.writer.delete_state(self.id, &key);
                if let Some(state) = self.cache.remove(&key) {
                    self.cache_bytes = self.cache_bytes.saturating_sub(allocation_bytes(key.len()) + state.heap_bytes());
                }
            } else if self.window.is_some() {
                touched_keys.push(key.clone());
            }
            if self.emit_on_close {
                continue; // emitted when its window closes
            }
            let after = match self.cache.get(&key) {
                Some(state) if exists => Some(self.aggregate_values(state)?),
                _ => None,
            };
            // An unchanged output (e.g. a sum whose rows changed but not its total) emits
            // nothing. The group key is the same on both sides: the aggregates decide.
            if before == after {
                continue;
            }
            if let Some(values) = before {
                retracted.push((key.clone(), values));
            }
            if let Some(values) = after {
                inserted.push((key, values));
            }
            // Rows become batches as they come: an epoch's values are not all held at once.
            if retracted.len().max(inserted.len()) >= READ_BATCH_ROWS {
                self.emit(&mut retracted, &mut inserted, &mut output)?;
            }
        }
        self.emit(&mut retracted, &mut inserted, &mut output)?;
        if let (Some(_), Some(watermark)) = (self.window, context.watermark) {
            let closed = self.close_windows(watermark, touched_keys, context)?;
            if !closed.is_empty() {
                let rows: Vec<(&[u8], &GroupState)> = closed.iter().map(|(k, s)| (k.as_slice(), s)).collect();
                output.push(Changes::inserts(self.state_batch(&rows)?));
            }
        }
        Ok(output)
    }

    fn initial(&mut self) -> Result<Vec<Changes>> {
        if !self.global() {
            return Ok(Vec::new());
        }
        let state = self.empty_state();
        Ok(vec![Changes::inserts(self.state_batch(&[(&[], &state)])?)])
    }

    fn set_emit_on_close(&mut self) {
        self.emit_on_close = true;
    }

    fn memory_bytes(&self) -> usize {
        table_bytes::<Vec<u8>, GroupState>(self.cache.capacity())
            + self.cache_bytes
            + table_bytes::<Vec<u8>, Option<Vec<ScalarValue>>>(self.touched.capacity())
            + self.touched_bytes
    }

    fn drop_cache(&mut self) {
        // A new map: clearing would keep the table's allocation.
        self.cache = HashMap::default();
        self.cache_bytes = 0;
    }

    fn describe(&self) -> String {
        let calls: Vec<&str> = self.calls.iter().map(|c| c.text.as_str()).collect();
        let mut mode = if self.append_only { "append-only input" } else { "retracting input" }.to_string();
        if self.window.is_some() {
            mode.push_str(", windows closed by the watermark");
        }
        if self.emit_on_close {
            mode.push_str(", emit on window close");
        }
        if self.global() {
            format!("Aggregate: [{}] ({mode})", calls.join(", "))
        } else {
            format!("Aggregate: group by [{}], [{}] ({mode})", self.group_texts.join(", "), calls.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrow::array::Int64Array;
    use arrow::datatypes::{Field, Schema};
    use datafusion::physical_expr::expressions::Column;

    use super::*;

    /// count(DISTINCT v), min(v), max(v) and string_agg(v) grouped by g, over inserts and
    /// retractions that grow sets past the inline limit and shrink them to nothing, with the
    /// cache dropped (state read back from the store) now and then: after every epoch the
    /// emitted results equal the aggregates recomputed from the live rows, and once every row is
    /// retracted no state is left.
    #[test]
    fn value_sets_stored_per_value_follow_inserts_and_retractions() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path(), 8 << 20).unwrap();
        let input = Arc::new(Schema::new(vec![Field::new("g", DataType::Int64, false), Field::new("v", DataType::Int64, false)]));
        let output = Arc::new(Schema::new(vec![
            Field::new("g", DataType::Int64, false),
            Field::new("vs", DataType::Int64, true),
            Field::new("lo", DataType::Int64, true),
            Field::new("hi", DataType::Int64, true),
            Field::new("all", DataType::Utf8, true),
        ]));
        let v: Arc<dyn PhysicalExpr> = Arc::new(Column::new("v", 1));
        let call = |func, output: DataType| AggCall::new(func, v.clone(), &DataType::Int64, None, output, format!("{func:?}")).unwrap();
        let calls = vec![
            call(AggFunc::CountDistinct, DataType::Int64),
            call(AggFunc::Min, DataType::Int64),
            call(AggFunc::Max, DataType::Int64),
            AggCall::string_agg(v.clone(), &DataType::Int64, ",".into(), None, DataType::Utf8, "string_agg".into()).unwrap(),
        ];
        let mut op = AggregateOp::new(
            3,
            7,
            vec![Arc::new(Column::new("g", 0))],
            vec!["g".into()],
            vec![DataType::Int64],
            calls,
            output,
            false,
            None,
            false,
        )
        .unwrap();

        // Live rows (g, v) with their multiplicity, and the view's rows as emitted.
        let mut live: BTreeMap<(i64, i64), i64> = BTreeMap::new();
        let mut emitted: BTreeMap<i64, Vec<Option<String>>> = BTreeMap::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        let epochs = 40;
        for epoch in 0..epochs {
            // Growing for the first half (values 0..200 in three groups), shrinking after; the
            // last epoch retracts whatever is left.
            let mut rows: Vec<(i64, i64, bool)> = Vec::new();
            let mut pending = live.clone();
            for _ in 0..60 {
                let retract = if epoch < epochs / 2 { next(4) == 0 } else { next(4) != 0 };
                if retract && !pending.is_empty() {
                    let at = next(pending.len() as u64) as usize;
                    let (&(g, value), _) = pending.iter().nth(at).unwrap();
                    let count = pending.get_mut(&(g, value)).unwrap();
                    *count -= 1;
                    if *count == 0 {
                        pending.remove(&(g, value));
                    }
                    rows.push((g, value, true));
                } else if !retract {
                    let (g, value) = (next(3) as i64, next(200) as i64);
                    *pending.entry((g, value)).or_default() += 1;
                    rows.push((g, value, false));
                }
            }
            if epoch == epochs - 1 {
                for (&(g, value), &count) in &pending {
                    rows.extend(std::iter::repeat_n((g, value, true), count as usize));
                }
                pending.clear();
            }
            live = pending;
            let batch = RecordBatch::try_new(
                input.clone(),
                vec![
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                ],
            )
            .unwrap();
            let changes = Changes { batch, retract: Some(BooleanArray::from_iter(rows.iter().map(|r| Some(r.2)))) };
            let mut writer = EpochWriter::new(7);
            let mut context = EpochContext { store: &store, writer: &mut writer, watermark: None, log_changes: false, rows_delta: 0 };
            let mut out = op.process(changes, &mut context).unwrap();
            out.extend(op.finish_epoch(&mut context).unwrap());
            store.commit(writer.batch).unwrap();
            if epoch % 3 == 2 {
                op.drop_cache();
            }
            for change in out {
                let texts: Vec<ArrayRef> = change.batch.columns().iter().map(|c| cast(c, &DataType::Utf8).unwrap()).collect();
                for row in 0..change.batch.num_rows() {
                    let values: Vec<Option<String>> = texts.iter().map(|c| c.as_string::<i32>().is_valid(row).then(|| c.as_string::<i32>().value(row).to_string())).collect();
                    let g: i64 = values[0].as_ref().unwrap().parse().unwrap();
                    if change.is_retract(row) {
                        assert_eq!(emitted.remove(&g).as_ref(), Some(&values), "epoch {epoch}: the retracted row was the group's row");
                    } else {
                        assert!(emitted.insert(g, values).is_none(), "epoch {epoch}: group {g} inserted twice");
                    }
                }
            }
            // What the live rows give, worked out here.
            let mut expected: BTreeMap<i64, Vec<Option<String>>> = BTreeMap::new();
            for g in 0..3 {
                let values: Vec<(i64, i64)> = live.iter().filter(|((lg, _), _)| *lg == g).map(|((_, v), c)| (*v, *c)).collect();
                if values.is_empty() {
                    continue;
                }
                let all: Vec<String> = values.iter().flat_map(|(v, c)| std::iter::repeat_n(v.to_string(), *c as usize)).collect();
                expected.insert(
                    g,
                    vec![
                        Some(g.to_string()),
                        Some(values.len().to_string()),
                        Some(values[0].0.to_string()),
                        Some(values[values.len() - 1].0.to_string()),
                        Some(all.join(",")),
                    ],
                );
            }
            assert_eq!(emitted, expected, "epoch {epoch}");
            if epoch == epochs / 2 {
                // The sets are large by now: their values are stored one per entry.
                let mut entries = 0;
                store.scan_state_prefix(7, 3 | VALUE_SPACE, &[], |_, _| { entries += 1; Ok(true) }).unwrap();
                assert!(entries > 3 * INLINE, "{entries} value entries");
            }
        }
        assert!(emitted.is_empty());
        let mut left = 0;
        store.scan_state_prefix(7, 3, &[], |_, _| { left += 1; Ok(true) }).unwrap();
        store.scan_state_prefix(7, 3 | VALUE_SPACE, &[], |_, _| { left += 1; Ok(true) }).unwrap();
        assert_eq!(left, 0, "state left after every row was retracted");
    }

    const INLINE: usize = super::super::accumulator::INLINE_VALUES_MAX;
}
