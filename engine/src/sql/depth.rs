//! How deep a statement can make the planner recurse, bounded from its tokens before anything
//! recursive sees it.
//!
//! sqlparser parses operator chains (`1 + 1 + … + 1`, `a AND b AND …`, `SELECT … UNION SELECT
//! …`) in loops, but builds them as left-deep trees, and DataFusion's planner, analyzer and
//! optimizer then walk those trees recursively (not all of it under DataFusion's recursion
//! protection): about 1 900 terms were enough to overflow a 2 MiB thread stack and abort the
//! whole server. So every statement is measured first, without recursion, and one that could be
//! deeper than `statement_depth_max` is refused with `54001` (PostgreSQL's "stack depth limit
//! exceeded"); the server's threads have a stack (`thread_stack_bytes`) sized so that any
//! statement under the limit plans (see `tests/hostile.rs`).
//!
//! The bound is conservative. Within each parenthesis or bracket, each comma-separated part
//! counts its operators (symbols, and keywords such as `AND`, `UNION`, `SELECT`) plus its
//! deepest parenthesised part plus one: an expression tree built from that text cannot be
//! deeper. Chains of common table expressions are separate parts, yet each can read the one
//! before; so the number of query blocks (`SELECT`, `VALUES`) in the statement bounds it too.

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::Token;

/// Refuses (`54001`) a statement whose [`depth_bound`] passes `limit`.
pub fn check(sql: &str, limit: usize) -> crate::Result<()> {
    let tokens = super::statement::tokenize(sql)?;
    let depth = depth_bound(&tokens);
    if depth > limit {
        return Err(crate::EngineError::StackDepthExceeded(format!(
            "stack depth limit exceeded: the statement nests up to {depth} levels of operators, parentheses or query blocks, more than statement_depth_max ({limit})"
        )));
    }
    Ok(())
}

/// An upper bound of the nesting a statement's tokens can produce (see the module comment).
pub fn depth_bound(tokens: &[Token]) -> usize {
    /// One open parenthesis (or the statement itself): the part being read and the deepest so far.
    #[derive(Default)]
    struct Level {
        operators: usize,
        deepest_child: usize,
        deepest: usize,
    }
    impl Level {
        fn part(&self) -> usize {
            self.operators + self.deepest_child
        }
    }
    let mut levels: Vec<Level> = vec![Level::default()];
    let mut blocks = 0usize;
    for token in tokens {
        match token {
            Token::LParen | Token::LBracket | Token::LBrace => levels.push(Level::default()),
            Token::RParen | Token::RBracket | Token::RBrace => {
                // An unbalanced closer is the parser's to report.
                if levels.len() > 1 {
                    let closed = levels.pop().unwrap_or_default();
                    let depth = closed.deepest.max(closed.part()) + 1;
                    if let Some(level) = levels.last_mut() {
                        level.deepest_child = level.deepest_child.max(depth);
                    }
                }
            }
            Token::Comma => {
                if let Some(level) = levels.last_mut() {
                    level.deepest = level.deepest.max(level.part());
                    level.operators = 0;
                    level.deepest_child = 0;
                }
            }
            Token::Word(word) => {
                if matches!(word.keyword, Keyword::SELECT | Keyword::VALUES) {
                    blocks += 1;
                }
                if counts_as_operator(word.keyword) {
                    if let Some(level) = levels.last_mut() {
                        level.operators += 1;
                    }
                }
            }
            Token::Whitespace(_)
            | Token::Number(..)
            | Token::Period
            | Token::Placeholder(_)
            | Token::EOF
            | Token::SemiColon
            | Token::Char(_)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_) => {}
            // Every other symbol may be an operator.
            _ => {
                if let Some(level) = levels.last_mut() {
                    level.operators += 1;
                }
            }
        }
    }
    // Levels left open (the parser will refuse them) fold into the statement's.
    let mut depth = 0;
    while let Some(level) = levels.pop() {
        depth = level.deepest.max(level.part()).max(depth) + usize::from(!levels.is_empty());
    }
    depth.max(blocks)
}

/// Keywords that build a node above their operands. (`ANY`/`ALL`/`SOME` come after an operator
/// already counted, or after `UNION`.)
fn counts_as_operator(keyword: Keyword) -> bool {
    matches!(
        keyword,
        Keyword::AND
            | Keyword::OR
            | Keyword::NOT
            | Keyword::IS
            | Keyword::IN
            | Keyword::LIKE
            | Keyword::ILIKE
            | Keyword::SIMILAR
            | Keyword::BETWEEN
            | Keyword::UNION
            | Keyword::INTERSECT
            | Keyword::EXCEPT
            | Keyword::SELECT
            | Keyword::VALUES
            | Keyword::WHEN
            | Keyword::AT
            | Keyword::COLLATE
            | Keyword::OVERLAPS
            | Keyword::EXISTS
            | Keyword::CASE
            | Keyword::JOIN
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    fn bound(sql: &str) -> usize {
        depth_bound(&Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().unwrap())
    }

    #[test]
    fn chains_parentheses_and_query_blocks_each_bound_the_depth() {
        let terms = |n: usize, op: &str| vec!["1"; n].join(op);
        // n terms: n - 1 operators, plus the SELECT.
        assert_eq!(bound(&format!("SELECT {}", terms(1900, "+"))), 1900);
        assert_eq!(bound(&format!("SELECT {}", terms(10, " AND "))), 10);
        // A long list is wide, not deep.
        assert_eq!(bound(&format!("SELECT {}", terms(5000, ", "))), 1);
        assert_eq!(bound(&format!("SELECT 1 WHERE x IN ({})", terms(5000, ", "))), 3);
        assert_eq!(bound(&format!("INSERT INTO t VALUES {}", vec!["(1, 'a', 2.5)"; 5000].join(", "))), 2);
        // Nested parentheses and brackets.
        assert_eq!(bound(&format!("SELECT {}1{}", "(".repeat(300), ")".repeat(300))), 301);
        assert_eq!(bound(&format!("SELECT {}1{}", "ARRAY[".repeat(30), "]".repeat(30))), 31);
        assert_eq!(bound("SELECT f(g(h(1 + 2)))"), 5);
        // Unions: one operator and one block each.
        let union: Vec<String> = (0..100).map(|i| format!("SELECT {i}")).collect();
        assert_eq!(bound(&union.join(" UNION ")), 199);
        // A chain of CTEs: separate parts, but one query block each.
        let ctes: Vec<String> = (0..500).map(|i| format!("c{i} AS (SELECT * FROM c{})", i.max(1) - 1)).collect();
        assert_eq!(bound(&format!("WITH {} SELECT * FROM c499", ctes.join(", "))), 501);
        // Parentheses left open or closed too often do not panic.
        assert_eq!(bound("SELECT ((1 + 2"), 3);
        assert_eq!(bound("SELECT 1))) + 2"), 2);
        assert_eq!(bound(""), 0);
    }
}
