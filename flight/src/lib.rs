//! The Arrow Flight and Flight SQL front end of StreamHouse (bulk reads and writes, ADBC, the
//! Flight SQL JDBC driver) on `127.0.0.1:8815`.
//!
//! This crate holds no code yet: the Flight front end is a later issue. When it comes it owns the
//! gRPC service and Flight SQL command mapping, and like every front end reaches data only
//! through the engine, never storage or the catalog directly.
