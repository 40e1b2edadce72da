//! Keeps system columns out of `*`: every `SELECT *` (or `t.*`) over a topic becomes
//! `* EXCLUDE (_partition, _offset, _timestamp)` for that topic, so the columns are there when
//! named and absent otherwise. DataFusion has no notion of hidden columns, so this is an AST
//! rewrite done before planning.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    ExcludeSelectItem, Ident, ObjectName, ObjectNamePart, Query, Select, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, TableFactor, TableWithJoins, VisitMut, VisitorMut,
    WildcardAdditionalOptions,
};
use streamhouse_storage::segment::SYSTEM_COLUMNS;

use super::statement::normalize_ident;

/// A FROM item: its name as a qualifier, and whether it is a topic.
struct Relation {
    qualifier: Option<ObjectName>,
    is_topic: bool,
}

struct WildcardRewriter<'a> {
    is_topic: &'a dyn Fn(&str) -> bool,
}

fn system_exclude() -> ExcludeSelectItem {
    ExcludeSelectItem::Multiple(
        SYSTEM_COLUMNS.iter().map(|c| ObjectName(vec![ObjectNamePart::Identifier(Ident::new(*c))])).collect(),
    )
}

fn with_exclude(mut options: WildcardAdditionalOptions) -> Option<WildcardAdditionalOptions> {
    if options.opt_exclude.is_some() || options.opt_except.is_some() {
        return None; // the user chose what to leave out
    }
    options.opt_exclude = Some(system_exclude());
    Some(options)
}

impl WildcardRewriter<'_> {
    fn relations(&self, from: &[TableWithJoins]) -> Vec<Relation> {
        let mut relations = Vec::new();
        for item in from {
            self.collect(&item.relation, &mut relations);
            for join in &item.joins {
                self.collect(&join.relation, &mut relations);
            }
        }
        relations
    }

    fn collect(&self, factor: &TableFactor, out: &mut Vec<Relation>) {
        match factor {
            TableFactor::Table { name, alias, args: None, .. } => {
                let last = name.0.last().and_then(|p| p.as_ident()).map(normalize_ident).unwrap_or_default();
                let qualifier = match alias {
                    Some(alias) => Some(ObjectName(vec![ObjectNamePart::Identifier(alias.name.clone())])),
                    None => Some(name.clone()),
                };
                out.push(Relation { qualifier, is_topic: (self.is_topic)(&last) });
            }
            TableFactor::NestedJoin { table_with_joins, .. } => {
                out.extend(self.relations(std::slice::from_ref(table_with_joins)));
            }
            other => {
                let qualifier = match other {
                    TableFactor::Derived { alias: Some(alias), .. }
                    | TableFactor::Function { alias: Some(alias), .. }
                    | TableFactor::Table { alias: Some(alias), .. }
                    | TableFactor::UNNEST { alias: Some(alias), .. } => {
                        Some(ObjectName(vec![ObjectNamePart::Identifier(alias.name.clone())]))
                    }
                    _ => None,
                };
                out.push(Relation { qualifier, is_topic: false });
            }
        }
    }

    fn rewrite_select(&self, select: &mut Select) {
        let relations = self.relations(&select.from);
        if !relations.iter().any(|r| r.is_topic) {
            return;
        }
        let mut projection = Vec::with_capacity(select.projection.len());
        for item in std::mem::take(&mut select.projection) {
            match item {
                SelectItem::Wildcard(options) => {
                    if relations.len() == 1 {
                        projection.push(SelectItem::Wildcard(with_exclude(options.clone()).unwrap_or(options)));
                    } else if relations.iter().all(|r| r.qualifier.is_some())
                        && options.opt_exclude.is_none()
                        && options.opt_except.is_none()
                    {
                        // Expand to one qualified wildcard per relation, excluding system
                        // columns from the topics only.
                        for relation in &relations {
                            let Some(qualifier) = relation.qualifier.clone() else { continue };
                            let mut relation_options = options.clone();
                            if relation.is_topic {
                                relation_options.opt_exclude = Some(system_exclude());
                            }
                            projection.push(SelectItem::QualifiedWildcard(
                                SelectItemQualifiedWildcardKind::ObjectName(qualifier),
                                relation_options,
                            ));
                        }
                    } else {
                        projection.push(SelectItem::Wildcard(options));
                    }
                }
                SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(name), options) => {
                    let names_topic = relations.iter().any(|r| {
                        r.is_topic
                            && r.qualifier.as_ref().is_some_and(|q| {
                                q.to_string().eq_ignore_ascii_case(&name.to_string())
                                    || q.0.last().map(|p| p.to_string().to_lowercase())
                                        == name.0.last().map(|p| p.to_string().to_lowercase())
                            })
                    });
                    let options = if names_topic { with_exclude(options.clone()).unwrap_or(options) } else { options };
                    projection.push(SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(name), options));
                }
                other => projection.push(other),
            }
        }
        select.projection = projection;
    }

    fn rewrite_set_expr(&self, body: &mut SetExpr) {
        match body {
            SetExpr::Select(select) => self.rewrite_select(select),
            SetExpr::SetOperation { left, right, .. } => {
                self.rewrite_set_expr(left);
                self.rewrite_set_expr(right);
            }
            // Nested queries are visited on their own.
            _ => {}
        }
    }
}

impl VisitorMut for WildcardRewriter<'_> {
    type Break = ();

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<Self::Break> {
        self.rewrite_set_expr(&mut query.body);
        ControlFlow::Continue(())
    }
}

/// Rewrites every wildcard over a topic in `statement`. `is_topic` says whether an unqualified
/// table name is a topic whose system columns must be hidden.
pub fn hide_system_columns<T: VisitMut>(statement: &mut T, is_topic: &dyn Fn(&str) -> bool) {
    let mut rewriter = WildcardRewriter { is_topic };
    let _ = statement.visit(&mut rewriter);
    lowercase_table_functions(statement);
}

/// DataFusion looks table functions up by their name exactly as written; SQL names are
/// case-insensitive unless quoted, so `TUMBLE(…)` must find `tumble`.
fn lowercase_table_functions<T: VisitMut>(statement: &mut T) {
    struct Lowercase;
    impl VisitorMut for Lowercase {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { name, args: Some(_), .. } = factor {
                for part in name.0.iter_mut() {
                    if let ObjectNamePart::Identifier(ident) = part {
                        if ident.quote_style.is_none() {
                            ident.value = ident.value.to_ascii_lowercase();
                        }
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Lowercase);
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewrite(sql: &str) -> String {
        let mut statement = Parser::new(&PostgreSqlDialect {}).try_with_sql(sql).unwrap().parse_statement().unwrap();
        hide_system_columns(&mut statement, &|name| name == "t" || name == "u");
        statement.to_string()
    }

    #[test]
    fn wildcards_over_topics_exclude_system_columns() {
        assert_eq!(rewrite("SELECT * FROM t"), "SELECT * EXCLUDE (_partition, _offset, _timestamp) FROM t");
        assert_eq!(rewrite("SELECT * FROM other"), "SELECT * FROM other");
        assert_eq!(
            rewrite("SELECT * FROM t AS a JOIN other o ON a.x = o.x"),
            "SELECT a.* EXCLUDE (_partition, _offset, _timestamp), o.* FROM t AS a JOIN other o ON a.x = o.x"
        );
        assert_eq!(
            rewrite("SELECT x FROM (SELECT * FROM u) s"),
            "SELECT x FROM (SELECT * EXCLUDE (_partition, _offset, _timestamp) FROM u) s"
        );
        assert_eq!(rewrite("SELECT t.* FROM t"), "SELECT t.* EXCLUDE (_partition, _offset, _timestamp) FROM t");
        assert_eq!(rewrite("SELECT _offset, * FROM t"), "SELECT _offset, * EXCLUDE (_partition, _offset, _timestamp) FROM t");
    }
}
