//! Segment files: one Arrow IPC **file** per sealed stretch of a partition, with LZ4_FRAME body
//! compression. Its schema is the topic's log columns (the user columns, and `_deleted` for a
//! keyed table) followed by `_offset` (Int64) and `_timestamp` (Timestamp µs UTC); `_partition`
//! is implied by the object key. Offsets in a segment ascend; a compacted segment of a keyed
//! table has gaps. The IPC file
//! footer lets a reader decode only the columns it needs.

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, TimestampMicrosecondArray};
use arrow::compute::kernels::aggregate::{max, min};
use arrow::compute::{cast, concat_batches};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_ipc::CompressionType;
use bytes::Bytes;

use crate::tail::StoredBatch;
use crate::{ipc, Result};

/// Name of the system column holding a row's offset in its partition.
pub const OFFSET_COLUMN: &str = "_offset";
/// Name of the system column holding a row's append time.
pub const TIMESTAMP_COLUMN: &str = "_timestamp";
/// Name of the system column holding a row's partition.
pub const PARTITION_COLUMN: &str = "_partition";
/// Name of the column of a keyed table's log that marks a tombstone (a deleted key).
pub const DELETED_COLUMN: &str = "_deleted";
/// The system columns, in the order they follow the user columns of a topic's full schema
/// (a keyed table's log adds [`DELETED_COLUMN`] after them).
pub const SYSTEM_COLUMNS: [&str; 3] = [PARTITION_COLUMN, OFFSET_COLUMN, TIMESTAMP_COLUMN];

/// The `_timestamp` type: microseconds, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The schema of a segment file for a topic whose log has columns `user`.
pub fn segment_schema(user: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = user.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(OFFSET_COLUMN, DataType::Int64, false));
    fields.push(Field::new(TIMESTAMP_COLUMN, timestamp_type(), false));
    Arc::new(Schema::new(fields))
}

/// `base_offset, base_offset + 1, …` for `rows` rows.
pub(crate) fn offset_array(base_offset: u64, rows: usize) -> ArrayRef {
    let base = base_offset as i64;
    Arc::new(Int64Array::from_iter_values(base..base + rows as i64))
}

pub(crate) fn timestamp_array(timestamp_us: i64, rows: usize) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(vec![timestamp_us; rows]).with_timezone("UTC"))
}

/// What the catalog records of a segment besides its location.
#[derive(Debug, Clone, Copy)]
pub struct SegmentStats {
    pub row_count: u64,
    pub min_timestamp_us: i64,
    pub max_timestamp_us: i64,
    pub min_event_time_us: Option<i64>,
    pub max_event_time_us: Option<i64>,
}

/// Encodes stored batches (contiguous, in offset order) as a compressed IPC file. A batch
/// whose append already encoded it (see [`crate::ipc`]) is copied, not encoded again; only its
/// `_offset` and `_timestamp` columns are. Public for the benchmarks; the sealer is its user.
pub fn encode_segment(
    user_schema: &Schema,
    batches: &[StoredBatch],
    event_time_column: Option<usize>,
) -> Result<(Bytes, SegmentStats)> {
    let schema = segment_schema(user_schema);
    let mut stats = SegmentStats {
        row_count: 0,
        min_timestamp_us: i64::MAX,
        max_timestamp_us: i64::MIN,
        min_event_time_us: None,
        max_event_time_us: None,
    };
    for stored in batches {
        stats.row_count += stored.batch.num_rows() as u64;
        stats.min_timestamp_us = stats.min_timestamp_us.min(stored.timestamp_us);
        stats.max_timestamp_us = stats.max_timestamp_us.max(stored.timestamp_us);
        if let Some(column) = event_time_column {
            if let Some((low, high)) = event_time_bounds(stored.batch.column(column))? {
                stats.min_event_time_us = Some(stats.min_event_time_us.map_or(low, |v| v.min(low)));
                stats.max_event_time_us = Some(stats.max_event_time_us.map_or(high, |v| v.max(high)));
            }
        }
    }
    let capacity = batches.iter().map(|b| b.encoded.as_ref().map_or(0, |e| e.len())).sum();
    let mut file = ipc::FileAssembler::new(&schema, capacity)?;
    for stored in batches {
        match &stored.encoded {
            Some(user) => file.push_with_system_columns(user, stored.base_offset, stored.timestamp_us)?,
            None => file.push_with_system_columns(&ipc::encode(&stored.batch)?, stored.base_offset, stored.timestamp_us)?,
        }
    }
    Ok((Bytes::from(file.finish()), stats))
}

/// Encodes batches already in the segment schema (with their own `_offset` and `_timestamp`
/// columns, as compaction keeps them) as a compressed IPC file.
pub(crate) fn encode_rows(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<(Bytes, SegmentStats)> {
    let options = IpcWriteOptions::default().try_with_compression(Some(CompressionType::LZ4_FRAME))?;
    let mut buffer = Vec::new();
    let mut writer = FileWriter::try_new_with_options(&mut buffer, schema, options)?;
    let timestamp_column = schema.fields().len() - 1;
    let mut stats =
        SegmentStats { row_count: 0, min_timestamp_us: 0, max_timestamp_us: 0, min_event_time_us: None, max_event_time_us: None };
    let mut bounds: Option<(i64, i64)> = None;
    for batch in batches {
        writer.write(batch)?;
        stats.row_count += batch.num_rows() as u64;
        let times = batch.column(timestamp_column).as_any().downcast_ref::<TimestampMicrosecondArray>();
        if let Some((low, high)) = times.and_then(|t| min(t).zip(max(t))) {
            bounds = Some(bounds.map_or((low, high), |(l, h)| (l.min(low), h.max(high))));
        }
    }
    writer.finish()?;
    drop(writer);
    // An empty segment keeps (0, 0): it holds no row for any bound to match.
    if let Some((low, high)) = bounds {
        (stats.min_timestamp_us, stats.max_timestamp_us) = (low, high);
    }
    Ok((Bytes::from(buffer), stats))
}

/// Min and max of an event-time column in microseconds since the epoch.
pub(crate) fn event_time_bounds(column: &ArrayRef) -> Result<Option<(i64, i64)>> {
    let micros = cast(column, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    let Some(micros) = micros.as_any().downcast_ref::<arrow::array::TimestampMicrosecondArray>() else {
        return Ok(None);
    };
    Ok(min(micros).zip(max(micros)))
}

/// Decodes a segment file, reading only the columns in `projection` (indices into the segment
/// schema; `None` reads all).
pub fn read_segment(
    bytes: Bytes,
    projection: Option<Vec<usize>>,
) -> Result<impl Iterator<Item = Result<RecordBatch>> + Send> {
    let reader = FileReader::try_new(Cursor::new(bytes), projection)?;
    Ok(reader.map(|batch| batch.map_err(Into::into)))
}

/// Concatenates batches of one schema into one.
pub(crate) fn concat(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch> {
    if batches.len() == 1 {
        return Ok(batches[0].clone());
    }
    Ok(concat_batches(schema, batches)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{StringArray, TimestampMillisecondArray};

    #[test]
    fn segment_round_trips_with_stats_and_projection() {
        let user = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("t", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]));
        let batch = |values: Vec<&str>, times: Vec<Option<i64>>| {
            RecordBatch::try_new(
                user.clone(),
                vec![
                    Arc::new(StringArray::from(values)) as ArrayRef,
                    Arc::new(TimestampMillisecondArray::from(times)) as ArrayRef,
                ],
            )
            .unwrap()
        };
        let stored = vec![
            StoredBatch::new(5, 100, batch(vec!["a", "b"], vec![Some(7), None])),
            StoredBatch::new(7, 200, batch(vec!["c"], vec![Some(3)])),
        ];
        let (bytes, stats) = encode_segment(&user, &stored, Some(1)).unwrap();
        assert_eq!(stats.row_count, 3);
        assert_eq!((stats.min_timestamp_us, stats.max_timestamp_us), (100, 200));
        assert_eq!((stats.min_event_time_us, stats.max_event_time_us), (Some(3000), Some(7000)));
        let batches: Vec<RecordBatch> =
            read_segment(bytes, Some(vec![0, 2])).unwrap().collect::<Result<_>>().unwrap();
        let offsets: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.column(1).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
            .collect();
        assert_eq!(offsets, vec![5, 6, 7]);
        assert_eq!(batches[0].schema().field(0).name(), "s");

        // A batch the append already encoded is copied; the file reads back the same.
        let pre_encoded: Vec<StoredBatch> = stored
            .iter()
            .map(|b| StoredBatch { encoded: Some(Arc::new(ipc::encode(&b.batch).unwrap())), ..b.clone() })
            .collect();
        let (copied, copied_stats) = encode_segment(&user, &pre_encoded, Some(1)).unwrap();
        assert_eq!(copied_stats.row_count, 3);
        let all = |bytes: Bytes| -> Vec<RecordBatch> { read_segment(bytes, None).unwrap().collect::<Result<_>>().unwrap() };
        let (expected, actual) = (all(encode_segment(&user, &stored, Some(1)).unwrap().0), all(copied));
        assert_eq!(actual, expected);
        assert_eq!(actual[1].num_rows(), 1);
    }
}
