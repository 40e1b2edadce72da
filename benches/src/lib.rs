//! Benchmarks of StreamHouse: criterion micro benchmarks (WAL group commit, segment encode and
//! decode, scans, ingest through the engine) and the Nexmark harness, each reported as a ratio
//! against a baseline measured in the same run.
//!
//! This crate holds no benchmarks yet: they are the benchmark issue's work. The write and read
//! paths are built so the targets in that issue are reachable (group commit, one WAL record per
//! statement, projected segment decoding, pruning by catalog stats).
