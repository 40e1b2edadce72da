//! Arrow schemas are stored as an Arrow IPC stream holding only the schema message: the same
//! encoding Arrow itself uses, so every type and its metadata round-trip exactly.

use std::io::Cursor;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;

use crate::{CatalogError, Result};

/// Encodes a schema as an IPC stream with no batches.
pub fn encode_schema(schema: &Schema) -> Result<Vec<u8>> {
    let mut buffer = Vec::new();
    let mut writer = StreamWriter::try_new(&mut buffer, schema)
        .map_err(|e| CatalogError::Schema(e.to_string()))?;
    writer.finish().map_err(|e| CatalogError::Schema(e.to_string()))?;
    drop(writer);
    Ok(buffer)
}

/// Decodes a schema written by [`encode_schema`].
pub fn decode_schema(bytes: &[u8]) -> Result<SchemaRef> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None)
        .map_err(|e| CatalogError::Schema(e.to_string()))?;
    Ok(Arc::new(reader.schema().as_ref().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, TimeUnit};

    #[test]
    fn schema_round_trips() {
        let schema = Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, true),
            Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
            Field::new("n", DataType::Decimal128(10, 2), true),
        ]);
        let decoded = decode_schema(&encode_schema(&schema).unwrap()).unwrap();
        assert_eq!(decoded.as_ref(), &schema);
    }
}
