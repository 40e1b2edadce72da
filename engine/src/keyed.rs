//! Keyed tables (`CREATE TABLE … PRIMARY KEY`): reading the latest row of every key, and the
//! statements that change rows by key.
//!
//! The log of a keyed table is a changelog: every row is an upsert or, with `_deleted` set, a
//! tombstone carrying the deleted row. [`KeyedTableProvider`] reads it as a table: per key, the
//! row with the highest offset, unless that row is a tombstone. Every version of a key lives in
//! the same partition (the partition key is made of primary key columns), so "highest offset"
//! is well defined.
//!
//! UPDATE, DELETE and `INSERT … ON CONFLICT DO NOTHING` read the current rows and append changes
//! under the table's write lock ([`KeyedWrite`]), so no other write lands between the read and
//! the append.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::{provider_as_source, TableType};
use datafusion::error::Result as DfResult;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{col, lit, not, Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use datafusion::sql::sqlparser::ast;
use streamhouse_storage::segment::{DELETED_COLUMN, OFFSET_COLUMN};
use streamhouse_storage::{Storage, TopicLog};

use crate::provider::{conform_batch, TopicTableProvider};
use crate::sql::statement::{normalize_ident, object_name};
use crate::{EngineError, Result};

/// Name of the row number column of the latest-row plan; never visible.
const VERSION_RANK: &str = "__streamhouse_version_rank";

/// A keyed table as a table: the latest row of every key, with the system columns of that row
/// (or, as the target of an INSERT, the user columns only: the same table read in the INSERT's
/// query resolves to this too, and must still read the latest rows).
pub struct KeyedTableProvider {
    topic: Arc<TopicLog>,
    /// The log with its system columns (and `_deleted`), which reads go through.
    raw: Arc<TopicTableProvider>,
    /// The user columns, which INSERT goes through.
    writer: Arc<TopicTableProvider>,
    schema: SchemaRef,
}

impl fmt::Debug for KeyedTableProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedTableProvider").field("table", &self.topic.name()).finish()
    }
}

impl KeyedTableProvider {
    pub fn new(topic: Arc<TopicLog>, storage: Storage, statement_bytes_max: u64, system_columns: bool) -> Self {
        let schema = if system_columns {
            // Every column of the log but `_deleted` (the last).
            let full = topic.full_schema();
            Arc::new(Schema::new(full.fields().iter().take(full.fields().len() - 1).cloned().collect::<Vec<_>>()))
        } else {
            // As an INSERT target every column is nullable to DataFusion: the sink checks NOT
            // NULL itself, naming the column.
            let user = topic.schema();
            Arc::new(Schema::new(user.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<_>>()))
        };
        let raw = Arc::new(TopicTableProvider::new(topic.clone(), storage.clone(), true, statement_bytes_max));
        let writer = Arc::new(TopicTableProvider::new(topic.clone(), storage, false, statement_bytes_max));
        Self { topic, raw, writer, schema }
    }

    pub fn topic(&self) -> &Arc<TopicLog> {
        &self.topic
    }

    fn key_names(&self) -> Vec<&str> {
        self.topic.primary_key().iter().map(|&i| self.topic.schema().field(i).name().as_str()).collect()
    }

    /// Whether a filter reads key columns only: such a filter keeps or drops every version of a
    /// key alike, so it may run before the latest version is picked.
    fn on_key_only(&self, filter: &Expr) -> bool {
        let keys = self.key_names();
        let columns = filter.column_refs();
        !columns.is_empty() && columns.iter().all(|c| keys.contains(&c.name.as_str())) && !filter.is_volatile()
    }

    /// The latest-row plan: key filters, then rank the versions of each key by offset, newest
    /// first, keep the newest unless it is a tombstone.
    fn current_plan(&self, key_filters: &[Expr], projection: Option<&Vec<usize>>) -> DfResult<LogicalPlan> {
        let mut builder = LogicalPlanBuilder::scan(self.topic.name(), provider_as_source(self.raw.clone()), None)?;
        if let Some(predicate) = conjunction(key_filters.iter().cloned()) {
            builder = builder.filter(predicate)?;
        }
        let rank = row_number()
            .partition_by(self.key_names().into_iter().map(col).collect())
            .order_by(vec![col(OFFSET_COLUMN).sort(false, true)])
            .build()?
            .alias(VERSION_RANK);
        let columns: Vec<Expr> = match projection {
            Some(indices) => indices.iter().map(|&i| col(self.schema.field(i).name())).collect(),
            None => self.schema.fields().iter().map(|f| col(f.name())).collect(),
        };
        builder
            .window(vec![rank])?
            .filter(col(VERSION_RANK).eq(lit(1u64)).and(not(col(DELETED_COLUMN))))?
            .project(columns)?
            .build()
    }
}

#[async_trait]
impl TableProvider for KeyedTableProvider {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| if self.on_key_only(f) { TableProviderFilterPushDown::Inexact } else { TableProviderFilterPushDown::Unsupported })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let key_filters: Vec<Expr> = filters.iter().filter(|f| self.on_key_only(f)).cloned().collect();
        let plan = self.current_plan(&key_filters, projection)?;
        state.create_physical_plan(&plan).await
    }

    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.writer.insert_into(state, input, insert_op).await
    }
}

/// A statement that reads a keyed table's current rows and appends changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyedWrite {
    /// `INSERT … ON CONFLICT DO NOTHING`: rows whose key exists (or came earlier in the same
    /// statement) are skipped.
    InsertIgnore,
    /// `UPDATE`: the rows the query yields are the new versions.
    Update,
    /// `DELETE`: the rows the query yields become tombstones.
    Delete,
}

impl KeyedWrite {
    pub fn tag(self, rows: u64) -> String {
        match self {
            KeyedWrite::InsertIgnore => format!("INSERT 0 {rows}"),
            KeyedWrite::Update => format!("UPDATE {rows}"),
            KeyedWrite::Delete => format!("DELETE {rows}"),
        }
    }
}

fn wrong_object(verb: &str, topic: &str) -> EngineError {
    EngineError::Sqlstate {
        code: "42809",
        message: format!(
            "cannot {verb} topic \"{topic}\": it is append-only (a table created with a PRIMARY KEY can be updated and deleted from)"
        ),
    }
}

/// The one table an UPDATE or DELETE names, with its alias.
fn single_table<'a>(tables: &'a [ast::TableWithJoins], verb: &str) -> Result<(&'a ast::ObjectName, Option<&'a ast::TableAlias>)> {
    match tables {
        [ast::TableWithJoins { relation: ast::TableFactor::Table { name, alias, args: None, .. }, joins }] if joins.is_empty() => {
            Ok((name, alias.as_ref()))
        }
        _ => Err(EngineError::NotSupported(format!("{verb} of anything but one table"))),
    }
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn from_clause(name: &ast::ObjectName, alias: Option<&ast::TableAlias>, selection: Option<&ast::Expr>) -> String {
    let mut sql = format!(" FROM {name}");
    if let Some(alias) = alias {
        sql.push_str(&format!(" AS {alias}"));
    }
    if let Some(selection) = selection {
        sql.push_str(&format!(" WHERE {selection}"));
    }
    sql
}

/// The keyed table an UPDATE or DELETE changes, and the query yielding the changed rows (new
/// versions for UPDATE, deleted rows for DELETE) in the table's column order.
pub(crate) fn rewrite_modification(statement: &ast::Statement, storage: &Storage) -> Result<Option<(Arc<TopicLog>, KeyedWrite, String)>> {
    match statement {
        ast::Statement::Update(update) => {
            if update.from.is_some() || update.returning.is_some() || update.limit.is_some() || !update.order_by.is_empty() {
                return Err(EngineError::NotSupported("UPDATE with FROM, RETURNING, ORDER BY or LIMIT".into()));
            }
            let (name, alias) = single_table(std::slice::from_ref(&update.table), "UPDATE")?;
            let table = object_name(name)?;
            let topic = storage.topic(&table).ok_or_else(|| EngineError::UndefinedTable(table.clone()))?;
            if !topic.is_keyed() {
                return Err(wrong_object("UPDATE", &table));
            }
            let schema = topic.schema();
            let mut values: Vec<Option<&ast::Expr>> = vec![None; schema.fields().len()];
            for assignment in &update.assignments {
                let ast::AssignmentTarget::ColumnName(target) = &assignment.target else {
                    return Err(EngineError::NotSupported("assigning a tuple of columns in UPDATE".into()));
                };
                let column = match target.0.last().and_then(|p| p.as_ident()) {
                    Some(ident) => normalize_ident(ident),
                    None => return Err(EngineError::Syntax(format!("bad UPDATE target {target}"))),
                };
                let index = schema.index_of(&column).map_err(|_| {
                    EngineError::UndefinedColumn(format!("column \"{column}\" of relation \"{table}\" does not exist"))
                })?;
                if topic.primary_key().contains(&index) {
                    return Err(EngineError::Sqlstate {
                        code: "0A000",
                        message: format!(
                            "UPDATE of primary key column \"{column}\" is not supported; DELETE the row and INSERT it under the new key"
                        ),
                    });
                }
                if values[index].is_some() {
                    return Err(EngineError::Syntax(format!("multiple assignments to same column \"{column}\"")));
                }
                if matches!(&assignment.value, ast::Expr::Identifier(i) if i.value.eq_ignore_ascii_case("default")) {
                    return Err(EngineError::NotSupported("SET column = DEFAULT".into()));
                }
                values[index] = Some(&assignment.value);
            }
            let items: Vec<String> = schema
                .fields()
                .iter()
                .zip(&values)
                .map(|(field, value)| match value {
                    Some(value) => format!("({value}) AS {}", quoted(field.name())),
                    None => quoted(field.name()),
                })
                .collect();
            let sql = format!("SELECT {}{}", items.join(", "), from_clause(name, alias, update.selection.as_ref()));
            Ok(Some((topic, KeyedWrite::Update, sql)))
        }
        ast::Statement::Delete(delete) => {
            if delete.using.is_some() || delete.returning.is_some() || delete.limit.is_some() || !delete.order_by.is_empty() || !delete.tables.is_empty() {
                return Err(EngineError::NotSupported("DELETE with USING, RETURNING, ORDER BY or LIMIT".into()));
            }
            let tables = match &delete.from {
                ast::FromTable::WithFromKeyword(tables) | ast::FromTable::WithoutKeyword(tables) => tables,
            };
            let (name, alias) = single_table(tables, "DELETE")?;
            let table = object_name(name)?;
            let topic = storage.topic(&table).ok_or_else(|| EngineError::UndefinedTable(table.clone()))?;
            if !topic.is_keyed() {
                return Err(wrong_object("DELETE from", &table));
            }
            let items: Vec<String> = topic.schema().fields().iter().map(|f| quoted(f.name())).collect();
            let sql = format!("SELECT {}{}", items.join(", "), from_clause(name, alias, delete.selection.as_ref()));
            Ok(Some((topic, KeyedWrite::Delete, sql)))
        }
        _ => Ok(None),
    }
}

/// Checks an `ON CONFLICT` clause against the target: only `DO NOTHING`, only on a keyed table,
/// and a conflict target (if given) must be the primary key. Returns whether it is present.
fn check_on_conflict(insert: &ast::Insert, topic: &TopicLog) -> Result<bool> {
    let Some(on) = &insert.on else { return Ok(false) };
    let ast::OnInsert::OnConflict(conflict) = on else {
        return Err(EngineError::NotSupported("ON DUPLICATE KEY UPDATE (use INSERT, which upserts a keyed table)".into()));
    };
    let no_constraint = || EngineError::Sqlstate {
        code: "42P10",
        message: "there is no unique or exclusion constraint matching the ON CONFLICT specification".into(),
    };
    if !topic.is_keyed() {
        return Err(no_constraint());
    }
    match &conflict.conflict_target {
        None => {}
        Some(ast::ConflictTarget::Columns(columns)) => {
            let mut named: Vec<String> = columns.iter().map(normalize_ident).collect();
            let mut keys: Vec<String> = topic.primary_key().iter().map(|&i| topic.schema().field(i).name().clone()).collect();
            named.sort();
            keys.sort();
            if named != keys {
                return Err(no_constraint());
            }
        }
        Some(ast::ConflictTarget::OnConstraint(_)) => {
            return Err(EngineError::NotSupported("ON CONFLICT ON CONSTRAINT (name the key columns)".into()))
        }
    }
    match &conflict.action {
        ast::OnConflictAction::DoNothing => Ok(true),
        ast::OnConflictAction::DoUpdate(_) => Err(EngineError::Sqlstate {
            code: "0A000",
            message: "ON CONFLICT DO UPDATE is not supported; a plain INSERT into a keyed table replaces the row of an existing key".into(),
        }),
    }
}

/// Keeps the rows of `batches` whose key is not in `existing` (the key columns of the current
/// rows, in key order) and did not come earlier.
fn skip_existing(topic: &TopicLog, batches: Vec<RecordBatch>, existing: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
    let key_types = topic.primary_key().iter().map(|&i| SortField::new(topic.schema().field(i).data_type().clone())).collect();
    let converter = RowConverter::new(key_types)?;
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    for batch in existing {
        seen.extend(converter.convert_columns(batch.columns())?.iter().map(|r| r.as_ref().to_vec()));
    }
    let mut kept = Vec::with_capacity(batches.len());
    for batch in batches {
        let key_columns: Vec<_> = topic.primary_key().iter().map(|&i| batch.column(i).clone()).collect();
        let keys = converter.convert_columns(&key_columns)?;
        let mask: BooleanArray = keys.iter().map(|k| Some(seen.insert(k.as_ref().to_vec()))).collect();
        let batch = filter_record_batch(&batch, &mask)?;
        if batch.num_rows() > 0 {
            kept.push(batch);
        }
    }
    Ok(kept)
}

/// The plan reading the key columns of every current row of a keyed table.
fn current_keys_plan(provider: &KeyedTableProvider) -> DfResult<LogicalPlan> {
    let keys: Vec<usize> = provider.topic.primary_key().to_vec();
    provider.current_plan(&[], Some(&keys))
}

/// The keyed table of an `INSERT … ON CONFLICT DO NOTHING`, after checking the clause; `None`
/// for any other statement.
pub(crate) fn on_conflict_target(statement: &ast::Statement, storage: &Storage) -> Result<Option<Arc<TopicLog>>> {
    let ast::Statement::Insert(insert) = statement else { return Ok(None) };
    if insert.on.is_none() {
        return Ok(None);
    }
    let ast::TableObject::TableName(name) = &insert.table else { return Ok(None) };
    let table = object_name(name)?;
    let topic = storage.topic(&table).ok_or_else(|| EngineError::UndefinedTable(table.clone()))?;
    Ok(check_on_conflict(insert, &topic)?.then_some(topic))
}

/// Runs a keyed-table change planned as `plan` (the rows to upsert, or for DELETE to delete):
/// reads under the table's write lock, then appends.
pub(crate) async fn write(
    context: &SessionContext,
    storage: &Storage,
    bytes_max: u64,
    plan: LogicalPlan,
    topic: &Arc<TopicLog>,
    write: KeyedWrite,
) -> Result<u64> {
    let guard = topic.lock_writes().await;
    let mut stream = context.execute_logical_plan(plan).await?.execute_stream().await?;
    let mut batches = Vec::new();
    let mut bytes = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        bytes += batch.get_array_memory_size() as u64;
        if bytes > bytes_max {
            return Err(EngineError::ProgramLimitExceeded(format!(
                "the statement changes more than statement_bytes_max ({bytes_max} bytes); split it into smaller statements"
            )));
        }
        batches.push(conform_batch(topic, &batch)?);
    }
    if write == KeyedWrite::InsertIgnore {
        let provider = KeyedTableProvider::new(topic.clone(), storage.clone(), bytes_max, true);
        let existing = context.execute_logical_plan(current_keys_plan(&provider)?).await?.collect().await?;
        batches = skip_existing(topic, batches, &existing)?;
    }
    let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
    let deleted = write == KeyedWrite::Delete;
    storage.append_changes(topic, &guard, batches.into_iter().map(|b| (b, deleted)).collect()).await?;
    Ok(rows)
}
