//! Files for the independent correctness oracle (`benches/oracle/nexmark_duckdb.py`): the
//! generated events and each view's final rows as tab-separated text, with the column types
//! in DuckDB's names, so DuckDB can load the events and compare its own results with ours.

use std::io::Write;
use std::path::Path;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};

/// DuckDB's name for an Arrow type of the Nexmark streams and results.
fn duckdb_type(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => "BIGINT",
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => "UBIGINT",
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _) => "DOUBLE",
        DataType::Boolean => "BOOLEAN",
        DataType::Timestamp(_, _) => "TIMESTAMP",
        DataType::Date32 | DataType::Date64 => "DATE",
        _ => "VARCHAR",
    }
}

/// Writes `batches` as `{name}.tsv` (a header line, then one line per row; NULL as `\N`) and
/// `{name}.columns` (`column TYPE` per line). Values must not hold tabs or newlines: the
/// generator's never do, and a value that does is an error.
pub fn write_table(dir: &Path, name: &str, schema: &Schema, batches: &[RecordBatch]) -> std::io::Result<()> {
    let invalid = |e: arrow::error::ArrowError| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let mut columns = std::fs::File::create(dir.join(format!("{name}.columns")))?;
    for field in schema.fields() {
        writeln!(columns, "{} {}", field.name(), duckdb_type(field.data_type()))?;
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join(format!("{name}.tsv")))?);
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    writeln!(out, "{}", names.join("\t"))?;
    let options = FormatOptions::default().with_null("\\N");
    for batch in batches {
        let formatters =
            batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options)).collect::<Result<Vec<_>, _>>().map_err(invalid)?;
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = formatters.iter().map(|f| f.value(row).to_string()).collect();
            if cells.iter().any(|c| c.contains(['\t', '\n'])) {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("a value of {name} holds a tab or newline")));
            }
            writeln!(out, "{}", cells.join("\t"))?;
        }
    }
    out.flush()
}
