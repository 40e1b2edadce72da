//! The fast path for `INSERT INTO t [(cols)] VALUES (…), …` whose values are plain literals.
//!
//! DataFusion plans a `VALUES` list as one expression per value, with type coercion and
//! optimizer passes over each: a thousand-row INSERT spends almost all its time planning. A
//! literal is what Postgres calls an unknown-typed constant, converted by the column type's
//! input function; that is exactly our text input format, so such rows go straight to Arrow the
//! way COPY rows do. Anything else (expressions, parameters, DEFAULT, a literal whose meaning
//! would depend on a cast) is left to DataFusion.

use arrow::datatypes::DataType;
use datafusion::sql::sqlparser::ast::{self, Expr, SetExpr, UnaryOperator, Value};

use super::statement::{normalize_ident, object_name};
use crate::Result;

/// An INSERT whose rows are all literals.
#[derive(Debug, Clone)]
pub struct LiteralInsert {
    pub table: String,
    /// Target columns as written; empty means all, in order.
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Literal>>,
}

/// A literal's text and what kind of literal it was.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Number(String),
    Text(String),
    Boolean(bool),
}

fn literal(expr: &Expr) -> Option<Literal> {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::Null => Some(Literal::Null),
            Value::Number(n, _) => Some(Literal::Number(n.to_string())),
            Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => Some(Literal::Text(s.clone())),
            Value::Boolean(b) => Some(Literal::Boolean(*b)),
            _ => None,
        },
        Expr::UnaryOp { op: UnaryOperator::Minus, expr } => match literal(expr)? {
            Literal::Number(n) if !n.starts_with('-') => Some(Literal::Number(format!("-{n}"))),
            _ => None,
        },
        Expr::Nested(inner) => literal(inner),
        _ => None,
    }
}

/// Recognises a literal-only INSERT. Returns `None` when DataFusion should plan it.
pub fn literal_insert(statement: &ast::Statement) -> Result<Option<LiteralInsert>> {
    let ast::Statement::Insert(insert) = statement else { return Ok(None) };
    let ast::TableObject::TableName(name) = &insert.table else { return Ok(None) };
    if insert.on.is_some()
        || insert.returning.is_some()
        || insert.overwrite
        || insert.partitioned.is_some()
        || insert.or.is_some()
        || !insert.assignments.is_empty()
    {
        return Ok(None);
    }
    let Some(source) = &insert.source else { return Ok(None) };
    if source.with.is_some() || source.order_by.is_some() || source.limit_clause.is_some() {
        return Ok(None);
    }
    let SetExpr::Values(values) = source.body.as_ref() else { return Ok(None) };
    let mut rows = Vec::with_capacity(values.rows.len());
    for row in &values.rows {
        let mut out = Vec::with_capacity(row.content.len());
        for expr in &row.content {
            match literal(expr) {
                Some(value) => out.push(value),
                None => return Ok(None),
            }
        }
        rows.push(out);
    }
    Ok(Some(LiteralInsert {
        table: object_name(name)?,
        columns: insert
            .columns
            .iter()
            .map(|c| c.0.last().and_then(|p| p.as_ident()).map(normalize_ident).unwrap_or_default())
            .collect(),
        rows,
    }))
}

impl Literal {
    /// Whether this literal converts as its text for a column of `data_type` with the meaning
    /// Postgres gives it; if not, the statement goes to DataFusion.
    pub fn fits(&self, data_type: &DataType) -> bool {
        match self {
            Literal::Null | Literal::Text(_) => true,
            Literal::Number(number) => {
                let integer = number.trim_start_matches('-').bytes().all(|b| b.is_ascii_digit());
                match data_type {
                    DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => integer,
                    DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _) => true,
                    _ => false,
                }
            }
            Literal::Boolean(_) => matches!(data_type, DataType::Boolean),
        }
    }

    /// The text the column type's input function reads; `None` for NULL.
    pub fn text(&self) -> Option<String> {
        match self {
            Literal::Null => None,
            Literal::Number(n) => Some(n.clone()),
            Literal::Text(t) => Some(t.clone()),
            Literal::Boolean(b) => Some(b.to_string()),
        }
    }
}
