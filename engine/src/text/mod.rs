//! Postgres text formats of values, shared by the wire protocol and COPY.

pub mod input;
pub mod output;
