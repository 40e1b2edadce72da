//! What Flight SQL metadata requests answer: the server's SQL facts (`GetSqlInfo`), the types
//! it stores (`GetXdbcTypeInfo`), and the rows of `GetPrimaryKeys`. Catalogs, schemas and tables
//! come from the engine's relations at each request (see `sql.rs`).

use std::sync::Arc;

use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder};
use arrow_flight::sql::{Nullable, Searchable, SqlInfo, SqlNullOrdering, SqlSupportedCaseSensitivity, SqlSupportedTransaction, XdbcDataType, XdbcDatetimeSubcode};
use streamhouse_engine::arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use streamhouse_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use streamhouse_engine::arrow::error::ArrowError;
use streamhouse_engine::bulk::Relation;

/// The schema StreamHouse's relations live in, in the one catalog (the database).
pub const SCHEMA_PUBLIC: &str = "public";

/// Table types `GetTableTypes` lists and `GetTables` reports.
pub const TABLE_TYPES: [&str; 4] = ["MATERIALIZED VIEW", "SYSTEM TABLE", "TABLE", "TOPIC"];

/// The facts `GetSqlInfo` reports.
pub fn sql_info() -> Result<SqlInfoData, arrow_flight::error::FlightError> {
    let mut builder = SqlInfoDataBuilder::new();
    builder.append(SqlInfo::FlightSqlServerName, "StreamHouse");
    builder.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    builder.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    builder.append(SqlInfo::FlightSqlServerReadOnly, false);
    builder.append(SqlInfo::FlightSqlServerSql, true);
    builder.append(SqlInfo::FlightSqlServerSubstrait, false);
    // Every statement commits on its own: there are no transactions to begin.
    builder.append(SqlInfo::FlightSqlServerTransaction, SqlSupportedTransaction::None as i32);
    builder.append(SqlInfo::FlightSqlServerCancel, true);
    builder.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    builder.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    builder.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    builder.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    builder.append(SqlInfo::SqlDdlCatalog, false);
    builder.append(SqlInfo::SqlDdlSchema, false);
    builder.append(SqlInfo::SqlDdlTable, true);
    builder.append(SqlInfo::SqlIdentifierCase, SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32);
    builder.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    builder.append(SqlInfo::SqlQuotedIdentifierCase, SqlSupportedCaseSensitivity::SqlCaseSensitivityUnknown as i32);
    builder.append(SqlInfo::SqlNullOrdering, SqlNullOrdering::SqlNullsSortedHigh as i32);
    builder.append(SqlInfo::SqlTransactionsSupported, false);
    builder.append(
        SqlInfo::SqlKeywords,
        &["APPEND", "EMIT", "FLUSH", "HOP", "SESSION", "SUBSCRIBE", "TOPIC", "TUMBLE", "WATERMARK"][..],
    );
    builder.build()
}

fn type_info(type_name: &str, data_type: XdbcDataType, column_size: Option<i32>, searchable: Searchable) -> XdbcTypeInfo {
    XdbcTypeInfo {
        type_name: type_name.to_string(),
        data_type,
        column_size,
        literal_prefix: None,
        literal_suffix: None,
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: false,
        searchable,
        unsigned_attribute: None,
        fixed_prec_scale: false,
        auto_increment: Some(false),
        local_type_name: Some(type_name.to_string()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: data_type,
        datetime_subcode: None,
        num_prec_radix: None,
        interval_precision: None,
    }
}

/// The column types a topic can have (`GetXdbcTypeInfo`), by their PostgreSQL names.
pub fn xdbc_type_info() -> Result<XdbcTypeInfoData, arrow_flight::error::FlightError> {
    let mut builder = XdbcTypeInfoDataBuilder::new();
    let basic = Searchable::Basic;
    let full = Searchable::Full;
    let number = |name: &str, data_type, size| XdbcTypeInfo { num_prec_radix: Some(10), unsigned_attribute: Some(false), ..type_info(name, data_type, Some(size), basic) };
    builder.append(type_info("boolean", XdbcDataType::XdbcBit, Some(1), basic));
    builder.append(number("smallint", XdbcDataType::XdbcSmallint, 5));
    builder.append(number("integer", XdbcDataType::XdbcInteger, 10));
    builder.append(number("bigint", XdbcDataType::XdbcBigint, 19));
    builder.append(number("real", XdbcDataType::XdbcReal, 24));
    builder.append(number("double precision", XdbcDataType::XdbcDouble, 53));
    builder.append(XdbcTypeInfo {
        create_params: Some(vec!["precision".into(), "scale".into()]),
        fixed_prec_scale: true,
        minimum_scale: Some(0),
        maximum_scale: Some(38),
        ..number("numeric", XdbcDataType::XdbcNumeric, 38)
    });
    let quoted = |info: XdbcTypeInfo| XdbcTypeInfo { literal_prefix: Some("'".into()), literal_suffix: Some("'".into()), case_sensitive: true, ..info };
    builder.append(quoted(type_info("text", XdbcDataType::XdbcVarchar, None, full)));
    builder.append(quoted(type_info("bytea", XdbcDataType::XdbcVarbinary, None, basic)));
    let datetime = |name: &str, subcode| XdbcTypeInfo { datetime_subcode: Some(subcode), ..quoted(type_info(name, XdbcDataType::XdbcDatetime, None, basic)) };
    builder.append(XdbcTypeInfo { data_type: XdbcDataType::XdbcDate, ..datetime("date", XdbcDatetimeSubcode::XdbcSubcodeYear) });
    builder.append(XdbcTypeInfo { data_type: XdbcDataType::XdbcTime, ..datetime("time", XdbcDatetimeSubcode::XdbcSubcodeTime) });
    builder.append(XdbcTypeInfo { data_type: XdbcDataType::XdbcTimestamp, ..datetime("timestamp", XdbcDatetimeSubcode::XdbcSubcodeTimestamp) });
    builder.append(XdbcTypeInfo {
        data_type: XdbcDataType::XdbcTimestamp,
        ..datetime("timestamp with time zone", XdbcDatetimeSubcode::XdbcSubcodeTimestampWithTimezone)
    });
    builder.append(quoted(type_info("interval", XdbcDataType::XdbcInterval, None, basic)));
    builder.build()
}

/// The schema of a `GetPrimaryKeys` answer, as the Flight SQL protocol fixes it.
pub fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// The primary key columns of the keyed tables among `relations` that the request names
/// (`catalog` and `schema` when given must be ours), in key order.
pub fn primary_keys(database: &str, relations: &[Relation], table: &str, catalog: Option<&str>, schema: Option<&str>) -> Result<RecordBatch, ArrowError> {
    let mut rows: Vec<(String, String, i32)> = Vec::new();
    let ours = catalog.is_none_or(|c| c == database) && schema.is_none_or(|s| s == SCHEMA_PUBLIC);
    for relation in relations.iter().filter(|r| ours && r.name == table) {
        for (position, column) in relation.primary_key.iter().enumerate() {
            rows.push((relation.name.clone(), column.clone(), position as i32 + 1));
        }
    }
    let count = rows.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![Some(database); count])),
        Arc::new(StringArray::from(vec![Some(SCHEMA_PUBLIC); count])),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.as_str()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1.as_str()))),
        Arc::new(StringArray::from(rows.iter().map(|r| Some(format!("{}_pkey", r.0))).collect::<Vec<_>>())),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.2))),
    ];
    RecordBatch::try_new(primary_keys_schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamhouse_engine::bulk::RelationKind;

    #[test]
    fn primary_keys_come_in_key_order_for_the_named_table_only() {
        let schema = Arc::new(Schema::empty());
        let relations = vec![
            Relation { name: "people".into(), kind: RelationKind::KeyedTable, schema: schema.clone(), primary_key: vec!["region".into(), "id".into()], partitions: 1 },
            Relation { name: "bids".into(), kind: RelationKind::Topic, schema, primary_key: vec![], partitions: 1 },
        ];
        let batch = primary_keys("db", &relations, "people", None, None).expect("batch");
        assert_eq!(batch.num_rows(), 2);
        let column = |i: usize| batch.column(i).as_any().downcast_ref::<StringArray>().expect("text").iter().map(|v| v.unwrap_or_default().to_string()).collect::<Vec<_>>();
        assert_eq!(column(3), vec!["region", "id"]);
        assert_eq!(batch.column(5).as_any().downcast_ref::<Int32Array>().expect("ints").values().to_vec(), vec![1, 2]);
        assert_eq!(primary_keys("db", &relations, "bids", None, None).expect("batch").num_rows(), 0);
        assert_eq!(primary_keys("db", &relations, "people", Some("other"), None).expect("batch").num_rows(), 0);
    }

    #[test]
    fn sql_info_says_there_are_no_transactions() {
        let info = sql_info().expect("info");
        let batch = info.record_batch([SqlInfo::FlightSqlServerTransaction as u32]).expect("batch");
        assert_eq!(batch.num_rows(), 1);
        assert!(xdbc_type_info().expect("types").record_batch(None).expect("batch").num_rows() >= 14);
    }
}
