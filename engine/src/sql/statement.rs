//! Parsing: splits a query string into statements and turns each into a [`Statement`]. Our own
//! syntax (`CREATE TOPIC`, `WATERMARK FOR`, `APPEND ONLY`, `SHOW TOPICS`, session commands) is
//! recognised from the token stream; everything else is parsed by sqlparser's Postgres dialect
//! and planned by DataFusion.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::Schema;
use datafusion::sql::sqlparser::ast::{
    self, ColumnOption, CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget,
    CreateTableOptions, Expr, ObjectName, SqlOption, Value,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Word};
use streamhouse_catalog::{RetentionPolicy, TopicDefinition, WatermarkSpec};
use streamhouse_storage::segment::{DELETED_COLUMN, SYSTEM_COLUMNS};

use super::duration::{parse_bytes, parse_duration_us};
use super::types::column_field;
use crate::copy::{CopyFormat, CopyOptions};
use crate::{EngineError, Result};

/// Most partitions a topic may have.
pub const PARTITIONS_MAX: u32 = 1024;

/// A parsed statement.
#[derive(Debug, Clone)]
pub enum Statement {
    Empty,
    CreateTopic { definition: TopicDefinition, if_not_exists: bool },
    /// `DROP TOPIC` or `DROP TABLE` (`as_table`: written so, and answered `DROP TABLE`).
    DropTopic { name: String, if_exists: bool, as_table: bool },
    ShowTopics,
    Describe { name: String },
    SetVariable { name: String, value: Option<String> },
    ResetVariable { name: Option<String> },
    ShowVariable { name: String },
    ShowAll,
    Transaction(TransactionCommand),
    /// Accepted and ignored, answered with this tag (`DISCARD ALL`, `DEALLOCATE`).
    Ignored { tag: String },
    CopyFrom { table: String, columns: Vec<String>, options: CopyOptions },
    CopyTo { query: Box<ast::Query>, options: CopyOptions },
    /// Planned and run by DataFusion: queries, INSERT, EXPLAIN.
    Query(Box<ast::Statement>),
    CreateView {
        name: String,
        query: Box<ast::Query>,
        options: BTreeMap<String, String>,
        if_not_exists: bool,
        emit_on_window_close: bool,
    },
    /// `EXPLAIN CREATE MATERIALIZED VIEW …`: the streaming plan.
    ExplainView { query: Box<ast::Query>, emit_on_window_close: bool },
    DropView { name: String, if_exists: bool, cascade: bool },
    ShowViews,
    /// `FLUSH`, or `REFRESH MATERIALIZED VIEW v` (a flush of one view).
    Flush { view: Option<String> },
    /// `SUBSCRIBE [TO] view [WITH (snapshot = …)]`.
    Subscribe { view: String, snapshot: bool },
    /// `COPY (SUBSCRIBE …) TO STDOUT [WITH (…)]`: the changes as COPY data, without end.
    CopySubscribe { view: String, snapshot: bool, options: CopyOptions },
    /// `DECLARE name CURSOR FOR statement` (a query or a SUBSCRIBE).
    Declare { name: String, sql: String, statement: Box<Statement> },
    /// `FETCH [n | ALL | NEXT | FORWARD [n | ALL]] [FROM | IN] name [WITH (timeout = '…')]`;
    /// a count of `None` is ALL; with a timeout, waits at most that long for the first row.
    Fetch { name: String, count: Option<u64>, timeout_us: Option<i64> },
    /// `CLOSE name` or `CLOSE ALL` (`None`).
    Close { name: Option<String> },
    /// `CREATE | ALTER | DROP ROLE`, `GRANT | REVOKE role`, `SET ROLE`.
    Role(crate::auth::roles::RoleStatement),
    /// `GRANT … ON`, `REVOKE … ON`, `ALTER … OWNER TO`.
    Privilege(crate::auth::grants::PrivilegeStatement),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionCommand {
    Begin,
    Commit,
    Rollback,
    /// `SAVEPOINT name`.
    Savepoint(String),
    /// `RELEASE [SAVEPOINT] name`.
    Release(String),
    /// `ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name`.
    RollbackTo(String),
    /// `SET TRANSACTION …` or `SET SESSION CHARACTERISTICS AS TRANSACTION …` with modes that
    /// hold here (see [`transaction_modes`]).
    SetModes,
}

/// The name after `[SAVEPOINT]` from `tokens[index]` on.
fn savepoint_name(tokens: &[&Token], mut index: usize, statement: &str) -> Result<String> {
    if word(tokens.get(index).copied().unwrap_or(&Token::EOF)).as_deref() == Some("SAVEPOINT") {
        index += 1;
    }
    match tokens.get(index) {
        Some(Token::Word(name)) if index + 1 == tokens.len() => {
            Ok(if name.quote_style.is_some() { name.value.clone() } else { name.value.to_ascii_lowercase() })
        }
        _ => Err(EngineError::Syntax(format!("{statement} needs one savepoint name"))),
    }
}

/// Checks the modes of `SET TRANSACTION` from `tokens[index]` on. Every statement commits on its
/// own here, so READ COMMITTED (and READ UNCOMMITTED, which PostgreSQL runs as it), READ WRITE
/// and [NOT] DEFERRABLE hold; REPEATABLE READ, SERIALIZABLE and READ ONLY would promise what a
/// block of statements does not get, and are refused.
fn transaction_modes(tokens: &[&Token], index: usize) -> Result<TransactionCommand> {
    let words: Vec<String> = tokens[index.min(tokens.len())..].iter().map(|t| word(t).unwrap_or_else(|| t.to_string())).collect();
    if words.is_empty() {
        return Err(EngineError::Syntax("SET TRANSACTION needs a transaction mode".into()));
    }
    let refuse = |mode: &str| {
        EngineError::NotSupported(format!(
            "{mode} (every statement commits on its own, so a transaction block is neither isolated from other writers nor read-only; READ COMMITTED and READ WRITE hold)"
        ))
    };
    let at = |i: usize| words.get(i).map(String::as_str);
    let mut i = 0;
    while i < words.len() {
        i += match (at(i), at(i + 1), at(i + 2), at(i + 3)) {
            (Some(","), ..) => 1,
            (Some("ISOLATION"), Some("LEVEL"), Some("READ"), Some("COMMITTED" | "UNCOMMITTED")) => 4,
            (Some("ISOLATION"), Some("LEVEL"), Some("REPEATABLE"), Some("READ")) => return Err(refuse("ISOLATION LEVEL REPEATABLE READ")),
            (Some("ISOLATION"), Some("LEVEL"), Some("SERIALIZABLE"), _) => return Err(refuse("ISOLATION LEVEL SERIALIZABLE")),
            (Some("READ"), Some("WRITE"), ..) => 2,
            (Some("READ"), Some("ONLY"), ..) => return Err(refuse("READ ONLY")),
            (Some("DEFERRABLE"), ..) => 1,
            (Some("NOT"), Some("DEFERRABLE"), ..) => 2,
            (other, ..) => return Err(EngineError::Syntax(format!("syntax error at or near \"{}\" in SET TRANSACTION", other.unwrap_or("")))),
        };
    }
    Ok(TransactionCommand::SetModes)
}

pub(crate) fn tokenize(sql: &str) -> Result<Vec<Token>> {
    Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map_err(|e| EngineError::Syntax(e.to_string()))
}

/// Tokens back to SQL that tokenizes to the same tokens. sqlparser's `Display` writes a literal's
/// unescaped value between quotes (`'it's'`, `E'back\slash'`), which reads back as something
/// else, so quotes and literals are written here with their escapes restored.
pub(crate) fn render(tokens: &[Token]) -> String {
    let mut sql = String::new();
    for token in tokens {
        match token {
            Token::SingleQuotedString(value)
            | Token::EscapedStringLiteral(value)
            | Token::UnicodeStringLiteral(value) => quote_into(&mut sql, '\'', value),
            Token::NationalStringLiteral(value) => {
                sql.push('N');
                quote_into(&mut sql, '\'', value);
            }
            Token::DoubleQuotedString(value) => quote_into(&mut sql, '"', value),
            Token::Word(Word { value, quote_style: Some('"'), .. }) => quote_into(&mut sql, '"', value),
            other => sql.push_str(&other.to_string()),
        }
    }
    sql
}

/// `value` between `quote`s, each `quote` inside doubled (an `E'…'` or `U&'…'` literal's value
/// is already unescaped, so it is written as a standard string).
fn quote_into(sql: &mut String, quote: char, value: &str) {
    sql.push(quote);
    for c in value.chars() {
        if c == quote {
            sql.push(quote);
        }
        sql.push(c);
    }
    sql.push(quote);
}

/// Splits a query string into statement texts at top-level semicolons, dropping empty ones.
pub fn split_statements(sql: &str) -> Result<Vec<String>> {
    let tokens = tokenize(sql)?;
    let mut statements = Vec::new();
    let mut current: Vec<Token> = Vec::new();
    for token in tokens {
        if token == Token::SemiColon {
            push_statement(&mut statements, &current);
            current.clear();
        } else {
            current.push(token);
        }
    }
    push_statement(&mut statements, &current);
    Ok(statements)
}

fn push_statement(statements: &mut Vec<String>, tokens: &[Token]) {
    if tokens.iter().any(|t| !matches!(t, Token::Whitespace(_))) {
        statements.push(render(tokens).trim().to_string());
    }
}

/// An unquoted word, upper-cased (a keyword as the statement parsers compare it).
pub(crate) fn word(token: &Token) -> Option<String> {
    match token {
        Token::Word(Word { value, quote_style: None, .. }) => Some(value.to_ascii_uppercase()),
        _ => None,
    }
}

/// A token's value as a setting: identifiers, numbers and string literals.
fn setting_value(token: &Token) -> Option<String> {
    match token {
        Token::Word(w) => Some(w.value.clone()),
        Token::Number(n, _) => Some(n.clone()),
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) | Token::EscapedStringLiteral(s) => {
            Some(s.clone())
        }
        Token::Minus => Some("-".into()),
        Token::Period => Some(".".into()),
        _ => None,
    }
}

/// Parses one statement (as split by [`split_statements`]).
pub fn parse_statement(sql: &str) -> Result<Statement> {
    let tokens = tokenize(sql)?;
    let significant: Vec<&Token> = tokens.iter().filter(|t| !matches!(t, Token::Whitespace(_))).collect();
    let words: Vec<String> = significant.iter().map(|t| word(t).unwrap_or_default()).collect();
    if let Some(statement) = crate::auth::grants::parse(&significant)? {
        return Ok(Statement::Privilege(statement));
    }
    if let Some(statement) = crate::auth::roles::parse(sql, &significant)? {
        return Ok(Statement::Role(statement));
    }
    let first = words.first().map(String::as_str).unwrap_or("");
    let second = words.get(1).map(String::as_str).unwrap_or("");
    match (first, second) {
        ("", _) if significant.is_empty() => Ok(Statement::Empty),
        ("BEGIN", _) | ("START", "TRANSACTION") => Ok(Statement::Transaction(TransactionCommand::Begin)),
        ("COMMIT", _) | ("END", _) => Ok(Statement::Transaction(TransactionCommand::Commit)),
        ("ROLLBACK", _) if words.iter().any(|w| w == "TO") => {
            let to = words.iter().position(|w| w == "TO").unwrap_or(1);
            Ok(Statement::Transaction(TransactionCommand::RollbackTo(savepoint_name(&significant, to + 1, "ROLLBACK TO SAVEPOINT")?)))
        }
        ("ROLLBACK", _) | ("ABORT", _) => Ok(Statement::Transaction(TransactionCommand::Rollback)),
        ("SAVEPOINT", _) => Ok(Statement::Transaction(TransactionCommand::Savepoint(savepoint_name(&significant, 1, "SAVEPOINT")?))),
        ("RELEASE", _) => Ok(Statement::Transaction(TransactionCommand::Release(savepoint_name(&significant, 1, "RELEASE SAVEPOINT")?))),
        ("SET", "TRANSACTION") => Ok(Statement::Transaction(transaction_modes(&significant, 2)?)),
        ("SET", "SESSION") if words.get(2).map(String::as_str) == Some("CHARACTERISTICS") => {
            if words.get(3).map(String::as_str) != Some("AS") || words.get(4).map(String::as_str) != Some("TRANSACTION") {
                return Err(EngineError::Syntax("expected AS TRANSACTION after SET SESSION CHARACTERISTICS".into()));
            }
            Ok(Statement::Transaction(transaction_modes(&significant, 5)?))
        }
        ("DISCARD", _) => Ok(Statement::Ignored { tag: format!("DISCARD {second}").trim().to_string() }),
        ("DEALLOCATE", _) => Ok(Statement::Ignored { tag: "DEALLOCATE".into() }),
        ("SET", _) => parse_set(&significant),
        ("RESET", "ALL") => Ok(Statement::ResetVariable { name: None }),
        ("RESET", _) => match significant.get(1).and_then(|t| setting_value(t)) {
            Some(name) => Ok(Statement::ResetVariable { name: Some(name.to_ascii_lowercase()) }),
            None => Err(EngineError::Syntax("RESET needs a setting name".into())),
        },
        ("SHOW", "TOPICS") | ("SHOW", "TABLES") => Ok(Statement::ShowTopics),
        ("SHOW", "MATERIALIZED") if words.get(2).map(String::as_str) == Some("VIEWS") && significant.len() == 3 => {
            Ok(Statement::ShowViews)
        }
        ("FLUSH", _) if significant.len() == 1 => Ok(Statement::Flush { view: None }),
        ("REFRESH", "MATERIALIZED") => parse_refresh(&tokens),
        ("CREATE", "MATERIALIZED") => parse_create_view(sql),
        ("EXPLAIN", "CREATE") => match parse_create_view(&render(&tokens[tokens.iter().position(|t| word(t).as_deref() == Some("EXPLAIN")).unwrap_or(0) + 1..]))? {
            Statement::CreateView { query, emit_on_window_close, .. } => Ok(Statement::ExplainView { query, emit_on_window_close }),
            _ => Err(EngineError::NotSupported("EXPLAIN of this statement".into())),
        },
        ("DROP", "MATERIALIZED") => parse_drop_view(sql),
        ("SUBSCRIBE", _) => parse_subscribe(&tokens),
        ("COPY", _) if matches!(significant.get(1), Some(Token::LParen)) && words.get(2).map(String::as_str) == Some("SUBSCRIBE") => {
            parse_copy_subscribe(&tokens)
        }
        ("DECLARE", _) => parse_declare(&tokens),
        ("FETCH", _) => parse_fetch(&tokens),
        ("CLOSE", "ALL") if significant.len() == 2 => Ok(Statement::Close { name: None }),
        ("CLOSE", _) => match significant.get(1).and_then(|t| identifier(t)) {
            Some(name) if significant.len() == 2 => Ok(Statement::Close { name: Some(name) }),
            _ => Err(EngineError::Syntax("expected CLOSE name or CLOSE ALL".into())),
        },
        ("SHOW", "ALL") => Ok(Statement::ShowAll),
        ("SHOW", "TRANSACTION") => Ok(Statement::ShowVariable { name: "transaction_isolation".into() }),
        ("SHOW", "TIME") => Ok(Statement::ShowVariable { name: "timezone".into() }),
        ("SHOW", _) => match significant.get(1).and_then(|t| setting_value(t)) {
            Some(name) if significant.len() == 2 => Ok(Statement::ShowVariable { name: name.to_ascii_lowercase() }),
            _ => Err(EngineError::Syntax("SHOW needs one setting name, TOPICS, TABLES or ALL".into())),
        },
        ("DESCRIBE", _) | ("DESC", _) => {
            let name = render(&tokens).trim().splitn(2, char::is_whitespace).nth(1).unwrap_or("").trim().to_string();
            if name.is_empty() {
                return Err(EngineError::Syntax("DESCRIBE needs a topic name".into()));
            }
            let object = Parser::new(&PostgreSqlDialect {}).try_with_sql(&name)?.parse_object_name(false)?;
            Ok(Statement::Describe { name: object_name(&object)? })
        }
        ("CREATE", "TOPIC") | ("CREATE", "TABLE") => parse_create_topic(&tokens),
        ("DROP", "TOPIC") | ("DROP", "TABLE") => parse_drop(sql),
        _ => parse_other(sql),
    }
}

fn parse_set(tokens: &[&Token]) -> Result<Statement> {
    // SET [SESSION | LOCAL] name { TO | = } value [, value …] | SET TIME ZONE value
    let mut index = 1;
    if matches!(tokens.get(index).and_then(|t| word(t)).as_deref(), Some("SESSION" | "LOCAL")) {
        index += 1;
    }
    let name = if word(tokens.get(index).copied().unwrap_or(&Token::EOF)).as_deref() == Some("TIME")
        && word(tokens.get(index + 1).copied().unwrap_or(&Token::EOF)).as_deref() == Some("ZONE")
    {
        index += 2;
        "timezone".to_string()
    } else {
        let mut name = tokens
            .get(index)
            .and_then(|t| setting_value(t))
            .ok_or_else(|| EngineError::Syntax("SET needs a setting name".into()))?;
        index += 1;
        // Dotted names: SET datafusion.execution.batch_size = …
        while tokens.get(index) == Some(&&Token::Period) {
            let part = tokens.get(index + 1).and_then(|t| setting_value(t)).unwrap_or_default();
            name = format!("{name}.{part}");
            index += 2;
        }
        if matches!(tokens.get(index), Some(Token::Eq)) || word(tokens.get(index).copied().unwrap_or(&Token::EOF)).as_deref() == Some("TO") {
            index += 1;
        } else {
            return Err(EngineError::Syntax(format!("expected = or TO after SET {name}")));
        }
        name.to_ascii_lowercase()
    };
    let rest = &tokens[index.min(tokens.len())..];
    if rest.is_empty() {
        return Err(EngineError::Syntax(format!("SET {name} needs a value")));
    }
    if rest.len() == 1 && word(rest[0]).as_deref() == Some("DEFAULT") {
        return Ok(Statement::SetVariable { name, value: None });
    }
    let mut value = String::new();
    for token in rest {
        match token {
            Token::Comma => value.push_str(", "),
            other => value.push_str(
                &setting_value(other).ok_or_else(|| EngineError::Syntax(format!("invalid value for SET {name}: {other}")))?,
            ),
        }
    }
    Ok(Statement::SetVariable { name, value: Some(value) })
}

/// The single unqualified name of a topic (`public.x` and `streamhouse.public.x` also name `x`).
pub fn object_name(name: &ObjectName) -> Result<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(|i| normalize_ident(i)).unwrap_or_else(|| p.to_string()))
        .collect();
    match parts.as_slice() {
        [name] => Ok(name.clone()),
        [schema, name] if schema == "public" => Ok(name.clone()),
        [_, schema, name] if schema == "public" => Ok(name.clone()),
        _ => Err(EngineError::UndefinedTable(name.to_string())),
    }
}

/// Postgres folds unquoted identifiers to lower case.
pub fn normalize_ident(ident: &ast::Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

fn parse_drop(sql: &str) -> Result<Statement> {
    let as_table = sql.split_whitespace().nth(1).is_some_and(|word| word.eq_ignore_ascii_case("TABLE"));
    let sql = replace_second_word(sql, "TABLE");
    let statement = Parser::new(&PostgreSqlDialect {}).try_with_sql(&sql)?.parse_statement()?;
    match statement {
        ast::Statement::Drop { names, if_exists, cascade: _, .. } if names.len() == 1 => {
            Ok(Statement::DropTopic { name: object_name(&names[0])?, if_exists, as_table })
        }
        ast::Statement::Drop { .. } => Err(EngineError::NotSupported("dropping several topics in one statement".into())),
        _ => Err(EngineError::Syntax("expected DROP TOPIC name".into())),
    }
}

fn parse_create_view(sql: &str) -> Result<Statement> {
    // A trailing EMIT ON WINDOW CLOSE is ours; sqlparser parses the rest.
    let tokens = tokenize(sql)?;
    let significant: Vec<usize> = (0..tokens.len()).filter(|&i| !matches!(tokens[i], Token::Whitespace(_))).collect();
    let tail: Vec<String> =
        significant.iter().rev().take(4).rev().map(|&i| word(&tokens[i]).unwrap_or_default()).collect();
    let emit_on_window_close = tail == ["EMIT", "ON", "WINDOW", "CLOSE"];
    let sql = if emit_on_window_close { render(&tokens[..significant[significant.len() - 4]]) } else { sql.to_string() };
    let statement = Parser::new(&PostgreSqlDialect {}).try_with_sql(&sql)?.parse_statement()?;
    let ast::Statement::CreateView(view) = statement else {
        return Err(EngineError::Syntax("expected CREATE MATERIALIZED VIEW name AS query".into()));
    };
    if !view.materialized {
        return Err(EngineError::NotSupported("CREATE VIEW (only materialized views)".into()));
    }
    if view.or_replace || view.or_alter {
        return Err(EngineError::NotSupported("CREATE OR REPLACE MATERIALIZED VIEW".into()));
    }
    if !view.columns.is_empty() {
        return Err(EngineError::NotSupported("a column list on a materialized view (alias the query's columns)".into()));
    }
    let mut options = BTreeMap::new();
    let listed: &[SqlOption] = match &view.options {
        CreateTableOptions::None => &[],
        CreateTableOptions::With(options) => options,
        other => return Err(EngineError::NotSupported(format!("materialized view options {other}"))),
    };
    for option in listed {
        let SqlOption::KeyValue { key, value } = option else {
            return Err(EngineError::InvalidParameter(format!("invalid materialized view option {option}")));
        };
        let key = key.value.to_ascii_lowercase();
        let text = option_text(value)?;
        match key.as_str() {
            "refresh" => {
                crate::stream::view::RefreshMode::parse(&text)?;
                options.insert(key, text.trim().to_ascii_lowercase());
            }
            // `emit` is how the catalog records EMIT ON WINDOW CLOSE: not an option to set.
            _ => return Err(EngineError::InvalidParameter(format!("unknown materialized view option \"{key}\""))),
        }
    }
    if emit_on_window_close {
        options.insert(EMIT_OPTION.to_string(), EMIT_ON_WINDOW_CLOSE.to_string());
    }
    Ok(Statement::CreateView {
        name: object_name(&view.name)?,
        query: view.query,
        options,
        if_not_exists: view.if_not_exists,
        emit_on_window_close,
    })
}

/// An identifier token as a name: unquoted ones fold to lower case.
fn identifier(token: &Token) -> Option<String> {
    match token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_lowercase()),
        Token::Word(w) => Some(w.value.clone()),
        _ => None,
    }
}

/// The tokens after the first `skip` significant ones, rendered back to SQL.
fn rest_after(tokens: &[Token], skip: usize) -> String {
    let mut seen = 0;
    for (index, token) in tokens.iter().enumerate() {
        if !matches!(token, Token::Whitespace(_)) {
            if seen == skip {
                return render(&tokens[index..]);
            }
            seen += 1;
        }
    }
    String::new()
}

fn parse_subscribe(tokens: &[Token]) -> Result<Statement> {
    let significant: Vec<&Token> = tokens.iter().filter(|t| !matches!(t, Token::Whitespace(_))).collect();
    let skip = if significant.get(1).and_then(|t| word(t)).as_deref() == Some("TO") { 2 } else { 1 };
    let rest = rest_after(tokens, skip);
    let mut parser = Parser::new(&PostgreSqlDialect {}).try_with_sql(&rest)?;
    let view = object_name(&parser.parse_object_name(false)?)?;
    let mut snapshot = true;
    for option in parser.parse_options(datafusion::sql::sqlparser::keywords::Keyword::WITH)? {
        let SqlOption::KeyValue { key, value } = &option else {
            return Err(EngineError::InvalidParameter(format!("invalid SUBSCRIBE option {option}")));
        };
        match key.value.to_ascii_lowercase().as_str() {
            "snapshot" => {
                snapshot = match option_text(value)?.to_ascii_lowercase().as_str() {
                    "true" | "on" | "1" => true,
                    "false" | "off" | "0" => false,
                    other => return Err(EngineError::InvalidParameter(format!("snapshot must be true or false, not \"{other}\""))),
                }
            }
            other => return Err(EngineError::InvalidParameter(format!("unknown SUBSCRIBE option \"{other}\""))),
        }
    }
    if parser.peek_token().token != Token::EOF {
        return Err(EngineError::Syntax(format!("unexpected {} after SUBSCRIBE {view}", parser.peek_token().token)));
    }
    Ok(Statement::Subscribe { view, snapshot })
}

fn parse_copy_subscribe(tokens: &[Token]) -> Result<Statement> {
    // COPY ( SUBSCRIBE … ) TO STDOUT [WITH (…)]: the parenthesized statement is ours; the
    // rest is parsed by sqlparser around a stand-in query.
    let open = tokens.iter().position(|t| *t == Token::LParen).unwrap_or(0);
    let mut depth = 0;
    let mut close = None;
    for (index, token) in tokens.iter().enumerate().skip(open) {
        match token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    close = Some(index);
                    break;
                }
            }
            _ => {}
        }
    }
    let close = close.ok_or_else(|| EngineError::Syntax("unbalanced parentheses in COPY (SUBSCRIBE …)".into()))?;
    let Statement::Subscribe { view, snapshot } = parse_subscribe(&tokens[open + 1..close])? else {
        return Err(EngineError::Syntax("expected COPY (SUBSCRIBE …) TO STDOUT".into()));
    };
    let stand_in = format!("COPY (SELECT 1) {}", render(&tokens[close + 1..]));
    match parse_other(&stand_in)? {
        Statement::CopyTo { options, .. } => Ok(Statement::CopySubscribe { view, snapshot, options }),
        _ => Err(EngineError::Syntax("expected COPY (SUBSCRIBE …) TO STDOUT".into())),
    }
}

fn parse_declare(tokens: &[Token]) -> Result<Statement> {
    // DECLARE name [BINARY] [ASENSITIVE | INSENSITIVE] [[NO] SCROLL] CURSOR [{WITH | WITHOUT} HOLD] FOR statement
    let significant: Vec<&Token> = tokens.iter().filter(|t| !matches!(t, Token::Whitespace(_))).collect();
    let name = significant.get(1).and_then(|t| identifier(t)).ok_or_else(|| EngineError::Syntax("DECLARE needs a cursor name".into()))?;
    let Some(position) = significant.iter().position(|t| word(t).as_deref() == Some("FOR")) else {
        return Err(EngineError::Syntax("expected DECLARE name CURSOR FOR statement".into()));
    };
    let between: Vec<String> = significant[2..position].iter().map(|t| word(t).unwrap_or_default()).collect();
    if !between.iter().any(|w| w == "CURSOR") {
        return Err(EngineError::Syntax("expected DECLARE name CURSOR FOR statement".into()));
    }
    if between.iter().any(|w| w == "BINARY" || w == "SCROLL" && !between.iter().any(|w| w == "NO")) {
        return Err(EngineError::NotSupported("BINARY and SCROLL cursors".into()));
    }
    let sql = rest_after(tokens, position + 1);
    let statement = parse_statement(&sql)?;
    match statement {
        Statement::Query(ref query) if matches!(query.as_ref(), ast::Statement::Query(_)) => {}
        Statement::Subscribe { .. } => {}
        _ => return Err(EngineError::Syntax("a cursor is declared FOR a query or a SUBSCRIBE".into())),
    }
    Ok(Statement::Declare { name, sql, statement: Box::new(statement) })
}

fn parse_fetch(tokens: &[Token]) -> Result<Statement> {
    let all: Vec<&Token> = tokens.iter().filter(|t| !matches!(t, Token::Whitespace(_))).collect();
    let with = all.iter().position(|t| word(t).as_deref() == Some("WITH"));
    let significant = &all[..with.unwrap_or(all.len())];
    let mut timeout_us = None;
    if let Some(with) = with {
        let mut parser = Parser::new(&PostgreSqlDialect {}).try_with_sql(&rest_after(tokens, with))?;
        for option in parser.parse_options(datafusion::sql::sqlparser::keywords::Keyword::WITH)? {
            match &option {
                SqlOption::KeyValue { key, value } if key.value.eq_ignore_ascii_case("timeout") => {
                    let text = option_text(value)?;
                    timeout_us = Some(parse_duration_us(&text).map_err(|e| EngineError::InvalidParameter(format!("FETCH timeout: {e}")))?);
                }
                other => return Err(EngineError::InvalidParameter(format!("unknown FETCH option {other}"))),
            }
        }
    }
    let mut index = 1;
    let mut count = Some(1);
    let number = |token: Option<&&Token>| match token {
        Some(Token::Number(n, _)) => n.parse::<u64>().ok(),
        _ => None,
    };
    match significant.get(index).and_then(|t| word(t)).as_deref() {
        Some("NEXT") => index += 1,
        Some("ALL") => {
            count = None;
            index += 1;
        }
        Some("FORWARD") => {
            index += 1;
            if significant.get(index).and_then(|t| word(t)).as_deref() == Some("ALL") {
                count = None;
                index += 1;
            } else if let Some(n) = number(significant.get(index)) {
                count = Some(n);
                index += 1;
            }
        }
        _ => {
            if let Some(n) = number(significant.get(index)) {
                count = Some(n);
                index += 1;
            }
        }
    }
    if matches!(significant.get(index).and_then(|t| word(t)).as_deref(), Some("FROM" | "IN")) {
        index += 1;
    }
    match (significant.get(index).and_then(|t| identifier(t)), significant.len() == index + 1) {
        (Some(name), true) => Ok(Statement::Fetch { name, count, timeout_us }),
        _ => Err(EngineError::Syntax("expected FETCH [n | ALL | NEXT | FORWARD n] [FROM] cursor".into())),
    }
}

/// The catalog option that records a view's emission mode.
pub const EMIT_OPTION: &str = "emit";
pub const EMIT_ON_WINDOW_CLOSE: &str = "on window close";

fn parse_drop_view(sql: &str) -> Result<Statement> {
    let statement = Parser::new(&PostgreSqlDialect {}).try_with_sql(sql)?.parse_statement()?;
    match statement {
        ast::Statement::Drop { object_type: ast::ObjectType::MaterializedView, names, if_exists, cascade, .. } => {
            match names.as_slice() {
                [name] => Ok(Statement::DropView { name: object_name(name)?, if_exists, cascade }),
                _ => Err(EngineError::NotSupported("dropping several materialized views in one statement".into())),
            }
        }
        _ => Err(EngineError::Syntax("expected DROP MATERIALIZED VIEW name".into())),
    }
}

fn parse_refresh(tokens: &[Token]) -> Result<Statement> {
    // REFRESH MATERIALIZED VIEW name
    let significant: Vec<&Token> = tokens.iter().filter(|t| !matches!(t, Token::Whitespace(_))).collect();
    if significant.len() < 4 || word(significant[2]).as_deref() != Some("VIEW") {
        return Err(EngineError::Syntax("expected REFRESH MATERIALIZED VIEW name".into()));
    }
    let rest = render(&tokens[tokens.iter().position(|t| word(t).as_deref() == Some("VIEW")).unwrap_or(0) + 1..]);
    let object = Parser::new(&PostgreSqlDialect {}).try_with_sql(rest.trim())?.parse_object_name(false)?;
    Ok(Statement::Flush { view: Some(object_name(&object)?) })
}

/// `CREATE TOPIC x …` → `CREATE TABLE x …`, so that sqlparser parses the rest.
fn replace_second_word(sql: &str, with: &str) -> String {
    let trimmed = sql.trim_start();
    let mut parts = trimmed.splitn(2, char::is_whitespace);
    let first = parts.next().unwrap_or("");
    let rest = parts.next().unwrap_or("").trim_start();
    let after = rest.split_once(char::is_whitespace).map(|(_, r)| r).unwrap_or("");
    format!("{first} {with} {after}")
}

/// Removes `WATERMARK FOR col AS expr` from a column list and `APPEND ONLY` after it.
/// Returns the remaining tokens, the watermark tokens and whether APPEND ONLY was present.
fn extract_streaming_clauses(tokens: &[Token]) -> Result<(Vec<Token>, Option<Vec<Token>>, bool)> {
    let mut output: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut watermark = None;
    let mut append_only = false;
    let mut depth = 0i32;
    let mut index = 0;
    let next_word = |from: usize| {
        tokens[from..].iter().find(|t| !matches!(t, Token::Whitespace(_))).and_then(word)
    };
    while index < tokens.len() {
        let token = &tokens[index];
        match token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
        if depth == 1 && word(token).as_deref() == Some("WATERMARK") && next_word(index + 1).as_deref() == Some("FOR") {
            // Take tokens up to the comma or closing parenthesis that ends the clause.
            let mut clause = Vec::new();
            let mut inner = 0i32;
            while index < tokens.len() {
                match &tokens[index] {
                    Token::LParen => inner += 1,
                    Token::RParen if inner == 0 => break,
                    Token::RParen => inner -= 1,
                    Token::Comma if inner == 0 => break,
                    _ => {}
                }
                clause.push(tokens[index].clone());
                index += 1;
            }
            // Drop the comma that separated the clause from the previous column.
            while matches!(output.last(), Some(Token::Whitespace(_))) {
                output.pop();
            }
            if matches!(output.last(), Some(Token::Comma)) {
                output.pop();
            } else if matches!(tokens.get(index), Some(Token::Comma)) {
                index += 1;
            }
            if watermark.replace(clause).is_some() {
                return Err(EngineError::InvalidDefinition("a topic can have only one WATERMARK".into()));
            }
            continue;
        }
        if depth == 0 && word(token).as_deref() == Some("APPEND") && next_word(index + 1).as_deref() == Some("ONLY") {
            append_only = true;
            index += 1;
            while index < tokens.len() && word(&tokens[index]).as_deref() != Some("ONLY") {
                index += 1;
            }
            index += 1;
            continue;
        }
        output.push(token.clone());
        index += 1;
    }
    Ok((output, watermark, append_only))
}

/// PostgreSQL's bound on the columns of a table (`MaxHeapAttributeNumber`).
pub const TABLE_COLUMNS_MAX: usize = 1600;

/// Refuses a topic of more columns than a PostgreSQL table may have, as PostgreSQL does.
pub fn check_column_count(columns: usize) -> Result<()> {
    match columns > TABLE_COLUMNS_MAX {
        true => Err(EngineError::Sqlstate {
            code: "54011",
            message: format!("tables can have at most {TABLE_COLUMNS_MAX} columns (this one has {columns})"),
        }),
        false => Ok(()),
    }
}

/// `CREATE TOPIC` and `CREATE TABLE` alike: a table without a key is a stream, with or without
/// `APPEND ONLY`; a `PRIMARY KEY` (on a column or as a table constraint) makes a keyed table.
fn parse_create_topic(tokens: &[Token]) -> Result<Statement> {
    let (rest, watermark_tokens, append_only) = extract_streaming_clauses(tokens)?;
    let sql = replace_second_word(&render(&rest), "TABLE");
    let statement = Parser::new(&PostgreSqlDialect {}).try_with_sql(&sql)?.parse_statement()?;
    let ast::Statement::CreateTable(create) = statement else {
        return Err(EngineError::Syntax("expected CREATE TOPIC name (columns …)".into()));
    };
    let name = object_name(&create.name)?;
    if create.query.is_some() {
        return Err(EngineError::NotSupported("CREATE TOPIC … AS SELECT".into()));
    }
    if create.columns.is_empty() {
        return Err(EngineError::InvalidDefinition(format!("topic \"{name}\" needs at least one column")));
    }
    check_column_count(create.columns.len())?;
    let primary_key = primary_key_columns(&create)?;
    if !primary_key.is_empty() && append_only {
        return Err(EngineError::InvalidDefinition(format!(
            "table \"{name}\" cannot be both APPEND ONLY and keyed by a PRIMARY KEY"
        )));
    }
    let mut fields = Vec::with_capacity(create.columns.len());
    for column in &create.columns {
        let column_name = normalize_ident(&column.name);
        if SYSTEM_COLUMNS.contains(&column_name.as_str()) || column_name == DELETED_COLUMN {
            return Err(EngineError::InvalidDefinition(format!(
                "column name \"{column_name}\" is reserved for a system column"
            )));
        }
        if fields.iter().any(|f: &arrow::datatypes::Field| f.name() == &column_name) {
            return Err(EngineError::InvalidDefinition(format!("column \"{column_name}\" specified more than once")));
        }
        let mut nullable = true;
        for option in &column.options {
            match &option.option {
                ColumnOption::NotNull | ColumnOption::PrimaryKey(_) => nullable = false,
                ColumnOption::Null => nullable = true,
                other => {
                    return Err(EngineError::NotSupported(format!("column option {other} (on \"{column_name}\")")))
                }
            }
        }
        // Primary key columns are NOT NULL, as in PostgreSQL.
        let nullable = nullable && !primary_key.contains(&column_name);
        fields.push(column_field(&column_name, &column.data_type, nullable)?);
    }
    for key in &primary_key {
        if !fields.iter().any(|f| f.name() == key) {
            return Err(EngineError::UndefinedColumn(format!(
                "column \"{key}\" named in key does not exist"
            )));
        }
    }
    let schema = Arc::new(Schema::new(fields));
    let mut definition = TopicDefinition {
        name: name.clone(),
        schema: schema.clone(),
        partitions: 1,
        partition_key: Vec::new(),
        retention: RetentionPolicy::default(),
        watermark: None,
        primary_key: primary_key.clone(),
    };
    let options = match &create.table_options {
        CreateTableOptions::None => Vec::new(),
        CreateTableOptions::With(options) => options.clone(),
        other => return Err(EngineError::NotSupported(format!("table options {other}"))),
    };
    for option in options {
        apply_topic_option(&mut definition, &option)?;
    }
    if let Some(clause) = watermark_tokens {
        definition.watermark = Some(parse_watermark(&clause, &schema)?);
    }
    if !primary_key.is_empty() {
        keyed_table_rules(&mut definition)?;
    }
    Ok(Statement::CreateTopic { definition, if_not_exists: create.if_not_exists })
}

/// The PRIMARY KEY columns of a CREATE TABLE, from a column option or a table constraint.
fn primary_key_columns(create: &ast::CreateTable) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    for column in &create.columns {
        if column.options.iter().any(|o| matches!(o.option, ColumnOption::PrimaryKey(_))) {
            if !keys.is_empty() {
                return Err(EngineError::InvalidDefinition("multiple primary keys are not allowed".into()));
            }
            keys.push(normalize_ident(&column.name));
        }
    }
    for constraint in &create.constraints {
        match constraint {
            ast::TableConstraint::PrimaryKey(key) => {
                if !keys.is_empty() {
                    return Err(EngineError::InvalidDefinition("multiple primary keys are not allowed".into()));
                }
                for column in &key.columns {
                    match &column.column.expr {
                        Expr::Identifier(ident) => keys.push(normalize_ident(ident)),
                        other => {
                            return Err(EngineError::NotSupported(format!("PRIMARY KEY on the expression {other}")))
                        }
                    }
                }
            }
            other => return Err(EngineError::NotSupported(format!("table constraint {other}"))),
        }
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(duplicate) = keys.iter().find(|k| !seen.insert(k.as_str())) {
        return Err(EngineError::InvalidDefinition(format!("column \"{duplicate}\" appears twice in primary key")));
    }
    Ok(keys)
}

/// What a keyed table allows: partitioned by (part of) its key, compacted rather than expired.
fn keyed_table_rules(definition: &mut TopicDefinition) -> Result<()> {
    let name = &definition.name;
    if definition.watermark.is_some() {
        return Err(EngineError::NotSupported(format!(
            "WATERMARK on keyed table \"{name}\"; declare event time on an append-only topic"
        )));
    }
    if definition.retention != RetentionPolicy::default() {
        return Err(EngineError::InvalidDefinition(format!(
            "keyed table \"{name}\" keeps the latest row of every key and is compacted, not expired: drop the retention option"
        )));
    }
    if definition.partition_key.is_empty() {
        definition.partition_key = definition.primary_key.clone();
    } else if let Some(column) = definition.partition_key.iter().find(|c| !definition.primary_key.contains(c)) {
        return Err(EngineError::InvalidDefinition(format!(
            "partition key column \"{column}\" of keyed table \"{name}\" is not a primary key column"
        )));
    }
    Ok(())
}

fn option_text(value: &Expr) -> Result<String> {
    match value {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Ok(s.clone()),
            Value::Number(n, _) => Ok(n.to_string()),
            Value::Boolean(b) => Ok(b.to_string()),
            other => Ok(other.to_string()),
        },
        Expr::Identifier(ident) => Ok(ident.value.clone()),
        other => Err(EngineError::InvalidParameter(format!("invalid option value {other}"))),
    }
}

fn apply_topic_option(definition: &mut TopicDefinition, option: &SqlOption) -> Result<()> {
    let SqlOption::KeyValue { key, value } = option else {
        return Err(EngineError::InvalidParameter(format!("invalid topic option {option}")));
    };
    let key = key.value.to_ascii_lowercase();
    let text = option_text(value)?;
    match key.as_str() {
        "partitions" => {
            let partitions: u32 = text.trim().parse().map_err(|_| {
                EngineError::InvalidParameter(format!("partitions must be a whole number, got \"{text}\""))
            })?;
            if partitions == 0 || partitions > PARTITIONS_MAX {
                return Err(EngineError::InvalidParameter(format!(
                    "partitions must be between 1 and {PARTITIONS_MAX}, got {partitions}"
                )));
            }
            definition.partitions = partitions;
        }
        "retention" | "retention_time" => {
            let lowered = text.trim().to_ascii_lowercase();
            definition.retention.time_ms = if lowered == "infinite" || lowered == "forever" {
                None
            } else {
                Some((parse_duration_us(&text)? / 1000).max(1) as u64)
            };
        }
        "retention_bytes" => definition.retention.bytes = Some(parse_bytes(&text)?),
        "partition_key" => {
            let mut columns = Vec::new();
            for column in text.split(',').map(|c| c.trim().to_lowercase()).filter(|c| !c.is_empty()) {
                if definition.schema.index_of(&column).is_err() {
                    return Err(EngineError::InvalidDefinition(format!(
                        "partition_key column \"{column}\" is not a column of the topic"
                    )));
                }
                columns.push(column);
            }
            definition.partition_key = columns;
        }
        other => {
            return Err(EngineError::InvalidParameter(format!(
                "unrecognized topic option \"{other}\" (known: partitions, retention, retention_bytes, partition_key)"
            )))
        }
    }
    Ok(())
}

/// `WATERMARK FOR col AS col [- INTERVAL '…']`
fn parse_watermark(clause: &[Token], schema: &Schema) -> Result<WatermarkSpec> {
    let significant: Vec<Token> = clause.iter().filter(|t| !matches!(t, Token::Whitespace(_))).cloned().collect();
    let invalid = || EngineError::InvalidDefinition(format!(
        "invalid watermark \"{}\": expected WATERMARK FOR column AS column - INTERVAL '…'",
        render(clause).trim()
    ));
    // WATERMARK FOR <ident> AS <expr>
    let column = match significant.get(2) {
        Some(Token::Word(w)) => if w.quote_style.is_some() { w.value.clone() } else { w.value.to_lowercase() },
        _ => return Err(invalid()),
    };
    if word(significant.get(3).unwrap_or(&Token::EOF)).as_deref() != Some("AS") {
        return Err(invalid());
    }
    let expression_tokens: Vec<Token> = significant[4..].to_vec();
    // The expression as written, whitespace included, for SHOW and DESCRIBE.
    let as_position = clause.iter().position(|t| word(t).as_deref() == Some("AS")).unwrap_or(0);
    let expression_text = render(&clause[as_position + 1..]);
    let expression = Parser::new(&PostgreSqlDialect {}).with_tokens(expression_tokens).parse_expr()?;
    let field = schema
        .field_with_name(&column)
        .map_err(|_| EngineError::InvalidDefinition(format!("watermark column \"{column}\" is not a column")))?;
    if !matches!(
        field.data_type(),
        arrow::datatypes::DataType::Timestamp(_, _) | arrow::datatypes::DataType::Date32
    ) {
        return Err(EngineError::InvalidDefinition(format!(
            "watermark column \"{column}\" must be a timestamp, not {}",
            field.data_type()
        )));
    }
    let is_column = |e: &Expr| matches!(e, Expr::Identifier(i) if normalize_ident(i) == column);
    let delay_us = match &expression {
        e if is_column(e) => 0,
        Expr::BinaryOp { left, op: ast::BinaryOperator::Minus, right } if is_column(left) => match right.as_ref() {
            Expr::Interval(interval) => {
                let value = option_text(&interval.value)?;
                let unit = interval.leading_field.as_ref().map(|f| f.to_string()).unwrap_or_default();
                parse_duration_us(&format!("{value} {unit}"))?
            }
            _ => return Err(invalid()),
        },
        _ => return Err(invalid()),
    };
    Ok(WatermarkSpec { column, delay_us, expression: expression_text.trim().to_string() })
}

fn copy_options(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<CopyOptions> {
    let mut result = CopyOptions::default();
    for option in options {
        match option {
            CopyOption::Format(format) => {
                result.format = match format.value.to_ascii_lowercase().as_str() {
                    "text" => CopyFormat::Text,
                    "csv" => CopyFormat::Csv,
                    "binary" => return Err(EngineError::NotSupported("COPY FORMAT binary".into())),
                    other => return Err(EngineError::InvalidParameter(format!("COPY format \"{other}\" not recognized"))),
                }
            }
            CopyOption::Delimiter(c) => result.delimiter = Some(*c),
            CopyOption::Null(s) => result.null = Some(s.clone()),
            CopyOption::Header(h) => result.header = *h,
            CopyOption::Quote(c) => result.quote = Some(*c),
            CopyOption::Escape(c) => result.escape = Some(*c),
            CopyOption::Encoding(e) if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
            other => return Err(EngineError::NotSupported(format!("COPY option {other}"))),
        }
    }
    for option in legacy {
        match option {
            CopyLegacyOption::Csv(csv) => {
                result.format = CopyFormat::Csv;
                for option in csv {
                    match option {
                        CopyLegacyCsvOption::Header => result.header = true,
                        CopyLegacyCsvOption::Quote(c) => result.quote = Some(*c),
                        CopyLegacyCsvOption::Escape(c) => result.escape = Some(*c),
                        other => return Err(EngineError::NotSupported(format!("COPY option {other}"))),
                    }
                }
            }
            CopyLegacyOption::Delimiter(c) => result.delimiter = Some(*c),
            CopyLegacyOption::Null(s) => result.null = Some(s.clone()),
            other => return Err(EngineError::NotSupported(format!("COPY option {other}"))),
        }
    }
    result.validate()?;
    Ok(result)
}

fn parse_other(sql: &str) -> Result<Statement> {
    let mut statements = Parser::new(&PostgreSqlDialect {}).try_with_sql(sql)?.parse_statements()?;
    if statements.len() != 1 {
        return Err(EngineError::Syntax("expected exactly one statement".into()));
    }
    let statement = statements.remove(0);
    match statement {
        ast::Statement::Copy { source, to, target, options, legacy_options, .. } => {
            let options = copy_options(&options, &legacy_options)?;
            match (to, source, target) {
                (false, CopySource::Table { table_name, columns }, CopyTarget::Stdin) => Ok(Statement::CopyFrom {
                    table: object_name(&table_name)?,
                    columns: columns.iter().map(normalize_ident).collect(),
                    options,
                }),
                (true, CopySource::Query(query), CopyTarget::Stdout) => Ok(Statement::CopyTo { query, options }),
                (true, CopySource::Table { table_name, columns }, CopyTarget::Stdout) => {
                    let projection = if columns.is_empty() {
                        "*".to_string()
                    } else {
                        columns.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
                    };
                    let query = Parser::new(&PostgreSqlDialect {})
                        .try_with_sql(&format!("SELECT {projection} FROM {table_name}"))?
                        .parse_query()?;
                    Ok(Statement::CopyTo { query, options })
                }
                _ => Err(EngineError::NotSupported(
                    "COPY to or from a file or program; use COPY … FROM STDIN or COPY … TO STDOUT".into(),
                )),
            }
        }
        ast::Statement::Query(_)
        | ast::Statement::Insert(_)
        | ast::Statement::Update(_)
        | ast::Statement::Delete(_)
        | ast::Statement::Explain { .. } => {
            Ok(Statement::Query(Box::new(statement)))
        }
        other => {
            let text = other.to_string();
            let head: String = text.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
            Err(EngineError::NotSupported(format!("statement {head}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_quoted_names_survive_splitting() {
        let sql = r#"SELECT 'it''s', E'back\\slash', E'q\'t', U&'d\0061t\+000061', N'n''', $$a'b$$, $t$x$t$, "a""b" FROM t"#;
        let parts = split_statements(&format!("{sql}; SELECT 2")).unwrap();
        assert_eq!(parts.len(), 2);
        let Statement::Query(statement) = parse_statement(&parts[0]).unwrap() else { panic!("not a query") };
        let text = statement.to_string();
        for expected in ["'it''s'", r"'back\slash'", "'q''t'", "'data'", "$$a'b$$", "$t$x$t$", r#""a""b""#] {
            assert!(text.contains(expected), "{expected} not in {text}");
        }
    }

    #[test]
    fn splits_on_top_level_semicolons_only() {
        let parts = split_statements("select 1; select ';'; ;  \n").unwrap();
        assert_eq!(parts, vec!["select 1".to_string(), "select ';'".to_string()]);
    }

    #[test]
    fn create_topic_with_watermark_and_options() {
        let statement = parse_statement(
            "CREATE TOPIC bids (auction BIGINT NOT NULL, price NUMERIC(10,2), date_time TIMESTAMP, \
             WATERMARK FOR date_time AS date_time - INTERVAL '5 seconds') \
             WITH (partitions = 4, retention = '7 days', partition_key = 'auction')",
        )
        .unwrap();
        let Statement::CreateTopic { definition, .. } = statement else { panic!("not a topic") };
        assert_eq!(definition.name, "bids");
        assert_eq!(definition.partitions, 4);
        assert_eq!(definition.schema.fields().len(), 3);
        assert!(!definition.schema.field(0).is_nullable());
        assert_eq!(definition.retention.time_ms, Some(7 * 86_400_000));
        assert_eq!(definition.partition_key, vec!["auction".to_string()]);
        let watermark = definition.watermark.unwrap();
        assert_eq!((watermark.column.as_str(), watermark.delay_us), ("date_time", 5_000_000));
    }

    #[test]
    fn append_only_table_is_a_topic_and_keys_make_keyed_tables() {
        let statement = parse_statement("CREATE TABLE t (a INT) APPEND ONLY").unwrap();
        assert!(matches!(statement, Statement::CreateTopic { .. }));
        let Statement::CreateTopic { definition, .. } =
            parse_statement("CREATE TABLE t (a INT, b TEXT, c INT, PRIMARY KEY (c, a))").unwrap()
        else {
            panic!("not a table")
        };
        assert_eq!(definition.primary_key, vec!["c".to_string(), "a".to_string()]);
        assert_eq!(definition.partition_key, definition.primary_key);
        assert!(!definition.schema.field(0).is_nullable() && definition.schema.field(1).is_nullable());
        for (sql, state) in [
            ("CREATE TABLE t (a INT PRIMARY KEY, b INT PRIMARY KEY)", "42P16"),
            ("CREATE TABLE t (a INT PRIMARY KEY) APPEND ONLY", "42P16"),
            ("CREATE TABLE t (a INT, PRIMARY KEY (z))", "42703"),
            ("CREATE TABLE t (a INT PRIMARY KEY) WITH (retention = '1 day')", "42P16"),
            ("CREATE TABLE t (a INT PRIMARY KEY, b INT) WITH (partition_key = 'b')", "42P16"),
            ("CREATE TABLE t (a INT PRIMARY KEY, _deleted BOOLEAN)", "42P16"),
        ] {
            assert_eq!(parse_statement(sql).unwrap_err().sqlstate(), state, "{sql}");
        }
        let error = parse_statement("CREATE TOPIC t (_offset INT)").unwrap_err();
        assert_eq!(error.sqlstate(), "42P16");
        let error = parse_statement("CREATE TOPIC t (a INT) WITH (partitions = 0)").unwrap_err();
        assert_eq!(error.sqlstate(), "22023");
    }

    #[test]
    fn session_commands() {
        assert!(matches!(
            parse_statement("SET extra_float_digits = 3").unwrap(),
            Statement::SetVariable { name, value: Some(v) } if name == "extra_float_digits" && v == "3"
        ));
        assert!(matches!(
            parse_statement("SET TIME ZONE 'UTC'").unwrap(),
            Statement::SetVariable { name, .. } if name == "timezone"
        ));
        assert!(matches!(parse_statement("SHOW TOPICS").unwrap(), Statement::ShowTopics));
        assert!(matches!(parse_statement("begin").unwrap(), Statement::Transaction(TransactionCommand::Begin)));
        let transaction = |sql: &str| match parse_statement(sql) {
            Ok(Statement::Transaction(command)) => Ok(command),
            Ok(other) => panic!("{sql}: {other:?}"),
            Err(error) => Err(error.sqlstate()),
        };
        assert_eq!(transaction("SAVEPOINT Sp1"), Ok(TransactionCommand::Savepoint("sp1".into())));
        assert_eq!(transaction("savepoint \"Sp1\""), Ok(TransactionCommand::Savepoint("Sp1".into())));
        assert_eq!(transaction("RELEASE SAVEPOINT a"), Ok(TransactionCommand::Release("a".into())));
        assert_eq!(transaction("release a"), Ok(TransactionCommand::Release("a".into())));
        assert_eq!(transaction("ROLLBACK TO a"), Ok(TransactionCommand::RollbackTo("a".into())));
        assert_eq!(transaction("ROLLBACK WORK TO SAVEPOINT a"), Ok(TransactionCommand::RollbackTo("a".into())));
        assert_eq!(transaction("ROLLBACK"), Ok(TransactionCommand::Rollback));
        assert_eq!(transaction("SAVEPOINT"), Err("42601"));
        assert_eq!(transaction("SET TRANSACTION ISOLATION LEVEL READ COMMITTED, READ WRITE NOT DEFERRABLE"), Ok(TransactionCommand::SetModes));
        assert_eq!(transaction("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ UNCOMMITTED"), Ok(TransactionCommand::SetModes));
        assert_eq!(transaction("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"), Err("0A000"));
        assert_eq!(transaction("SET TRANSACTION READ ONLY"), Err("0A000"));
        assert_eq!(transaction("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"), Err("0A000"));
        assert_eq!(transaction("SET TRANSACTION SNAPSHOT 'x'"), Err("42601"));
        assert_eq!(parse_statement("SELEC 1").unwrap_err().sqlstate(), "42601");
    }
}
