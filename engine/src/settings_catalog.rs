//! `pg_settings`: the session's settings as PostgreSQL's view shows them. The values are the
//! session's own (after its `SET`s), so the view is made from them when a statement names it:
//! the table reference becomes a `VALUES` list, as `current_setting` is replaced by its value.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Query, TableFactor, VisitMut, VisitorMut};

use crate::pg_functions::quote_literal;
use crate::{EngineError, Result};

/// The view's columns, PostgreSQL 15's, with their types.
const COLUMNS: [(&str, &str); 17] = [
    ("name", "text"),
    ("setting", "text"),
    ("unit", "text"),
    ("category", "text"),
    ("short_desc", "text"),
    ("extra_desc", "text"),
    ("context", "text"),
    ("vartype", "text"),
    ("source", "text"),
    ("min_val", "text"),
    ("max_val", "text"),
    ("enumvals", "text[]"),
    ("boot_val", "text"),
    ("reset_val", "text"),
    ("sourcefile", "text"),
    ("sourceline", "int4"),
    ("pending_restart", "boolean"),
];

/// What PostgreSQL says of a setting: its unit, context (`internal`: fixed at build or start,
/// `user`: any session may change it) and type.
fn describe(name: &str) -> (Option<&'static str>, &'static str, &'static str) {
    match name {
        "statement_timeout" => (Some("ms"), "user", "integer"),
        "extra_float_digits" => (None, "user", "integer"),
        "max_identifier_length" => (None, "internal", "integer"),
        "server_version_num" => (None, "internal", "integer"),
        "server_version" | "server_encoding" | "lc_collate" | "lc_ctype" => (None, "internal", "string"),
        "integer_datetimes" => (None, "internal", "bool"),
        "standard_conforming_strings" | "transaction_read_only" => (None, "user", "bool"),
        "intervalstyle" | "bytea_output" | "client_min_messages" | "transaction_isolation" | "default_transaction_isolation" => {
            (None, "user", "enum")
        }
        _ => (None, "user", "string"),
    }
}

/// PostgreSQL's spelling of a setting's name (`TimeZone`, `DateStyle`, `IntervalStyle`).
pub fn display_name(name: &str) -> &str {
    match name {
        "timezone" => "TimeZone",
        "datestyle" => "DateStyle",
        "intervalstyle" => "IntervalStyle",
        other => other,
    }
}

/// `(SELECT … FROM (VALUES …) AS pg_settings(name, setting, …))`: the view for these settings;
/// `defaults` are the values a session starts with (`boot_val`, `reset_val`, and `source`
/// `default` or `session`).
fn settings_query(settings: &BTreeMap<String, String>, defaults: &BTreeMap<String, String>) -> Result<Box<Query>> {
    let text = |value: Option<&str>| value.map_or_else(|| "NULL::text".to_string(), |v| format!("{}::text", quote_literal(v)));
    // Internal names (the database, the role) are not settings PostgreSQL lists.
    let rows: Vec<String> = settings
        .iter()
        .filter(|(name, _)| !["database", "session_authorization"].contains(&name.as_str()))
        .map(|(name, value)| {
            let (unit, context, vartype) = describe(name);
            let default = defaults.get(name).map(String::as_str);
            let source = if default == Some(value.as_str()) { "default" } else { "session" };
            format!(
                "({}, {}, {}, NULL::text, NULL::text, NULL::text, {}, {}, {}, NULL::text, NULL::text, NULL::text[], {}, {}, NULL::text, NULL::int4, false)",
                text(Some(display_name(name))),
                text(Some(value)),
                text(unit),
                text(Some(context)),
                text(Some(vartype)),
                text(Some(source)),
                text(default),
                text(default),
            )
        })
        .collect();
    let columns: Vec<&str> = COLUMNS.iter().map(|(name, _)| *name).collect();
    let sql = format!("SELECT * FROM (VALUES {}) AS pg_settings({})", rows.join(", "), columns.join(", "));
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    Ok(datafusion::sql::sqlparser::parser::Parser::new(&dialect).try_with_sql(&sql)?.parse_query()?)
}

/// Replaces each `pg_settings` (or `pg_catalog.pg_settings`) in `statement` with the session's
/// settings; `defaults` is asked only when the statement names the view.
pub fn inline_pg_settings<T: VisitMut>(
    statement: &mut T,
    settings: &BTreeMap<String, String>,
    defaults: impl Fn() -> BTreeMap<String, String>,
) -> Result<()> {
    struct Inliner<'a, D> {
        settings: &'a BTreeMap<String, String>,
        defaults: D,
    }
    impl<D: Fn() -> BTreeMap<String, String>> VisitorMut for Inliner<'_, D> {
        type Break = EngineError;
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<EngineError> {
            let TableFactor::Table { name, args: None, alias, .. } = factor else { return ControlFlow::Continue(()) };
            let parts: Vec<String> = name.0.iter().map(|part| part.to_string().to_ascii_lowercase()).collect();
            if !matches!(parts.iter().map(String::as_str).collect::<Vec<_>>().as_slice(), ["pg_settings"] | ["pg_catalog", "pg_settings"]) {
                return ControlFlow::Continue(());
            }
            let alias = alias.clone().unwrap_or(datafusion::sql::sqlparser::ast::TableAlias {
                explicit: true,
                name: datafusion::sql::sqlparser::ast::Ident::new("pg_settings"),
                columns: Vec::new(),
                at: None,
            });
            match settings_query(self.settings, &(self.defaults)()) {
                Ok(subquery) => {
                    *factor = TableFactor::Derived { lateral: false, subquery, alias: Some(alias), sample: None };
                    ControlFlow::Continue(())
                }
                Err(error) => ControlFlow::Break(error),
            }
        }
    }
    match statement.visit(&mut Inliner { settings, defaults }) {
        ControlFlow::Break(error) => Err(error),
        ControlFlow::Continue(()) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_lists_each_setting_with_where_its_value_comes_from() {
        let defaults = BTreeMap::from([("timezone".to_string(), "UTC".to_string()), ("application_name".to_string(), String::new())]);
        let mut settings = defaults.clone();
        settings.insert("application_name".into(), "it's me".into());
        let query = settings_query(&settings, &defaults).unwrap().to_string();
        assert!(query.contains("('application_name'::TEXT, 'it''s me'::TEXT"), "{query}");
        assert!(query.contains("'session'::TEXT"), "{query}");
        assert!(query.contains("('TimeZone'::TEXT, 'UTC'::TEXT"), "{query}");
        assert!(query.contains("'default'::TEXT"), "{query}");
    }
}
