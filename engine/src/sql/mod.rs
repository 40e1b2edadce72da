//! SQL front matter: parsing our statements, result column names, column types, durations, parameter types, and the
//! rewrite that hides system columns from `*`.

pub mod column_names;
pub mod depth;
pub mod duration;
pub mod literal_insert;
pub mod parameters;
pub mod postgres_meaning;
pub mod statement;
pub mod types;
pub mod wildcard;
