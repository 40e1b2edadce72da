//! Rewrites of a query before DataFusion plans it, where DataFusion would read a construct
//! otherwise than PostgreSQL. Each one either gives the construct PostgreSQL's meaning or
//! refuses it with `0A000`: a wrong answer is worse than an error.
//!
//! - `x = ANY (subquery)` is `x IN (subquery)` and `x <> ALL (subquery)` is `x NOT IN (subquery)`
//!   (the same, NULLs included); other comparisons with ANY/ALL over a subquery are refused
//!   (DataFusion returns no rows for them).
//! - `EXCEPT ALL` and `INTERSECT ALL` are refused (DataFusion's results differ from the SQL
//!   multiset semantics).
//! - A cast to an integer rounds (PostgreSQL rounds numeric half away from zero and float to
//!   even; DataFusion truncates).
//! - A cast to text writes PostgreSQL's output format (`2020-01-01 10:00:00`, not Arrow's
//!   `2020-01-01T10:00:00`); one to `varchar(n)` also cuts the text to n characters; casts to `char(n)` are refused (its
//!   padding and comparison rules are not implemented).
//! - A cast to `bytea` reads PostgreSQL's hex (`\x0001ff`) or escape input, not the text's bytes.
//! - `timestamptz` (the type name) is `timestamp with time zone`; `AT TIME ZONE` is refused.
//! - `generate_series(…)` as a select item returns rows, not an array; `EXISTS (q)` in the select
//!   list is `(SELECT count(*) > 0 FROM … WHERE …)` (DataFusion plans EXISTS only as a filter).
//! - `mod(a, b)` is `a % b` and `sign(x)` is DataFusion's `signum(x)` (PostgreSQL's functions
//!   under DataFusion's names); `pg_catalog.f(…)` is `f(…)`; `OPERATOR(pg_catalog.~)` is the operator `~`; `COLLATE pg_catalog.default` (or `"C"`) is
//!   dropped (text compares byte by byte); other collations are refused.
//! - An integer literal that fits `int4` is `int4` (DataFusion makes every one `int8`), except
//!   where a number is a position (`ORDER BY 1`, `GROUP BY 1`), a row count (`LIMIT`, `OFFSET`,
//!   `FETCH`) or an argument of a table function (`generate_series(1, 5)` in FROM).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, CharacterLength, DataType, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, Ident, ObjectName, ObjectNamePart, Query, SelectItem, SetExpr, SetOperator, SetQuantifier,
    TableFactor, TimezoneInfo, Value, VisitMut, VisitorMut,
};

use crate::{EngineError, Result};

/// The name of the function that rounds a value before a cast to an integer.
pub const ROUND_FOR_INTEGER: &str = "round_for_integer";
/// The name of the function that reads PostgreSQL's bytea input.
pub const BYTEA_INPUT: &str = "byteain";
/// The name of the function that writes a value as PostgreSQL's text output.
pub const TEXT_OUTPUT: &str = "text_output";

/// The name of the function behind PostgreSQL's `information_schema._pg_expandarray`.
pub const EXPAND_ARRAY: &str = "pg_expand_array";
/// The name of the function that rewrites a LIKE pattern's escape character to a backslash.
pub const LIKE_ESCAPE: &str = "like_escape";

/// Whether a LIKE's `ESCAPE` is a backslash, DataFusion's own.
fn is_backslash(escape: &Value) -> bool {
    matches!(escape, Value::SingleQuotedString(text) if text == "\\")
}

/// Applies every rewrite to `query` and the queries inside it.
pub fn give_postgres_meaning(query: &mut Query) -> Result<()> {
    match query.visit(&mut Rewriter { literal_is_a_value: Vec::new(), relation_catalogs: Vec::new() }) {
        ControlFlow::Break(error) => Err(error),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn not_supported(message: &str) -> EngineError {
    EngineError::Sqlstate { code: "0A000", message: message.to_string() }
}

/// `name(args…)`.
pub(crate) fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args.into_iter().map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e))).collect(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

/// `CAST(expr AS data_type)`.
pub(crate) fn cast(expr: Expr, data_type: DataType) -> Expr {
    Expr::Cast { kind: datafusion::sql::sqlparser::ast::CastKind::Cast, expr: Box::new(expr), data_type, array: false, format: None }
}

/// `CASE [operand] WHEN condition THEN result … [ELSE otherwise] END`.
pub(crate) fn case(operand: Option<Expr>, whens: Vec<(Expr, Expr)>, otherwise: Option<Expr>) -> Expr {
    use datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken;
    Expr::Case {
        case_token: AttachedToken::empty(),
        end_token: AttachedToken::empty(),
        operand: operand.map(Box::new),
        conditions: whens.into_iter().map(|(condition, result)| datafusion::sql::sqlparser::ast::CaseWhen { condition, result }).collect(),
        else_result: otherwise.map(Box::new),
    }
}

fn is_integer_type(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int(_)
            | DataType::Integer(_)
            | DataType::Int2(_)
            | DataType::Int4(_)
            | DataType::Int8(_)
            | DataType::SmallInt(_)
            | DataType::BigInt(_)
    ) || matches!(data_type, DataType::Custom(name, _) if ["int2", "int4", "int8"].contains(&name.to_string().to_lowercase().as_str()))
}

fn is_timestamptz(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Custom(name, _) if name.to_string().eq_ignore_ascii_case("timestamptz"))
}

fn length_of(length: &Option<CharacterLength>) -> Option<u64> {
    match length {
        Some(CharacterLength::IntegerLength { length, .. }) => Some(*length),
        _ => None,
    }
}

/// `current_role` unquoted: a keyword PostgreSQL reads as a function (sqlparser, as a column).
pub(crate) fn is_current_role(ident: &Ident) -> bool {
    ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("current_role")
}

/// `ARRAY(SELECT …)`, which sqlparser reads as a function called `array`.
fn is_array_of_subquery(function: &Function) -> bool {
    matches!(function.name.0.as_slice(), [ObjectNamePart::Identifier(name)] if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("array"))
        && matches!(function.args, FunctionArguments::Subquery(_))
}

/// `ARRAY(SELECT e FROM … [ORDER BY k])` as `coalesce((SELECT array_agg(e ORDER BY k) FROM …),
/// make_array())`: the subquery's rows in its order, and an empty array (not NULL) when it has
/// none, as PostgreSQL answers. A correlated subquery stays correlated (psql's `\du` sends one).
/// Only a plain single-column SELECT can be folded so; others are refused.
fn array_of_subquery(mut query: Query) -> Result<Expr> {
    let refused = || not_supported("ARRAY(subquery) is supported over a plain SELECT of one column (no DISTINCT, GROUP BY, LIMIT or WITH)");
    if query.with.is_some() || query.limit_clause.is_some() || query.fetch.is_some() {
        return Err(refused());
    }
    let order_by = match query.order_by.take() {
        None => Vec::new(),
        Some(order_by) => match order_by.kind {
            datafusion::sql::sqlparser::ast::OrderByKind::Expressions(items) => items,
            _ => return Err(refused()),
        },
    };
    let SetExpr::Select(select) = query.body.as_mut() else { return Err(refused()) };
    let plain = select.distinct.is_none() && select.having.is_none() && !is_grouped(select) && select.projection.len() == 1;
    if !plain {
        return Err(refused());
    }
    if yields_no_rows(select) {
        // No rows, ever (pg_policy: there is no row-level security). psql's `\dp` nests a
        // correlated ARRAY inside this one, which the planner could not decorrelate.
        return Ok(call("make_array", Vec::new()));
    }
    let element = match select.projection.remove(0) {
        SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => expr,
        _ => return Err(refused()),
    };
    let Expr::Function(mut aggregate) = call("array_agg", vec![element]) else { unreachable!("call makes a function") };
    if let FunctionArguments::List(list) = &mut aggregate.args {
        if !order_by.is_empty() {
            list.clauses.push(datafusion::sql::sqlparser::ast::FunctionArgumentClause::OrderBy(order_by));
        }
    }
    select.projection.push(SelectItem::UnnamedExpr(Expr::Function(aggregate)));
    Ok(call("coalesce", vec![Expr::Subquery(Box::new(query)), call("make_array", Vec::new())]))
}

/// The catalog functions whose first argument is an OID.
const OID_FUNCTIONS: [&str; 14] = [
    "obj_description",
    "pg_table_size",
    "pg_relation_size",
    "pg_total_relation_size",
    "pg_type_is_visible",
    "pg_tablespace_location",
    "pg_relation_is_publishable",
    "pg_table_is_visible",
    "pg_get_userbyid",
    "format_type",
    "pg_get_indexdef",
    "pg_get_constraintdef",
    "pg_get_statisticsobjdef_columns",
    "pg_get_viewdef",
];

/// The argument types of the catalog functions registered with fixed signatures, and the
/// values of their optional trailing arguments (PostgreSQL's defaults).
fn catalog_signature(function: &Function) -> Option<(&'static [DataType], &'static [&'static str])> {
    const INDEXDEF: &[DataType] = &[DataType::BigInt(None), DataType::Int(None), DataType::Boolean];
    const CONSTRAINTDEF: &[DataType] = &[DataType::BigInt(None), DataType::Boolean];
    if function_named(function, "pg_get_indexdef") {
        Some((INDEXDEF, &["0", "false"]))
    } else if function_named(function, "pg_get_constraintdef") {
        Some((CONSTRAINTDEF, &["false"]))
    } else {
        None
    }
}

/// A catalog function's call with each argument cast to the type its signature takes (a bound
/// parameter or `ord + 1` is not coerced to a fixed signature by DataFusion), and its optional
/// trailing arguments written out.
fn typed_catalog_arguments(mut function: Function) -> Expr {
    let Some((types, defaults)) = catalog_signature(&function) else { return Expr::Function(function) };
    let Some(mut arguments) = plain_arguments(&function) else { return Expr::Function(function) };
    let optional_from = types.len() - defaults.len();
    if arguments.len() < optional_from || arguments.len() > types.len() {
        return Expr::Function(function);
    }
    arguments.extend(defaults[arguments.len() - optional_from..].iter().map(|value| match *value {
        "false" => Expr::value(Value::Boolean(false)),
        number => Expr::value(Value::Number(number.to_string(), false)),
    }));
    let typed = arguments.into_iter().zip(types).map(|(argument, data_type)| cast(argument, data_type.clone()));
    if let FunctionArguments::List(list) = &mut function.args {
        list.args = typed.map(|expr| FunctionArg::Unnamed(FunctionArgExpr::Expr(expr))).collect();
    }
    Expr::Function(function)
}

/// `pg_catalog.int2` as `int2`: a built-in type named with its schema (`None` for any other).
fn unqualified_catalog_type(data_type: &DataType) -> Result<Option<DataType>> {
    let DataType::Custom(name, modifiers) = data_type else { return Ok(None) };
    let [schema, unqualified] = name.0.as_slice() else { return Ok(None) };
    if !modifiers.is_empty() || !schema.as_ident().is_some_and(|s| s.value.eq_ignore_ascii_case("pg_catalog")) {
        return Ok(None);
    }
    let text = unqualified.to_string();
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    let parsed = datafusion::sql::sqlparser::parser::Parser::new(&dialect)
        .try_with_sql(&text)
        .and_then(|mut parser| parser.parse_data_type())
        .map_err(|e| EngineError::Syntax(format!("type \"{text}\": {e}")))?;
    // `oid` is a type of its own there (read as a bigint by `rewrite_cast`).
    Ok((!matches!(parsed, DataType::Custom(..)) || text.eq_ignore_ascii_case("oid")).then_some(parsed))
}

/// `regclass`, `regtype`, `regnamespace` or `regproc` (PostgreSQL's OID alias types), however written.
fn registry_type(data_type: &DataType) -> Option<&'static str> {
    let name = match data_type {
        DataType::Regclass => return Some("regclass"),
        DataType::Custom(name, modifiers) if modifiers.is_empty() => name.0.last()?.to_string().to_ascii_lowercase(),
        _ => return None,
    };
    ["regclass", "regtype", "regnamespace", "regproc"].into_iter().find(|known| *known == name)
}

/// A cast to an OID alias type. From an OID it is the object's name as PostgreSQL prints it
/// (text here: the same characters on the wire, under text's type OID); from a relation's name,
/// `'bids'::regclass`, the relation's OID.
fn registry_cast(inner: Expr, registry: &str) -> Result<Expr> {
    // A parameter (`$1::regclass`) is a name too: clients bind names there, never OIDs.
    let is_name = quoted_text(&inner).is_some() || matches!(&inner, Expr::Value(v) if matches!(v.value, Value::Placeholder(_)));
    Ok(match (registry, is_name) {
        ("regclass", true) => call("pg_regclass_oid", vec![inner]),
        ("regclass", false) => call("pg_regclass_name", vec![inner]),
        ("regtype", true) => call("pg_regtype_oid", vec![inner]),
        ("regtype", false) => call("format_type", vec![inner, Expr::value(Value::Null)]),
        ("regnamespace", false) => call("pg_regnamespace_name", vec![inner]),
        // A function's name (`'pg_catalog.array_in'::regproc`) compares with the catalog's
        // function name columns (`pg_type.typinput`), which hold names.
        ("regproc", true) => {
            let name = quoted_text(&inner).unwrap_or_default();
            Expr::value(Value::SingleQuotedString(name.strip_prefix("pg_catalog.").unwrap_or(name).to_string()))
        }
        _ => return Err(not_supported(&format!("a type or schema name cast to {registry} is not supported: compare with pg_type.typname or pg_namespace.nspname"))),
    })
}

/// Whether a table factor names a catalog that has no rows, ever (see [`crate::pg_catalog`]:
/// policies, column defaults, collations, extended statistics, publications, inheritance).
fn is_always_empty_catalog(factor: &TableFactor) -> bool {
    let TableFactor::Table { name, args: None, .. } = factor else { return false };
    let table = match name.0.as_slice() {
        [table] => table,
        [_, table] if is_in_pg_catalog(name) => table,
        _ => return false,
    };
    crate::pg_catalog::ALWAYS_EMPTY.contains(&table.to_string().to_ascii_lowercase().as_str())
}

/// Whether a SELECT has GROUP BY.
fn is_grouped(select: &datafusion::sql::sqlparser::ast::Select) -> bool {
    !matches!(&select.group_by, datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty())
}

/// Whether a SELECT has no rows whatever its conditions: it reads an always-empty catalog in its
/// FROM list or in an inner join (not an outer join's optional side), and has no GROUP BY-less
/// aggregate that would make one row of nothing.
fn reads_always_empty_catalog(select: &datafusion::sql::sqlparser::ast::Select) -> bool {
    use datafusion::sql::sqlparser::ast::JoinOperator;
    select.from.iter().any(|from| {
        is_always_empty_catalog(&from.relation)
            || from.joins.iter().any(|join| {
                matches!(join.join_operator, JoinOperator::Inner(_) | JoinOperator::Join(_) | JoinOperator::CrossJoin(_))
                    && is_always_empty_catalog(&join.relation)
            })
    })
}

/// Whether a SELECT has no rows, whatever its conditions: a plain SELECT (no grouping, no
/// aggregate outside its subqueries, which would make one row of nothing) over an always-empty
/// catalog.
fn yields_no_rows(select: &datafusion::sql::sqlparser::ast::Select) -> bool {
    !is_grouped(select) && select.having.is_none() && !select.projection.iter().any(calls_other_than_catalog_functions) && reads_always_empty_catalog(select)
}

/// A scalar subquery that has no rows (it is NULL, as in PostgreSQL). psql's `\d name` asks for
/// column defaults and collations so, correlated in ways the planner cannot decorrelate.
fn is_empty_scalar_subquery(query: &Query) -> bool {
    matches!(query.body.as_ref(), SetExpr::Select(select) if yields_no_rows(select))
}

/// A scalar subquery that does not aggregate: one select item without any aggregate, no
/// grouping, DISTINCT, ordering or row limit. Its item is wrapped in
/// [`crate::single_value::SINGLE_VALUE`], which gives PostgreSQL's answer for zero, one and more
/// rows and lets DataFusion decorrelate it. Only items calling the catalog's scalar functions are
/// taken: any other function might be an aggregate.
fn is_unaggregated_scalar_subquery(query: &Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else { return false };
    query.order_by.is_none()
        && query.limit_clause.is_none()
        && query.fetch.is_none()
        && select.distinct.is_none()
        && !is_grouped(select)
        && select.having.is_none()
        && select.named_window.is_empty()
        && matches!(select.projection.as_slice(), [item @ (SelectItem::UnnamedExpr(_) | SelectItem::ExprWithAlias { .. })]
            if !calls_other_than_catalog_functions(item))
}

/// The subquery of `x op ANY/ALL (subquery)` as written: its rows are a set, not one value, so
/// the [`crate::single_value::SINGLE_VALUE`] the subquery got as an expression (its node is
/// rewritten before the comparison around it) comes off again.
fn without_single_value(mut query: Box<Query>) -> Box<Query> {
    if let SetExpr::Select(select) = query.body.as_mut() {
        if let Some(SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. }) = select.projection.first_mut() {
            if let Expr::Function(function) = expr {
                if let Some([value]) = function_named(function, crate::single_value::SINGLE_VALUE).then(|| plain_arguments(function)).flatten().as_deref() {
                    *expr = value.clone();
                }
            }
        }
    }
    query
}

/// In a plain SELECT over an always-empty catalog, the subqueries of its select list are never
/// run: they become NULL, so that one the planner could not decorrelate (psql's `\d name` asks
/// for policies' roles so) does not fail a query that has no rows.
fn skip_subqueries_over_nothing(query: &mut Query) {
    skip_subqueries_in_branches(query.body.as_mut());
}

fn skip_subqueries_in_branches(body: &mut SetExpr) {
    let select = match body {
        SetExpr::Select(select) => select,
        SetExpr::SetOperation { left, right, .. } => {
            skip_subqueries_in_branches(left);
            skip_subqueries_in_branches(right);
            return;
        }
        _ => return,
    };
    if !yields_no_rows(select) {
        return;
    }
    for item in &mut select.projection {
        let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(item, |expr| {
            if matches!(expr, Expr::Subquery(_)) {
                *expr = Expr::value(Value::Null);
            }
            ControlFlow::<()>::Continue(())
        });
    }
}

/// Whether a select item calls, outside its subqueries (which aggregate on their own), a
/// function other than the catalog's scalar functions (which are known not to aggregate); see
/// [`contains_aggregate_or_window`].
fn calls_other_than_catalog_functions(item: &SelectItem) -> bool {
    // Catalog functions, and the ones this rewrite makes of casts (`polcmd::text`).
    const SCALAR: [&str; 17] = [
        "pg_get_expr",
        "json_build_object",
        "pg_collation_is_visible",
        "pg_get_serial_sequence",
        "format_type",
        "pg_get_userbyid",
        "quote_ident",
        "array_to_string",
        "coalesce",
        "make_array",
        "pg_get_statisticsobjdef_columns",
        TEXT_OUTPUT,
        "numeric_ceil",
        "numeric_floor",
        "numeric_trunc",
        ROUND_FOR_INTEGER,
        BYTEA_INPUT,
    ];
    // The visitor reaches into subqueries before it sees them: take them out first.
    let mut item = item.clone();
    let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(&mut item, |expr| {
        if matches!(expr, Expr::Subquery(_)) {
            *expr = Expr::value(Value::Null);
        }
        ControlFlow::<()>::Continue(())
    });
    datafusion::sql::sqlparser::ast::visit_expressions_mut(&mut item, |expr| match expr {
        Expr::Function(function) if !SCALAR.iter().any(|name| function_named(function, name)) || function.over.is_some() => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

struct Rewriter {
    /// One entry a query or table factor being visited: whether an integer literal there is a
    /// value (false among a table function's arguments).
    literal_is_a_value: Vec<bool>,
    /// One entry a query being visited: the names `pg_class` goes by in its FROM list.
    relation_catalogs: Vec<Vec<String>>,
}

/// `int4`, the type a narrowed literal is cast to. Written `INT4` so that the positions where a
/// number must stay a bare number can tell a narrowed literal from a user's cast (`INT`).
fn narrowed(number: Expr) -> Expr {
    Expr::Cast {
        kind: datafusion::sql::sqlparser::ast::CastKind::DoubleColon,
        expr: Box::new(number),
        data_type: DataType::Int4(None),
        array: false,
        format: None,
    }
}

/// A narrowed literal back to the bare number it was.
fn unnarrow(expr: &mut Expr) {
    if let Expr::Cast { expr: inner, data_type: DataType::Int4(None), .. } = expr {
        if matches!(inner.as_ref(), Expr::Value(v) if matches!(v.value, Value::Number(..))) {
            let number = std::mem::replace(inner.as_mut(), Expr::value(Value::Null));
            *expr = number;
        }
    }
}

/// Positions and counts of a query: numbers there stay bare.
fn unnarrow_positions(query: &mut Query) {
    if let Some(order_by) = &mut query.order_by {
        if let datafusion::sql::sqlparser::ast::OrderByKind::Expressions(items) = &mut order_by.kind {
            for item in items {
                unnarrow(&mut item.expr);
            }
        }
    }
    match &mut query.limit_clause {
        Some(datafusion::sql::sqlparser::ast::LimitClause::LimitOffset { limit, offset, .. }) => {
            if let Some(limit) = limit {
                unnarrow(limit);
            }
            if let Some(offset) = offset {
                unnarrow(&mut offset.value);
            }
        }
        Some(datafusion::sql::sqlparser::ast::LimitClause::OffsetCommaLimit { offset, limit }) => {
            unnarrow(offset);
            unnarrow(limit);
        }
        None => {}
    }
    if let Some(fetch) = &mut query.fetch {
        if let Some(quantity) = &mut fetch.quantity {
            unnarrow(quantity);
        }
    }
    unnarrow_group_by(&mut query.body);
}

/// A window frame's offsets (`ROWS BETWEEN 1 PRECEDING …`): DataFusion takes only bare numbers.
fn unnarrow_frame(spec: &mut datafusion::sql::sqlparser::ast::WindowSpec) {
    use datafusion::sql::sqlparser::ast::WindowFrameBound;
    let Some(frame) = &mut spec.window_frame else { return };
    for bound in std::iter::once(&mut frame.start_bound).chain(frame.end_bound.as_mut()) {
        if let WindowFrameBound::Preceding(Some(offset)) | WindowFrameBound::Following(Some(offset)) = bound {
            unnarrow(offset);
        }
    }
}

fn unnarrow_group_by(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            for definition in &mut select.named_window {
                if let datafusion::sql::sqlparser::ast::NamedWindowExpr::WindowSpec(spec) = &mut definition.1 {
                    unnarrow_frame(spec);
                }
            }
            if let datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(items, _) = &mut select.group_by {
                for item in items {
                    unnarrow(item);
                }
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            unnarrow_group_by(left);
            unnarrow_group_by(right);
        }
        _ => {}
    }
}

impl Rewriter {
    fn rewrite_cast(&self, inner: Expr, data_type: DataType, rebuild: impl Fn(Expr, DataType) -> Expr) -> Result<Expr> {
        // `x::pg_catalog.text` (psql writes its casts so): the types live in pg_catalog.
        if let Some(unqualified) = unqualified_catalog_type(&data_type)? {
            return self.rewrite_cast(inner, unqualified, rebuild);
        }
        // `x::pg_catalog.int2[]`: the element type unqualified likewise.
        if let DataType::Array(datafusion::sql::sqlparser::ast::ArrayElemTypeDef::SquareBracket(element, size)) = &data_type {
            if let Some(unqualified) = unqualified_catalog_type(element)? {
                let array = DataType::Array(datafusion::sql::sqlparser::ast::ArrayElemTypeDef::SquareBracket(Box::new(unqualified), *size));
                return self.rewrite_cast(inner, array, rebuild);
            }
        }
        if let Some(registry) = registry_type(&data_type) {
            return registry_cast(inner, registry);
        }
        // `'16389'::oid` (psql's `\d+` of a view): OIDs are bigints in the catalog here.
        if matches!(&data_type, DataType::Custom(name, modifiers) if modifiers.is_empty()
            && matches!(name.0.iter().map(|p| p.to_string().to_ascii_lowercase()).collect::<Vec<_>>().as_slice(), [oid] if oid == "oid"))
        {
            return Ok(rebuild(inner, DataType::BigInt(None)));
        }
        match &data_type {
            DataType::Char(_) | DataType::Character(_) => {
                Err(not_supported("char(n) is not supported: use text or varchar(n)"))
            }
            DataType::Varchar(length) | DataType::CharacterVarying(length) | DataType::CharVarying(length) => {
                let text = call(TEXT_OUTPUT, vec![inner]);
                match length_of(length) {
                    Some(n) => Ok(call("left", vec![text, Expr::value(Value::Number(n.to_string(), false))])),
                    None => Ok(text),
                }
            }
            DataType::Text | DataType::String(None) => Ok(call(TEXT_OUTPUT, vec![inner])),
            DataType::Bytea => Ok(call(BYTEA_INPUT, vec![inner])),
            // An integer constant needs no rounding (and stays a constant the planner can fold).
            data_type if is_integer_type(data_type) && is_integer_literal(&inner) => Ok(rebuild(inner, data_type.clone())),
            data_type if is_integer_type(data_type) => Ok(rebuild(call(ROUND_FOR_INTEGER, vec![inner]), data_type.clone())),
            data_type if is_timestamptz(data_type) => Ok(rebuild(inner, DataType::Timestamp(None, TimezoneInfo::WithTimeZone))),
            _ => Ok(rebuild(inner, data_type)),
        }
    }

    /// `ARRAY(SELECT … FROM unnest(c.reloptions) x)` where `c` is `pg_class` in an enclosing
    /// query (psql's `\d+ name` asks so for the options of a table's TOAST table): a relation here
    /// never has options (`reloptions` is NULL), so its rows are none. DataFusion cannot plan
    /// an `unnest` of an outer column in FROM.
    fn unnests_relation_options(&self, function: &Function) -> bool {
        let FunctionArguments::Subquery(query) = &function.args else { return false };
        let SetExpr::Select(select) = query.body.as_ref() else { return false };
        let [from] = select.from.as_slice() else { return false };
        if !from.joins.is_empty() {
            return false;
        }
        let TableFactor::Table { name, args: Some(args), .. } = &from.relation else { return false };
        let named_unnest = name.0.last().and_then(|part| part.as_ident()).is_some_and(|i| i.value.eq_ignore_ascii_case("unnest"));
        let [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::CompoundIdentifier(column)))] = args.args.as_slice() else { return false };
        let [relation, options] = column.as_slice() else { return false };
        named_unnest
            && options.value.eq_ignore_ascii_case("reloptions")
            && self.relation_catalogs.iter().any(|names| names.iter().any(|n| n.eq_ignore_ascii_case(&relation.value)))
    }

    fn rewrite(&self, expr: Expr) -> Result<Expr> {
        Ok(match expr {
            Expr::Function(function) if is_array_of_subquery(&function) && self.unnests_relation_options(&function) => {
                cast(call("make_array", Vec::new()), DataType::Array(datafusion::sql::sqlparser::ast::ArrayElemTypeDef::SquareBracket(Box::new(DataType::Text), None)))
            }
            Expr::Function(function) if is_array_of_subquery(&function) => {
                let FunctionArguments::Subquery(query) = function.args else { unreachable!("matched above") };
                array_of_subquery(*query)?
            }
            // A keyword in PostgreSQL, like current_user (which sqlparser reads as a function).
            Expr::Identifier(ident) if is_current_role(&ident) => {
                let Expr::Function(mut function) = call("current_role", Vec::new()) else { unreachable!("call makes a function") };
                function.args = FunctionArguments::None;
                Expr::Function(function)
            }
            Expr::AnyOp { left, compare_op, right, .. } if matches!(right.as_ref(), Expr::Subquery(_)) => {
                let Expr::Subquery(subquery) = *right else { unreachable!("matched above") };
                let subquery = without_single_value(subquery);
                match compare_op {
                    BinaryOperator::Eq => Expr::InSubquery { expr: left, subquery, negated: false },
                    _ => return Err(not_supported("ANY (subquery) is supported with = only; write the condition with EXISTS")),
                }
            }
            Expr::AllOp { left, compare_op, right } if matches!(right.as_ref(), Expr::Subquery(_)) => {
                let Expr::Subquery(subquery) = *right else { unreachable!("matched above") };
                let subquery = without_single_value(subquery);
                match compare_op {
                    BinaryOperator::NotEq => Expr::InSubquery { expr: left, subquery, negated: true },
                    _ => return Err(not_supported("ALL (subquery) is supported with <> only; write the condition with NOT EXISTS")),
                }
            }
            Expr::Subquery(query) if is_empty_scalar_subquery(&query) => Expr::value(Value::Null),
            Expr::Subquery(mut query) if is_unaggregated_scalar_subquery(&query) => {
                if let SetExpr::Select(select) = query.body.as_mut() {
                    if let Some(SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. }) = select.projection.first_mut() {
                        let value = std::mem::replace(expr, Expr::value(Value::Null));
                        *expr = call(crate::single_value::SINGLE_VALUE, vec![value]);
                    }
                }
                Expr::Subquery(query)
            }
            // DataFusion's LIKE escapes with a backslash only: a pattern written with another
            // escape character is translated to one written with backslashes.
            Expr::Like { negated, any, expr, pattern, escape_char: Some(escape) } if !is_backslash(&escape.value) => Expr::Like {
                negated,
                any,
                expr,
                pattern: Box::new(call(LIKE_ESCAPE, vec![*pattern, Expr::Value(escape)])),
                escape_char: None,
            },
            Expr::ILike { negated, any, expr, pattern, escape_char: Some(escape) } if !is_backslash(&escape.value) => Expr::ILike {
                negated,
                any,
                expr,
                pattern: Box::new(call(LIKE_ESCAPE, vec![*pattern, Expr::Value(escape)])),
                escape_char: None,
            },
            // `_pg_expandarray(a)`: each element with its position, as records `(x, n)`.
            Expr::Function(mut function) if is_expand_array_call(&function) => {
                function.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(EXPAND_ARRAY))]);
                Expr::Function(function)
            }
            // `(record).field`: the field of a struct.
            Expr::CompoundFieldAccess { root, access_chain }
                if access_chain.iter().all(|access| matches!(access, datafusion::sql::sqlparser::ast::AccessExpr::Dot(Expr::Identifier(_)))) =>
            {
                access_chain.into_iter().fold(*root, |record, access| {
                    let datafusion::sql::sqlparser::ast::AccessExpr::Dot(Expr::Identifier(field)) = access else { return record };
                    call("get_field", vec![record, Expr::value(Value::SingleQuotedString(field.value))])
                })
            }
            Expr::AtTimeZone { .. } => return Err(not_supported("AT TIME ZONE is not supported yet")),
            Expr::Function(mut function) if matches!(function.over, Some(datafusion::sql::sqlparser::ast::WindowType::WindowSpec(_))) => {
                if let Some(datafusion::sql::sqlparser::ast::WindowType::WindowSpec(spec)) = &mut function.over {
                    unnarrow_frame(spec);
                }
                let over = function.over.take();
                let Expr::Function(mut rewritten) = self.rewrite(Expr::Function(function))? else {
                    return Err(EngineError::Internal("a window function's call was rewritten into another expression".into()));
                };
                rewritten.over = over;
                Expr::Function(rewritten)
            }
            Expr::Function(mut function) if is_in_pg_catalog(&function.name) => {
                function.name.0.remove(0);
                self.rewrite(Expr::Function(function))?
            }
            Expr::Function(function) if function_named(&function, "mod") => match plain_arguments(&function).as_deref() {
                Some([left, right]) => Expr::Nested(Box::new(Expr::BinaryOp {
                    left: Box::new(left.clone()),
                    op: BinaryOperator::Modulo,
                    right: Box::new(right.clone()),
                })),
                _ => Expr::Function(function),
            },
            // Comments on columns and shared objects: there are none (no COMMENT ON).
            Expr::Function(function) if ["col_description", "shobj_description"].iter().any(|name| function_named(&function, name)) => {
                cast(Expr::value(Value::Null), DataType::Text)
            }
            // `has_schema_privilege(schema, privilege)` asks for the current user.
            Expr::Function(function) if function_named(&function, "has_schema_privilege") => match plain_arguments(&function).as_deref() {
                Some([schema, privilege]) => call("has_schema_privilege", vec![call("current_user", Vec::new()), schema.clone(), privilege.clone()]),
                _ => Expr::Function(function),
            },
            // `has_table_privilege(table, privilege)` asks for the current user.
            Expr::Function(function) if function_named(&function, "has_table_privilege") => match plain_arguments(&function).as_deref() {
                Some([table, privilege]) => call("has_table_privilege", vec![call("current_user", Vec::new()), table.clone(), privilege.clone()]),
                _ => Expr::Function(function),
            },
            // `pg_get_viewdef(view, pretty)`: the query is kept as written, pretty or not.
            Expr::Function(function) if function_named(&function, "pg_get_viewdef") => match plain_arguments(&function).as_deref() {
                Some([view, _pretty]) => call("pg_get_viewdef", vec![view.clone()]),
                _ => Expr::Function(function),
            },
            // `pg_get_expr(expr, relation, pretty)`: the text is kept as written, pretty or not.
            Expr::Function(function) if function_named(&function, "pg_get_expr") => match plain_arguments(&function).as_deref() {
                Some([expression, relation, _pretty]) => call("pg_get_expr", vec![expression.clone(), relation.clone()]),
                _ => Expr::Function(function),
            },
            // `pg_relation_is_publishable('16386')`: a quoted OID is an OID, as PostgreSQL reads an
            // unknown-typed literal given where an oid is expected.
            Expr::Function(mut function) if OID_FUNCTIONS.iter().any(|name| function_named(&function, name)) => {
                if let FunctionArguments::List(list) = &mut function.args {
                    for argument in &mut list.args {
                        if let datafusion::sql::sqlparser::ast::FunctionArg::Unnamed(datafusion::sql::sqlparser::ast::FunctionArgExpr::Expr(expr)) = argument {
                            if let Some(oid) = quoted_text(expr).and_then(|text| text.trim().parse::<i64>().ok()) {
                                *expr = Expr::value(Value::Number(oid.to_string(), false));
                            }
                        }
                    }
                }
                typed_catalog_arguments(function)
            }
            // Arrays here always start at 1: the upper bound is the length.
            Expr::Function(mut function) if function_named(&function, "array_upper") => {
                function.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new("array_length"))]);
                // An int4, as PostgreSQL's (DataFusion's length is unsigned); a bigint among a
                // table function's arguments (`generate_series(1, array_upper(a, 1))`), which
                // DataFusion takes as bigints only.
                let in_table_function = self.literal_is_a_value.last() == Some(&false);
                cast(Expr::Function(function), if in_table_function { DataType::BigInt(None) } else { DataType::Int(None) })
            }
            // Arrays here always start at 1: the lower bound is 1, NULL for an empty array.
            Expr::Function(function) if function_named(&function, "array_lower") => match plain_arguments(&function).as_deref() {
                Some([array, dimension]) => {
                    let in_table_function = self.literal_is_a_value.last() == Some(&false);
                    let length = call("array_length", vec![array.clone(), dimension.clone()]);
                    let condition = Expr::BinaryOp { left: Box::new(length), op: BinaryOperator::Gt, right: Box::new(Expr::value(Value::Number("0".into(), false))) };
                    let one = case(None, vec![(condition, Expr::value(Value::Number("1".into(), false)))], None);
                    cast(one, if in_table_function { DataType::BigInt(None) } else { DataType::Int(None) })
                }
                _ => Expr::Function(function),
            },
            // `ceil(x)` and `floor(x)`, which sqlparser reads as expressions of their own.
            Expr::Ceil { expr, field: datafusion::sql::sqlparser::ast::CeilFloorKind::DateTimeField(datafusion::sql::sqlparser::ast::DateTimeField::NoDateTime) } => {
                call("numeric_ceil", vec![*expr])
            }
            Expr::Floor { expr, field: datafusion::sql::sqlparser::ast::CeilFloorKind::DateTimeField(datafusion::sql::sqlparser::ast::DateTimeField::NoDateTime) } => {
                call("numeric_floor", vec![*expr])
            }
            // `ceil(x)`, `floor(x)`, `trunc(x)` of a numeric are whole numbers of scale 0.
            Expr::Function(mut function)
                if ["ceil", "ceiling", "floor", "trunc"].iter().any(|name| function_named(&function, name)) && plain_arguments(&function).is_some_and(|a| a.len() == 1) =>
            {
                let name = crate::casts::numeric_integral_name(&function.name.to_string()).unwrap_or("numeric_trunc");
                function.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]);
                Expr::Function(function)
            }
            Expr::Function(mut function) if function_named(&function, "sign") => {
                function.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new("signum"))]);
                Expr::Function(function)
            }
            // `polroles <> '{0}'` (psql's \dp): an array literal takes the other side's type in
            // PostgreSQL; one of integers is an array of them here.
            Expr::BinaryOp { left, op: op @ (BinaryOperator::Eq | BinaryOperator::NotEq), right } if integer_array_literal(&right).is_some() => {
                let array = integer_array_literal(&right).unwrap_or(*right);
                Expr::BinaryOp { left, op, right: Box::new(array) }
            }
            Expr::BinaryOp { left, op: BinaryOperator::PGCustomBinaryOperator(parts), right } => {
                Expr::BinaryOp { left, op: qualified_operator(&parts)?, right }
            }
            Expr::Collate { expr, collation } => {
                let name = collation.to_string().to_lowercase();
                if !["pg_catalog.default", "default", "\"c\"", "\"posix\"", "pg_catalog.\"c\""].contains(&name.as_str()) {
                    return Err(not_supported(&format!("collation {collation} is not supported (text compares byte by byte, as with \"C\")")));
                }
                *expr
            }
            Expr::Cast { kind, expr, data_type, array, format } => {
                self.rewrite_cast(*expr, data_type, |expr, data_type| Expr::Cast {
                    kind: kind.clone(),
                    expr: Box::new(expr),
                    data_type,
                    array,
                    format: format.clone(),
                })?
            }
            Expr::TypedString(typed) => {
                let literal = Expr::Value(typed.value.clone());
                match &typed.data_type {
                    DataType::Bytea | DataType::Char(_) | DataType::Character(_) | DataType::Varchar(_) => {
                        self.rewrite_cast(literal, typed.data_type.clone(), cast)?
                    }
                    data_type if is_timestamptz(data_type) => {
                        let mut typed = typed;
                        typed.data_type = DataType::Timestamp(None, TimezoneInfo::WithTimeZone);
                        Expr::TypedString(typed)
                    }
                    _ => Expr::TypedString(typed),
                }
            }
            Expr::Value(value) if self.literal_is_a_value.last() != Some(&false) && fits_int4(&value.value) => {
                narrowed(Expr::Value(value))
            }
            // PostgreSQL folds the minus into the constant: `-2147483648` is an int4.
            Expr::UnaryOp { op: datafusion::sql::sqlparser::ast::UnaryOperator::Minus, expr }
                if self.literal_is_a_value.last() != Some(&false) && negated_int4(&expr).is_some() =>
            {
                let text = negated_int4(&expr).unwrap_or_default();
                narrowed(Expr::value(Value::Number(text, false)))
            }
            other => other,
        })
    }
}

/// The text of a quoted literal (`'…'`).
fn quoted_text(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::SingleQuotedString(text) => Some(text),
            _ => None,
        },
        _ => None,
    }
}

/// `'{1,2}'` as `make_array(1, 2)`: a string literal holding a PostgreSQL array of integers.
fn integer_array_literal(expr: &Expr) -> Option<Expr> {
    let inner = quoted_text(expr)?.trim().strip_prefix('{')?.strip_suffix('}')?;
    let elements: Vec<Expr> = inner
        .split(',')
        .map(|element| element.trim().parse::<i64>().ok().map(|n| Expr::value(Value::Number(n.to_string(), false))))
        .collect::<Option<_>>()?;
    Some(call("make_array", elements))
}

/// An integer literal, narrowed or not.
fn is_integer_literal(expr: &Expr) -> bool {
    match expr {
        Expr::Value(value) => matches!(&value.value, Value::Number(text, false) if text.parse::<i64>().is_ok()),
        Expr::Cast { expr, data_type: DataType::Int4(None), .. } => is_integer_literal(expr),
        Expr::UnaryOp { op: datafusion::sql::sqlparser::ast::UnaryOperator::Minus, expr } => is_integer_literal(expr),
        _ => false,
    }
}

/// `-n` as text, for an integer literal `n` (narrowed or not) whose negation fits `int4`.
fn negated_int4(expr: &Expr) -> Option<String> {
    let number = match expr {
        Expr::Value(value) => &value.value,
        Expr::Cast { expr, data_type: DataType::Int4(None), .. } => match expr.as_ref() {
            Expr::Value(value) => &value.value,
            _ => return None,
        },
        _ => return None,
    };
    let Value::Number(text, false) = number else { return None };
    let negated = format!("-{text}");
    negated.parse::<i32>().is_ok().then_some(negated)
}

fn fits_int4(value: &Value) -> bool {
    matches!(value, Value::Number(text, false) if text.parse::<i32>().is_ok())
}

/// Whether `function` is the one-part name `name` (unquoted, any case).
fn function_named(function: &Function, name: &str) -> bool {
    matches!(function.name.0.as_slice(), [part] if part.as_ident().is_some_and(|i| i.quote_style.is_none() && i.value.eq_ignore_ascii_case(name)))
        && function.over.is_none()
}

/// A call's arguments when they are plain expressions (no names, `DISTINCT` or clauses).
fn plain_arguments(function: &Function) -> Option<Vec<Expr>> {
    let FunctionArguments::List(list) = &function.args else { return None };
    if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
        return None;
    }
    list.args
        .iter()
        .map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => Some(expr.clone()),
            _ => None,
        })
        .collect()
}

/// `pg_catalog.f`: functions live in `pg_catalog`, which is on every search path, so the
/// qualified name is the function's name.
fn is_in_pg_catalog(name: &datafusion::sql::sqlparser::ast::ObjectName) -> bool {
    name.0.len() == 2 && name.0[0].as_ident().is_some_and(|schema| schema.value.eq_ignore_ascii_case("pg_catalog"))
}

/// `OPERATOR(pg_catalog.~)` (psql writes its operators so): the operator itself.
fn qualified_operator(parts: &[String]) -> Result<BinaryOperator> {
    let (schema, symbol) = match parts {
        [symbol] => (None, symbol.as_str()),
        [schema, symbol] => (Some(schema.as_str()), symbol.as_str()),
        _ => (None, ""),
    };
    let operator = match symbol {
        "~" => BinaryOperator::PGRegexMatch,
        "~*" => BinaryOperator::PGRegexIMatch,
        "!~" => BinaryOperator::PGRegexNotMatch,
        "!~*" => BinaryOperator::PGRegexNotIMatch,
        "=" => BinaryOperator::Eq,
        "<>" | "!=" => BinaryOperator::NotEq,
        "<" => BinaryOperator::Lt,
        "<=" => BinaryOperator::LtEq,
        ">" => BinaryOperator::Gt,
        ">=" => BinaryOperator::GtEq,
        "+" => BinaryOperator::Plus,
        "-" => BinaryOperator::Minus,
        "*" => BinaryOperator::Multiply,
        "/" => BinaryOperator::Divide,
        "||" => BinaryOperator::StringConcat,
        _ => BinaryOperator::PGCustomBinaryOperator(Vec::new()),
    };
    if matches!(operator, BinaryOperator::PGCustomBinaryOperator(_)) || schema.is_some_and(|s| s != "pg_catalog") {
        return Err(not_supported(&format!("OPERATOR({}) is not supported", parts.join("."))));
    }
    Ok(operator)
}

fn refuse_multiset_operations(body: &SetExpr) -> Result<()> {
    if let SetExpr::SetOperation { op, set_quantifier, left, right } = body {
        if matches!(op, SetOperator::Except | SetOperator::Intersect | SetOperator::Minus)
            && matches!(set_quantifier, SetQuantifier::All | SetQuantifier::AllByName)
        {
            return Err(not_supported("EXCEPT ALL and INTERSECT ALL are not supported; use EXCEPT or INTERSECT"));
        }
        refuse_multiset_operations(left)?;
        refuse_multiset_operations(right)?;
    }
    Ok(())
}

/// `EXISTS (q)` as a value (in the select list), which DataFusion plans only as a filter: the
/// same true or false (never NULL) as `(SELECT count(*) > 0 FROM … WHERE …)` when `q` is a plain
/// select (its own columns do not matter, and a correlation in its WHERE stays one), else as
/// `(SELECT count(*) > 0 FROM (q) AS exists_query)`.
fn exists_as_value(mut subquery: Box<Query>, negated: bool) -> Expr {
    let comparison = if negated { "count(*) = 0" } else { "count(*) > 0" };
    let parse = |sql: &str| {
        datafusion::sql::sqlparser::parser::Parser::new(&datafusion::sql::sqlparser::dialect::PostgreSqlDialect {})
            .try_with_sql(sql)
            .and_then(|mut parser| parser.parse_query())
    };
    let plain = subquery.with.is_none()
        && subquery.order_by.is_none()
        && subquery.limit_clause.is_none()
        && subquery.fetch.is_none()
        && matches!(subquery.body.as_ref(), SetExpr::Select(select)
            if select.distinct.is_none()
                && select.having.is_none()
                && select.named_window.is_empty()
                && matches!(&select.group_by, datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty())
                && select.projection.iter().all(|item| !contains_aggregate_or_window(item)));
    if plain {
        if let (Ok(count), SetExpr::Select(select)) = (parse(&format!("SELECT {comparison}")), subquery.body.as_mut()) {
            if let SetExpr::Select(count) = *count.body {
                select.projection = count.projection;
                return Expr::Subquery(subquery);
            }
        }
    }
    match parse(&format!("SELECT {comparison} FROM ({subquery}) AS exists_query")) {
        Ok(query) => Expr::Subquery(query),
        Err(_) => Expr::Exists { subquery, negated },
    }
}

/// Whether a select item calls a function. An aggregate (or a window function) would make its
/// select one row per group, not per row; telling aggregates from other functions by name would
/// miss user-defined ones, so any call keeps the select out of the plain rewrite.
fn contains_aggregate_or_window(item: &SelectItem) -> bool {
    let mut item = item.clone();
    datafusion::sql::sqlparser::ast::visit_expressions_mut(&mut item, |expr| {
        if matches!(expr, Expr::Function(_)) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .is_break()
}

/// `x IN (q)` as a value (in the select list), which DataFusion plans only as a filter, with
/// SQL's three values: true when a row of `q` equals `x`; else false when `q` has no rows; else
/// NULL when `x` is NULL or a row of `q` is; else false. Each count is a subquery over
/// `(q) AS in_query(in_query_value)`, correlated on `x` where needed (which DataFusion
/// decorrelates).
fn in_as_value(value: Expr, subquery: Box<Query>, negated: bool) -> Expr {
    let rows = |condition: Option<Expr>| {
        let mut count = datafusion::sql::sqlparser::parser::Parser::new(&datafusion::sql::sqlparser::dialect::PostgreSqlDialect {})
            .try_with_sql("SELECT count(*) FROM (SELECT 1) AS in_query(in_query_value)")
            .and_then(|mut parser| parser.parse_query())
            .expect("a fixed query parses");
        if let SetExpr::Select(select) = count.body.as_mut() {
            if let Some(TableFactor::Derived { subquery: inner, .. }) = select.from.first_mut().map(|from| &mut from.relation) {
                *inner = subquery.clone();
            }
            select.selection = condition;
        }
        Expr::Subquery(count)
    };
    // Named so that no column of the outer query (which `x` may name) is hidden by it.
    let v = || Expr::CompoundIdentifier(vec![Ident::new("in_query"), Ident::new("in_query_value")]);
    let number = |n: &str| Expr::value(Value::Number(n.into(), false));
    let compare = |left: Expr, op: BinaryOperator, right: Expr| Expr::BinaryOp { left: Box::new(left), op, right: Box::new(right) };
    let null = || Expr::value(Value::Null);
    let membership = case(
        None,
        vec![
            (compare(rows(Some(compare(v(), BinaryOperator::Eq, value.clone()))), BinaryOperator::Gt, number("0")), Expr::value(Value::Boolean(true))),
            (compare(rows(None), BinaryOperator::Eq, number("0")), Expr::value(Value::Boolean(false))),
            (Expr::IsNull(Box::new(value)), null()),
            (compare(rows(Some(Expr::IsNull(Box::new(v())))), BinaryOperator::Gt, number("0")), null()),
        ],
        Some(Expr::value(Value::Boolean(false))),
    );
    if negated {
        Expr::UnaryOp { op: datafusion::sql::sqlparser::ast::UnaryOperator::Not, expr: Box::new(Expr::Nested(Box::new(membership))) }
    } else {
        membership
    }
}

/// Replaces `x IN (q)` by [`in_as_value`] in an expression, but not inside the subqueries it
/// holds (there an IN in a WHERE stays a filter, which DataFusion plans as a semi join).
fn in_values_outside_subqueries(expr: &mut Expr) {
    struct Replacer {
        depth: usize,
    }
    impl VisitorMut for Replacer {
        type Break = ();
        fn pre_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if self.depth == 0 && matches!(expr, Expr::InSubquery { .. }) {
                let Expr::InSubquery { expr: value, subquery, negated } = std::mem::replace(expr, Expr::value(Value::Null)) else {
                    unreachable!("matched above")
                };
                *expr = in_as_value(*value, subquery, negated);
            }
            ControlFlow::Continue(())
        }
    }
    let _ = expr.visit(&mut Replacer { depth: 0 });
}

fn values_of_exists(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            for item in &mut select.projection {
                let (SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. }) = item else { continue };
                in_values_outside_subqueries(expr);
                let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(expr, |e| {
                    if let Expr::Exists { .. } = e {
                        let Expr::Exists { subquery, negated } = std::mem::replace(e, Expr::value(Value::Null)) else {
                            unreachable!("matched above")
                        };
                        *e = exists_as_value(subquery, negated);
                    }
                    ControlFlow::<()>::Continue(())
                });
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            values_of_exists(left);
            values_of_exists(right);
        }
        _ => {}
    }
}

/// PostgreSQL's `information_schema._pg_expandarray(a)` (pgjdbc's key queries), however named.
fn is_expand_array(expr: &Expr) -> bool {
    matches!(expr, Expr::Function(function) if is_expand_array_call(function))
}

fn is_expand_array_call(function: &Function) -> bool {
    let name = function.name.0.iter().map(|part| part.to_string().to_ascii_lowercase()).collect::<Vec<_>>();
    matches!(name.iter().map(String::as_str).collect::<Vec<_>>().as_slice(), ["_pg_expandarray"] | ["information_schema", "_pg_expandarray"])
        && function.over.is_none()
}

/// The names `pg_class` goes by in a query's FROM list (its alias, or `pg_class`).
fn relation_catalog_names(body: &SetExpr) -> Vec<String> {
    let SetExpr::Select(select) = body else { return Vec::new() };
    let factors = select.from.iter().flat_map(|from| std::iter::once(&from.relation).chain(from.joins.iter().map(|join| &join.relation)));
    factors
        .filter_map(|factor| match factor {
            TableFactor::Table { name, alias, args: None, .. } => {
                let parts: Vec<String> = name.0.iter().map(|part| part.to_string().to_ascii_lowercase()).collect();
                matches!(parts.iter().map(String::as_str).collect::<Vec<_>>().as_slice(), ["pg_class"] | ["pg_catalog", "pg_class"])
                    .then(|| alias.as_ref().map_or_else(|| "pg_class".to_string(), |alias| alias.name.value.clone()))
            }
            _ => None,
        })
        .collect()
}

/// Whether an expression holds a subquery (scalar, IN or EXISTS).
fn contains_subquery(expr: &Expr) -> bool {
    datafusion::sql::sqlparser::ast::visit_expressions(expr, |e| {
        if matches!(e, Expr::Subquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. }) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .is_break()
}

/// `SELECT … ORDER BY CASE WHEN x IN (SELECT …) THEN 0 ELSE 1 END, 1` (Grafana's table list):
/// DataFusion plans subqueries in a select list but not in ORDER BY, so a sort key with one is
/// computed in the select list of a derived table and sorted by there:
/// `SELECT * EXCLUDE (sort_key_1) FROM (SELECT …, CASE … END AS sort_key_1 …) ORDER BY sort_key_1, 1`.
/// Taken only when the other sort keys are positions or plain names, which mean the same
/// outside the derived table.
fn sort_by_subqueries(query: &mut Query) {
    use datafusion::sql::sqlparser::ast::{OrderByKind, WildcardAdditionalOptions};
    let Some(order_by) = &mut query.order_by else { return };
    let OrderByKind::Expressions(keys) = &mut order_by.kind else { return };
    if !keys.iter().any(|key| contains_subquery(&key.expr))
        || !keys.iter().all(|key| contains_subquery(&key.expr) || matches!(&key.expr, Expr::Identifier(_) | Expr::Value(_)))
    {
        return;
    }
    let SetExpr::Select(select) = query.body.as_mut() else { return };
    if select.distinct.is_some() {
        return;
    }
    let mut hidden = Vec::new();
    for (i, key) in keys.iter_mut().enumerate().filter(|(_, key)| contains_subquery(&key.expr)) {
        let name = Ident::new(format!("sort_key_{}", i + 1));
        let expr = std::mem::replace(&mut key.expr, Expr::Identifier(name.clone()));
        select.projection.push(SelectItem::ExprWithAlias { expr, alias: name.clone() });
        hidden.push(name);
    }
    let inner = Query { with: None, body: query.body.clone(), order_by: None, limit_clause: None, fetch: None, locks: Vec::new(), for_clause: None, settings: None, format_clause: None, pipe_operators: Vec::new() };
    let Ok(mut outer) = datafusion::sql::sqlparser::parser::Parser::new(&datafusion::sql::sqlparser::dialect::GenericDialect {})
        .try_with_sql("SELECT * FROM (SELECT 1) AS sorted")
        .and_then(|mut parser| parser.parse_query())
    else {
        return;
    };
    let SetExpr::Select(outer_select) = outer.body.as_mut() else { return };
    outer_select.projection = vec![SelectItem::Wildcard(WildcardAdditionalOptions {
        opt_exclude: Some(datafusion::sql::sqlparser::ast::ExcludeSelectItem::Multiple(hidden.into_iter().map(|name| ObjectName(vec![ObjectNamePart::Identifier(name)])).collect())),
        ..Default::default()
    })];
    if let Some(TableFactor::Derived { subquery, .. }) = outer_select.from.first_mut().map(|from| &mut from.relation) {
        *subquery = Box::new(inner);
    }
    query.body = outer.body;
}

/// `FROM generate_series(…) AS i`: as in PostgreSQL, the column of a function returning one
/// column is named after its alias; DataFusion names it `value`.
fn name_function_columns(factor: &mut TableFactor) {
    let TableFactor::Table { name, args: Some(_), alias, .. } = factor else { return };
    let [function] = name.0.as_slice() else { return };
    let function = function.to_string().to_ascii_lowercase();
    if function != "generate_series" {
        return;
    }
    // Without an alias the column keeps DataFusion's name, `value` (PostgreSQL's is
    // `generate_series`): queries written for StreamHouse read it so.
    if let Some(alias) = alias.as_mut().filter(|alias| alias.columns.is_empty()) {
        alias.columns = vec![datafusion::sql::sqlparser::ast::TableAliasColumnDef::from_name(alias.name.value.clone())];
    }
}

/// `FROM string_to_array(…) s`: PostgreSQL takes a function that returns one value as a table of
/// one row, its column named after the alias; here it is `(SELECT string_to_array(…) AS s) AS s`.
fn scalar_function_as_table(factor: &TableFactor) -> Option<TableFactor> {
    const SCALAR_IN_FROM: [&str; 3] = ["string_to_array", "current_schemas", "parse_ident"];
    let TableFactor::Table { name, args: Some(args), alias, .. } = factor else { return None };
    let [function] = name.0.as_slice() else { return None };
    let function_name = function.to_string().to_ascii_lowercase();
    if !SCALAR_IN_FROM.contains(&function_name.as_str()) {
        return None;
    }
    let alias = alias.clone().unwrap_or(datafusion::sql::sqlparser::ast::TableAlias {
        explicit: true,
        name: Ident::new(&function_name),
        columns: Vec::new(),
        at: None,
    });
    let column = alias.columns.first().map_or_else(|| alias.name.clone(), |c| c.name.clone());
    let mut subquery = datafusion::sql::sqlparser::parser::Parser::new(&datafusion::sql::sqlparser::dialect::PostgreSqlDialect {})
        .try_with_sql("SELECT NULL AS value")
        .and_then(|mut parser| parser.parse_query())
        .ok()?;
    let SetExpr::Select(select) = subquery.body.as_mut() else { return None };
    let call = Expr::Function(Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(&function_name))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList { duplicate_treatment: None, args: args.args.clone(), clauses: Vec::new() }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    });
    select.projection = vec![SelectItem::ExprWithAlias { expr: call, alias: column }];
    Some(TableFactor::Derived { lateral: false, subquery, alias: Some(datafusion::sql::sqlparser::ast::TableAlias { columns: Vec::new(), ..alias }), sample: None })
}

/// `generate_series(…)` and `generate_subscripts(…)` as whole select items: their rows, as in
/// PostgreSQL (DataFusion's scalar `generate_series` returns an array).
fn unnest_series(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            for item in &mut select.projection {
                let (SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. }) = item else { continue };
                // `(information_schema._pg_expandarray(a)).n`: the set-returning call under a field.
                if let Expr::CompoundFieldAccess { root, .. } = expr {
                    let record = match root.as_mut() {
                        Expr::Nested(inner) => inner.as_mut(),
                        other => other,
                    };
                    if is_expand_array(record) {
                        let taken = std::mem::replace(record, Expr::value(Value::Null));
                        *record = call("unnest", vec![taken]);
                    }
                    continue;
                }
                if is_expand_array(expr) {
                    let taken = std::mem::replace(expr, Expr::value(Value::Null));
                    *expr = call("unnest", vec![taken]);
                    continue;
                }
                let Expr::Function(function) = expr else { continue };
                if function_named(function, "generate_series") {
                    let series = std::mem::replace(expr, Expr::value(Value::Null));
                    *expr = call("unnest", vec![series]);
                } else if let Some([array, dimension]) = function_named(function, "generate_subscripts").then(|| plain_arguments(function)).flatten().as_deref() {
                    // `generate_subscripts(a, d)`: the subscripts of dimension d, 1 to its length
                    // (arrays here start at 1); none for an empty or NULL array.
                    let length = call("array_length", vec![array.clone(), dimension.clone()]);
                    *expr = call("unnest", vec![call("generate_series", vec![Expr::value(Value::Number("1".into(), false)), length])]);
                }
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            unnest_series(left);
            unnest_series(right);
        }
        _ => {}
    }
}

impl VisitorMut for Rewriter {
    type Break = EngineError;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<EngineError> {
        self.literal_is_a_value.push(true);
        self.relation_catalogs.push(relation_catalog_names(&query.body));
        if let Err(error) = refuse_multiset_operations(&query.body) {
            return ControlFlow::Break(error);
        }
        sort_by_subqueries(query);
        unnest_series(&mut query.body);
        values_of_exists(&mut query.body);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<EngineError> {
        self.literal_is_a_value.pop();
        self.relation_catalogs.pop();
        unnarrow_positions(query);
        skip_subqueries_over_nothing(query);
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<EngineError> {
        // `FROM pg_catalog.generate_series(…)`: the set-returning functions are pg_catalog's.
        if let TableFactor::Table { name, args: Some(_), .. } = factor {
            if is_in_pg_catalog(name) {
                name.0.remove(0);
            }
        }
        name_function_columns(factor);
        if let Some(derived) = scalar_function_as_table(factor) {
            *factor = derived;
        }
        let function_like = matches!(factor, TableFactor::Function { .. } | TableFactor::Table { args: Some(_), .. });
        self.literal_is_a_value.push(!function_like);
        ControlFlow::Continue(())
    }

    fn post_visit_table_factor(&mut self, _factor: &mut TableFactor) -> ControlFlow<EngineError> {
        self.literal_is_a_value.pop();
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<EngineError> {
        let taken = std::mem::replace(expr, Expr::value(Value::Null));
        match self.rewrite(taken) {
            Ok(rewritten) => {
                *expr = rewritten;
                ControlFlow::Continue(())
            }
            Err(error) => ControlFlow::Break(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn rewritten(sql: &str) -> Result<String> {
        let Statement::Query(mut query) = Parser::new(&PostgreSqlDialect {}).try_with_sql(sql).unwrap().parse_statement().unwrap()
        else {
            panic!("not a query")
        };
        give_postgres_meaning(&mut query)?;
        Ok(query.to_string())
    }

    #[test]
    fn any_and_all_over_subqueries() {
        assert_eq!(rewritten("SELECT z WHERE x = ANY (SELECT y FROM t)").unwrap(), "SELECT z WHERE x IN (SELECT y FROM t)");
        assert_eq!(rewritten("SELECT z WHERE x <> ALL (SELECT y FROM t)").unwrap(), "SELECT z WHERE x NOT IN (SELECT y FROM t)");
        assert!(rewritten("SELECT z WHERE x > ALL (SELECT y FROM t)").is_err());
        assert!(rewritten("SELECT z WHERE x < ANY (SELECT y FROM t)").is_err());
        // Over an array, DataFusion's answer is PostgreSQL's.
        assert_eq!(rewritten("SELECT z = ANY(ARRAY['a'])").unwrap(), "SELECT z = ANY(ARRAY['a'])");
    }

    #[test]
    fn array_of_a_subquery_is_an_ordered_aggregate_that_is_never_null() {
        assert_eq!(
            rewritten("SELECT ARRAY(SELECT b.x FROM t b WHERE b.k = r.k ORDER BY b.y DESC) AS a FROM r").unwrap(),
            "SELECT coalesce((SELECT array_agg(b.x ORDER BY b.y DESC) FROM t b WHERE b.k = r.k), make_array()) AS a FROM r"
        );
        for refused in ["SELECT ARRAY(SELECT x FROM t LIMIT 2)", "SELECT ARRAY(SELECT DISTINCT x FROM t)", "SELECT ARRAY(SELECT x, y FROM t)", "SELECT ARRAY(SELECT x FROM t GROUP BY x)"] {
            assert_eq!(rewritten(refused).unwrap_err().sqlstate(), "0A000", "{refused}");
        }
    }

    #[test]
    fn what_catalog_queries_of_tools_need() {
        // SQLAlchemy's schema list: LIKE with another escape character.
        assert_eq!(rewritten("SELECT n WHERE n NOT LIKE $1 ESCAPE '/'").unwrap(), "SELECT n WHERE n NOT LIKE like_escape($1, '/')");
        assert_eq!(rewritten("SELECT n WHERE n LIKE 'a\\_' ESCAPE '\\'").unwrap(), "SELECT n WHERE n LIKE 'a\\_' ESCAPE '\\'");
        // Its primary key query: subscripts beside unnest.
        assert_eq!(
            rewritten("SELECT unnest(k) AS a, generate_subscripts(k, 1) AS o FROM i").unwrap(),
            "SELECT unnest(k) AS a, unnest(generate_series(1::INT4, array_length(k, 1::INT4))) AS o FROM i"
        );
        // A bound name cast to regclass is a name; an OID column is an OID.
        assert_eq!(rewritten("SELECT $1::regclass").unwrap(), "SELECT pg_regclass_oid($1)");
        assert_eq!(rewritten("SELECT c.oid::regclass FROM c").unwrap(), "SELECT pg_regclass_name(c.oid) FROM c");
        assert_eq!(rewritten("SELECT 'int4'::regtype").unwrap(), "SELECT pg_regtype_oid('int4')");
        // Fixed signatures get their arguments' types and PostgreSQL's defaults.
        assert_eq!(
            rewritten("SELECT pg_get_indexdef(i, o + 1, $1), pg_get_constraintdef(c)").unwrap(),
            "SELECT pg_get_indexdef(CAST(i AS BIGINT), CAST(o + 1::INT4 AS INT), CAST($1 AS BOOLEAN)), pg_get_constraintdef(CAST(c AS BIGINT), CAST(false AS BOOLEAN))"
        );
        // psql's `\d+`: options of a TOAST table (none here), and an OID cast.
        assert_eq!(
            rewritten("SELECT array(SELECT 'toast.' || x FROM pg_catalog.unnest(tc.reloptions) x) FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_class tc ON c.reltoastrelid = tc.oid").unwrap(),
            "SELECT CAST(make_array() AS TEXT[]) FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_class tc ON c.reltoastrelid = tc.oid"
        );
        // The same over a relation that is not the catalog is left to the planner.
        let kept = rewritten("SELECT array(SELECT x FROM unnest(t.reloptions) x) FROM t").unwrap();
        assert!(kept.contains("UNNEST(t.reloptions)"), "{kept}");
        assert_eq!(rewritten("SELECT '16389'::pg_catalog.oid").unwrap(), "SELECT '16389'::BIGINT");
        // A scalar subquery that does not aggregate gives PostgreSQL's one value (or error).
        assert_eq!(
            rewritten("SELECT (SELECT t.typcollation FROM pg_type t WHERE t.oid = a.atttypid) FROM a").unwrap(),
            "SELECT (SELECT scalar_subquery_value(t.typcollation) FROM pg_type t WHERE t.oid = a.atttypid) FROM a"
        );
        for kept in ["SELECT (SELECT max(x) FROM t)", "SELECT (SELECT x FROM t LIMIT 1)", "SELECT (SELECT x FROM t GROUP BY x)", "SELECT (SELECT DISTINCT x FROM t)", "SELECT (SELECT upper(x) FROM t)"] {
            assert_eq!(rewritten(kept).unwrap(), kept, "{kept}");
        }
    }

    #[test]
    fn in_and_order_by_subqueries_as_values() {
        assert_eq!(
            rewritten("SELECT x IN (SELECT y FROM t) FROM u").unwrap(),
            "SELECT CASE WHEN (SELECT count(*) FROM (SELECT y FROM t) AS in_query (in_query_value) WHERE in_query.in_query_value = x) > 0::INT4 THEN true \
             WHEN (SELECT count(*) FROM (SELECT y FROM t) AS in_query (in_query_value)) = 0::INT4 THEN false WHEN x IS NULL THEN NULL \
             WHEN (SELECT count(*) FROM (SELECT y FROM t) AS in_query (in_query_value) WHERE in_query.in_query_value IS NULL) > 0::INT4 THEN NULL ELSE false END FROM u"
        );
        // Inside a subquery of the select list, an IN in its WHERE stays a filter.
        assert_eq!(
            rewritten("SELECT (SELECT count(*) FROM t WHERE t.a IN (SELECT b FROM w)) FROM u").unwrap(),
            "SELECT (SELECT count(*) FROM t WHERE t.a IN (SELECT b FROM w)) FROM u"
        );
        // In a filter DataFusion plans it as a semi join: left alone.
        assert_eq!(rewritten("SELECT x FROM u WHERE x IN (SELECT y FROM t)").unwrap(), "SELECT x FROM u WHERE x IN (SELECT y FROM t)");
        assert_eq!(
            rewritten("SELECT a FROM u ORDER BY CASE WHEN EXISTS (SELECT 1 FROM t) THEN 0 END, 1").unwrap(),
            "SELECT * EXCLUDE (sort_key_1) FROM (SELECT a, CASE WHEN (SELECT count(*) > 0::INT4 FROM t) THEN 0::INT4 END AS sort_key_1 FROM u) AS sorted ORDER BY sort_key_1, 1"
        );
        // A sort key that means something else outside a derived table: left to the planner.
        assert_eq!(rewritten("SELECT a FROM u ORDER BY a + (SELECT 1), b + 1").unwrap(), "SELECT a FROM u ORDER BY a + (SELECT scalar_subquery_value(1::INT4)), b + 1::INT4");
        // A hidden column would change what DISTINCT keeps.
        assert_eq!(rewritten("SELECT DISTINCT a FROM u ORDER BY a IN (SELECT 1)").unwrap(), "SELECT DISTINCT a FROM u ORDER BY a IN (SELECT 1::INT4)");
        // A function's column is named after its alias.
        assert_eq!(rewritten("SELECT i FROM generate_series(1, 2) AS i").unwrap(), "SELECT i FROM generate_series(1, 2) AS i (i)");
        assert_eq!(
            rewritten("SELECT s[1] FROM string_to_array('a,b', ',') s").unwrap(),
            "SELECT s[1::INT4] FROM (SELECT string_to_array('a,b', ',') AS s) s"
        );
    }

    #[test]
    fn casts() {
        assert_eq!(rewritten("SELECT '3.7'::numeric::int").unwrap(), "SELECT round_for_integer('3.7'::NUMERIC)::INT");
        assert_eq!(rewritten("SELECT x::varchar(2)").unwrap(), "SELECT left(text_output(x), 2)");
        assert_eq!(rewritten("SELECT '\\x01'::bytea").unwrap(), "SELECT byteain('\\x01')");
        assert!(rewritten("SELECT 'a'::char(3)").is_err());
        assert!(rewritten("SELECT now() AT TIME ZONE 'UTC'").is_err());
    }

    #[test]
    fn integer_literals_are_int4_where_they_are_values() {
        assert_eq!(
            rewritten("SELECT 1, 2147483648, 1.5, x + 2 FROM t WHERE y > 3 GROUP BY 1, x + 2 ORDER BY 2, x + 4 LIMIT 5 OFFSET 6").unwrap(),
            "SELECT 1::INT4, 2147483648, 1.5, x + 2::INT4 FROM t WHERE y > 3::INT4 GROUP BY 1, x + 2::INT4 ORDER BY 2, x + 4::INT4 LIMIT 5 OFFSET 6"
        );
        assert_eq!(rewritten("SELECT -2147483648, -5, 300::smallint").unwrap(), "SELECT -2147483648::INT4, -5::INT4, 300::INT4::SMALLINT");
        assert_eq!(
            rewritten("SELECT sum(x) OVER (ORDER BY y ROWS BETWEEN 1 PRECEDING AND 2 FOLLOWING) FROM t").unwrap(),
            "SELECT sum(x) OVER (ORDER BY y ROWS BETWEEN 1 PRECEDING AND 2 FOLLOWING) FROM t"
        );
        assert_eq!(
            rewritten("SELECT * FROM generate_series(1, 5) WHERE 7 IN (SELECT 8 FROM u ORDER BY 1)").unwrap(),
            "SELECT * FROM generate_series(1, 5) WHERE 7::INT4 IN (SELECT 8::INT4 FROM u ORDER BY 1)"
        );
    }

    #[test]
    fn psql_operators_and_collations() {
        assert_eq!(
            rewritten("SELECT 1 FROM pg_policy WHERE polroles <> '{0}' AND '{1, 2}' = polroles AND polname = '{x}'").unwrap(),
            "SELECT 1::INT4 FROM pg_policy WHERE polroles <> make_array(0) AND '{1, 2}' = polroles AND polname = '{x}'"
        );
        assert_eq!(
            rewritten("SELECT ARRAY(SELECT polname FROM pg_catalog.pg_policy pol WHERE polrelid = c.oid) FROM pg_class c").unwrap(),
            "SELECT make_array() FROM pg_class c"
        );
        assert_eq!(
            rewritten("SELECT (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true) FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid), (SELECT c.collname FROM pg_collation c, pg_type t WHERE c.oid = a.attcollation), (SELECT max(adnum) FROM pg_attrdef) FROM pg_attribute a").unwrap(),
            "SELECT NULL, NULL, (SELECT max(adnum) FROM pg_attrdef) FROM pg_attribute a"
        );
        assert_eq!(
            rewritten("SELECT ARRAY(SELECT polname || (polcmd::pg_catalog.text) FROM pg_catalog.pg_policy pol WHERE polrelid = c.oid) FROM pg_class c").unwrap(),
            "SELECT make_array() FROM pg_class c"
        );
        // An aggregate over nothing is one row: not folded to an empty array.
        assert_ne!(rewritten("SELECT ARRAY(SELECT count(*) FROM pg_policy)").unwrap(), "SELECT make_array()");
        assert_eq!(
            rewritten("SELECT relname FROM c WHERE c.relname OPERATOR(pg_catalog.~) '^(bids)$' COLLATE pg_catalog.default").unwrap(),
            "SELECT relname FROM c WHERE c.relname ~ '^(bids)$'"
        );
        assert!(rewritten("SELECT a OPERATOR(myschema.~) b").is_err());
        assert_eq!(rewritten("SELECT pg_catalog.pg_get_userbyid(10)").unwrap(), "SELECT pg_get_userbyid(10::INT4)");
        assert_eq!(rewritten("SELECT mod(a, 3), sign(b)").unwrap(), "SELECT (a % 3::INT4), signum(b)");
        assert!(rewritten("SELECT a COLLATE \"de_DE\"").is_err());
    }

    #[test]
    fn set_operations_and_series() {
        assert!(rewritten("SELECT 1 EXCEPT ALL SELECT 2").is_err());
        assert!(rewritten("SELECT * FROM (SELECT 1 INTERSECT ALL SELECT 2) s").is_err());
        assert!(rewritten("SELECT 1 EXCEPT SELECT 2").is_ok());
        assert_eq!(rewritten("SELECT generate_series(x, y) AS n").unwrap(), "SELECT unnest(generate_series(x, y)) AS n");
        assert_eq!(
            rewritten("SELECT NOT EXISTS (SELECT a FROM t) FROM u WHERE EXISTS (SELECT b FROM v)").unwrap(),
            "SELECT (SELECT count(*) = 0::INT4 FROM t) FROM u WHERE EXISTS (SELECT b FROM v)"
        );
    }
}
