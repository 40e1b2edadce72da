//! Result column names as PostgreSQL chooses them (`FigureColname` in its parser): a column's
//! name, a function's name, a cast's type name when its operand has no name of its own, and
//! `?column?` otherwise. DataFusion names a column after the whole expression
//! (`count(*)`, `Int64(1) + Int64(1)`), so every unnamed select item gets PostgreSQL's name as an
//! alias before planning.
//!
//! PostgreSQL allows two result columns with one name (`SELECT 1, 2` is `?column?, ?column?`);
//! DataFusion does not. In the outermost select a repeated name is planned under a stand-in
//! (`name:position`), and [`ColumnNames`] gives the result its real names after planning.

use std::collections::{BTreeMap, HashSet};
use std::ops::ControlFlow;

use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{
    DataType, Expr, Ident, Query, Select, SelectItem, SetExpr, TrimWhereField, VisitMut, VisitorMut,
};

use super::statement::normalize_ident;
use crate::{EngineError, Result};

/// PostgreSQL's name for a column it cannot name otherwise.
pub const UNNAMED: &str = "?column?";

/// The stand-ins planned in place of repeated names, and the names the client sees instead.
#[derive(Debug, Clone, Default)]
pub struct ColumnNames {
    stand_ins: BTreeMap<String, String>,
}

impl ColumnNames {
    /// True when every result column is planned under its own name.
    pub fn is_empty(&self) -> bool {
        self.stand_ins.is_empty()
    }

    /// `schema` with each stand-in replaced by the name it stands for.
    pub fn present(&self, schema: &SchemaRef) -> SchemaRef {
        if self.is_empty() {
            return schema.clone();
        }
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|field| match self.stand_ins.get(field.name()) {
                Some(name) => field.as_ref().clone().with_name(name),
                None => field.as_ref().clone(),
            })
            .collect();
        std::sync::Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
    }

    /// A materialized view's columns must have distinct names, as in PostgreSQL.
    pub fn check_distinct(&self) -> Result<()> {
        match self.stand_ins.values().next() {
            None => Ok(()),
            Some(name) => Err(EngineError::Sqlstate {
                code: "42701",
                message: format!("column \"{name}\" specified more than once"),
            }),
        }
    }
}

/// Names the select items of `query` (and of every query inside it) as PostgreSQL would.
pub fn name_columns(query: &mut Query) -> ColumnNames {
    let mut names = ColumnNames::default();
    if let Some(select) = leftmost_select(&mut query.body) {
        name_outermost(select, &mut names);
    }
    let _ = query.visit(&mut NestedNamer);
    names
}

/// The select whose names a query's result takes (the first branch of a set operation).
fn leftmost_select(body: &mut SetExpr) -> Option<&mut Select> {
    match body {
        SetExpr::Select(select) => Some(select),
        SetExpr::SetOperation { left, .. } => leftmost_select(left),
        _ => None,
    }
}

/// The name a select item gives its column, if it can be told before planning (not for `*`).
fn item_name(item: &SelectItem) -> Option<String> {
    match item {
        SelectItem::UnnamedExpr(expr) => Some(figure(expr).map(|(name, _)| name).unwrap_or_else(|| UNNAMED.into())),
        SelectItem::ExprWithAlias { alias, .. } => Some(normalize_ident(alias)),
        _ => None,
    }
}

fn is_column(expr: &Expr) -> bool {
    match expr {
        // A keyword PostgreSQL reads as a function (see `postgres_meaning`), not a column.
        Expr::Identifier(ident) => !crate::sql::postgres_meaning::is_current_role(ident),
        Expr::CompoundIdentifier(_) => true,
        _ => false,
    }
}

fn alias(item: SelectItem, name: String) -> SelectItem {
    match item {
        SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => {
            SelectItem::ExprWithAlias { expr, alias: Ident::with_quote('"', name) }
        }
        other => other,
    }
}

/// The outermost select: each item gets its name; a name seen before (or any name, when a `*`
/// could bring the same name) is planned under a stand-in and restored in the result.
fn name_outermost(select: &mut Select, names: &mut ColumnNames) {
    let has_wildcard = select.projection.iter().any(|item| item_name(item).is_none());
    let mut seen = HashSet::new();
    for (position, item) in std::mem::take(&mut select.projection).into_iter().enumerate() {
        let Some(name) = item_name(&item) else {
            select.projection.push(item);
            continue;
        };
        let plain_column = matches!(&item, SelectItem::UnnamedExpr(expr) if is_column(expr));
        let first = seen.insert(name.clone());
        let item = if first && !(has_wildcard && !plain_column) {
            if plain_column || matches!(item, SelectItem::ExprWithAlias { .. }) { item } else { alias(item, name) }
        } else {
            let stand_in = format!("{name}:{position}");
            names.stand_ins.insert(stand_in.clone(), name);
            alias(item, stand_in)
        };
        select.projection.push(item);
    }
}

/// Queries inside the statement (subqueries, CTEs, other branches of a set operation): items get
/// PostgreSQL's names where that leaves the names distinct; the rest keep DataFusion's.
struct NestedNamer;

impl VisitorMut for NestedNamer {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        name_set_expr(&mut query.body);
        ControlFlow::Continue(())
    }
}

fn name_set_expr(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => name_nested(select),
        SetExpr::SetOperation { left, right, .. } => {
            name_set_expr(left);
            name_set_expr(right);
        }
        _ => {}
    }
}

fn name_nested(select: &mut Select) {
    if select.projection.iter().any(|item| item_name(item).is_none()) {
        return; // a `*` could bring any name
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for item in &select.projection {
        if let Some(name) = item_name(item) {
            *counts.entry(name).or_default() += 1;
        }
    }
    for item in &mut select.projection {
        if let SelectItem::UnnamedExpr(expr) = item {
            if is_column(expr) {
                continue;
            }
            let name = figure(expr).map(|(name, _)| name).unwrap_or_else(|| UNNAMED.into());
            if counts.get(&name) == Some(&1) {
                *item = alias(item.clone(), name);
            }
        }
    }
}

/// How sure a name is: a column's or a function's (strong) beats a cast's type name (weak).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Strength {
    Weak,
    Strong,
}

/// PostgreSQL's name for an expression, or `None` for `?column?`.
fn figure(expr: &Expr) -> Option<(String, Strength)> {
    let strong = |name: &str| Some((name.to_string(), Strength::Strong));
    match expr {
        Expr::Identifier(ident) => Some((normalize_ident(ident), Strength::Strong)),
        Expr::CompoundIdentifier(parts) => parts.last().map(|ident| (normalize_ident(ident), Strength::Strong)),
        Expr::Function(function) => {
            let last = function.name.0.last()?.as_ident()?;
            Some((normalize_ident(last), Strength::Strong))
        }
        Expr::Nested(inner) => figure(inner),
        Expr::Cast { expr, data_type, .. } => match figure(expr) {
            Some((name, Strength::Strong)) => Some((name, Strength::Strong)),
            _ => Some((type_name(data_type), Strength::Weak)),
        },
        Expr::TypedString(typed) => Some((type_name(&typed.data_type), Strength::Weak)),
        Expr::Interval(_) => Some(("interval".into(), Strength::Weak)),
        Expr::Case { else_result, .. } => match else_result.as_deref().and_then(figure) {
            Some((name, Strength::Strong)) => Some((name, Strength::Strong)),
            _ => Some(("case".into(), Strength::Weak)),
        },
        Expr::Extract { .. } => strong("extract"),
        Expr::Substring { .. } => strong("substring"),
        Expr::Trim { trim_where, .. } => strong(match trim_where {
            Some(TrimWhereField::Leading) => "ltrim",
            Some(TrimWhereField::Trailing) => "rtrim",
            _ => "btrim",
        }),
        Expr::Position { .. } => strong("position"),
        Expr::Overlay { .. } => strong("overlay"),
        Expr::Ceil { .. } => strong("ceil"),
        Expr::Floor { .. } => strong("floor"),
        Expr::Array(_) => strong("array"),
        Expr::Tuple(_) => strong("row"),
        Expr::Exists { negated: false, .. } => strong("exists"),
        Expr::Subquery(query) => match query.body.as_ref() {
            SetExpr::Select(select) => match select.projection.first()? {
                SelectItem::UnnamedExpr(expr) => figure(expr),
                SelectItem::ExprWithAlias { alias, .. } => Some((normalize_ident(alias), Strength::Strong)),
                _ => None,
            },
            _ => None,
        },
        Expr::CompoundFieldAccess { root, .. } => figure(root),
        _ => None,
    }
}

/// The name PostgreSQL gives a type in a cast (`int` is `int4`, `varchar(3)` is `varchar`, an
/// array is its element type's name).
fn type_name(data_type: &DataType) -> String {
    let written = data_type.to_string();
    let base = written.split(['(', '[']).next().unwrap_or("").trim();
    let quoted = base.starts_with('"');
    let last = base.rsplit('.').next().unwrap_or(base).trim_matches('"');
    if quoted {
        return last.to_string();
    }
    let last = last.to_lowercase();
    let precision = || -> Option<u32> { written.split_once('(')?.1.split(')').next()?.trim().parse().ok() };
    match last.as_str() {
        "int" | "integer" | "int4" => "int4",
        "smallint" | "int2" => "int2",
        "bigint" | "int8" => "int8",
        "real" | "float4" => "float4",
        "double precision" | "double" | "float8" => "float8",
        "float" => match precision() {
            Some(bits) if bits <= 24 => "float4",
            _ => "float8",
        },
        "numeric" | "decimal" | "dec" => "numeric",
        "boolean" | "bool" => "bool",
        "varchar" | "character varying" | "char varying" => "varchar",
        "char" | "character" | "bpchar" => "bpchar",
        "timestamp" | "timestamp without time zone" => "timestamp",
        "timestamptz" | "timestamp with time zone" => "timestamptz",
        "time" | "time without time zone" => "time",
        "timetz" | "time with time zone" => "timetz",
        other => return other.to_string(),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn named(sql: &str) -> (String, ColumnNames) {
        let Statement::Query(mut query) = Parser::new(&PostgreSqlDialect {}).try_with_sql(sql).unwrap().parse_statement().unwrap()
        else {
            panic!("not a query")
        };
        let names = name_columns(&mut query);
        (query.to_string(), names)
    }

    #[test]
    fn items_get_postgres_names() {
        // Names as PostgreSQL 15 reports them for the same select list.
        let (sql, names) = named(
            "SELECT x, t.y, count(*), z::text, (x + 1)::text, '1'::int, CAST('a' AS varchar(3)), \
             '1'::double precision, '1'::float(3), date '2020-01-01', interval '1 day', \
             CASE WHEN true THEN 1 END, CASE WHEN true THEN 1 ELSE w END, trim(leading ' ' from 'a'), \
             (SELECT max(y) FROM s), '{1}'::bigint[], \"Q\"(1) FROM t",
        );
        assert!(names.is_empty());
        for alias in [
            "count(*) AS \"count\"",
            "z::TEXT AS \"z\"",
            "(x + 1)::TEXT AS \"text\"",
            "'1'::INT AS \"int4\"",
            "AS \"varchar\"",
            "AS \"float8\"",
            "AS \"float4\"",
            "AS \"date\"",
            "AS \"interval\"",
            "END AS \"case\"",
            "ELSE w END AS \"w\"",
            "AS \"ltrim\"",
            "AS \"max\"",
            "BIGINT[] AS \"int8\"",
            "AS \"Q\"",
        ] {
            assert!(sql.contains(alias), "{alias} not in {sql}");
        }
        assert!(sql.starts_with("SELECT x, t.y, "), "{sql}");
    }

    #[test]
    fn repeated_names_are_planned_under_stand_ins() {
        let (sql, names) = named("SELECT 1, 2, count(*), count(x), x, t.x FROM t");
        assert!(sql.contains("1 AS \"?column?\", 2 AS \"?column?:1\""), "{sql}");
        assert!(sql.contains("count(x) AS \"count:3\""), "{sql}");
        assert!(sql.contains("t.x AS \"x:5\""), "{sql}");
        let schema = std::sync::Arc::new(Schema::new(
            ["?column?", "?column?:1", "count", "count:3", "x", "x:5"]
                .map(|n| Field::new(n, arrow::datatypes::DataType::Int64, true))
                .to_vec(),
        ));
        let presented: Vec<String> = names.present(&schema).fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(presented, ["?column?", "?column?", "count", "count", "x", "x"]);
        assert!(names.check_distinct().is_err());
    }

    #[test]
    fn nested_queries_are_named_where_names_stay_distinct() {
        let (sql, _) = named("SELECT * FROM (SELECT count(*), sum(x), sum(y) FROM t) s");
        assert!(sql.contains("count(*) AS \"count\", sum(x), sum(y)"), "{sql}");
        assert!(sql.starts_with("SELECT * FROM"), "{sql}");
    }
}
