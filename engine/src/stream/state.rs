//! The state store: one RocksDB instance per node (`state/` in the data directory) holding every
//! materialized view's operator state, results and progress.
//!
//! Key layout — every key starts with the view id (8 bytes, big-endian), so a view's state is
//! one contiguous range that one range delete removes:
//!
//! ```text
//! [view][META]                    progress: epoch, source offsets, row counts (one value)
//! [view][STATE][operator u16][k]  operator state under key k (e.g. an aggregate's group key;
//!                                 an aggregate's large multisets under its id | 0x8000)
//! [view][RESULT][row]             result rows as a multiset: row (arrow-row bytes) → count (i64)
//!                                 (none when a top-N's state holds the results, see below)
//! [view][CHANGES][epoch u64]      the result changes an epoch committed: (row, signed count)*
//! [view][LOG][epoch u64][seq u32]  an append-only view's result rows: one Arrow IPC stream each
//! ```
//!
//! The changes of recent epochs are the view's changelog: SUBSCRIBE and views over the view read
//! it. It is trimmed as epochs commit, keeping what a view over this one has not read yet.
//!
//! A view whose results are only ever inserted (a filter or projection of topics) keeps them as
//! a log instead: each epoch's rows as Arrow batches, in order, under `LOG`. The log is both its
//! rows and its changelog (an epoch's entries are that epoch's changes), so nothing is encoded
//! per row, nothing is written twice, and nothing is trimmed.
//!
//! A view whose last stateful operator is a top-N with only projections after it keeps no
//! result rows either: the top-N's state (each partition's top rows) is read as its results.
//! Its changelog is written as a multiset view's is.
//!
//! Result counts are written with a merge operator (adding signed deltas) so that applying a
//! change never reads; rows whose count reaches zero are removed by a compaction filter and
//! skipped by readers until then. An epoch is one [`WriteBatch`]: state, results and progress
//! change together or not at all.

use std::path::Path;
use std::sync::Arc;

use rocksdb::compaction_filter::Decision;
use rocksdb::{MergeOperands, Options, WriteBatch, WriteOptions, DB};

use crate::{EngineError, Result};

pub(crate) const NS_META: u8 = 1;
pub(crate) const NS_STATE: u8 = 2;
pub(crate) const NS_RESULT: u8 = 3;
pub(crate) const NS_CHANGES: u8 = 4;
pub(crate) const NS_LOG: u8 = 5;

/// Smallest memory for the state store's memtables, whatever its block cache.
const MEMTABLE_BYTES_MIN: usize = 8 << 20;

/// Largest memtable (RocksDB's default): a larger one makes flushes longer, not fewer bytes.
const MEMTABLE_BYTES_MAX: usize = 64 << 20;

/// Size of a partition of a file's index and filter.
const METADATA_BLOCK_BYTES: usize = 4096;

/// Changelog or result log entries: (epoch, value), in key order.
pub type LogEntries = Vec<(u64, Vec<u8>)>;

/// The node's state store. Cheap to clone.
#[derive(Clone)]
pub struct StateStore {
    db: Arc<DB>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore").field("path", &self.db.path()).finish()
    }
}

fn state_error(error: rocksdb::Error) -> EngineError {
    EngineError::Internal(format!("state store: {error}"))
}

fn count_of(value: &[u8]) -> i64 {
    value.try_into().map(i64::from_le_bytes).unwrap_or(0)
}

/// Adds result-count deltas (little-endian i64).
fn add_counts(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let mut total = existing.map_or(0, count_of);
    for operand in operands {
        total = total.wrapping_add(count_of(operand));
    }
    Some(total.to_le_bytes().to_vec())
}

/// Drops result rows whose count reached zero.
fn drop_zero_counts(_level: u32, key: &[u8], value: &[u8]) -> Decision {
    if key.get(8) == Some(&NS_RESULT) && count_of(value) == 0 {
        Decision::Remove
    } else {
        Decision::Keep
    }
}

/// The 8-byte prefix of every key of a view.
pub(crate) fn view_prefix(view: u64) -> [u8; 8] {
    view.to_be_bytes()
}

pub(crate) fn meta_key(view: u64) -> Vec<u8> {
    let mut key = view_prefix(view).to_vec();
    key.push(NS_META);
    key
}

pub(crate) fn state_key(view: u64, operator: u16, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(11 + key.len());
    write_state_key(&mut out, view, operator, key);
    out
}

pub(crate) fn write_state_key(out: &mut Vec<u8>, view: u64, operator: u16, key: &[u8]) {
    out.extend_from_slice(&view_prefix(view));
    out.push(NS_STATE);
    out.extend_from_slice(&operator.to_be_bytes());
    out.extend_from_slice(key);
}

pub(crate) fn changes_key(view: u64, epoch: u64) -> Vec<u8> {
    let mut key = view_prefix(view).to_vec();
    key.push(NS_CHANGES);
    key.extend_from_slice(&epoch.to_be_bytes());
    key
}

pub(crate) fn log_key(view: u64, epoch: u64, seq: u32) -> Vec<u8> {
    let mut key = view_prefix(view).to_vec();
    key.push(NS_LOG);
    key.extend_from_slice(&epoch.to_be_bytes());
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

pub(crate) fn result_prefix(view: u64) -> Vec<u8> {
    let mut key = view_prefix(view).to_vec();
    key.push(NS_RESULT);
    key
}

impl StateStore {
    /// Opens (or creates) the store at `path` with a block cache of `block_cache_bytes`.
    pub fn open(path: &Path, block_cache_bytes: usize) -> Result<Self> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_merge_operator_associative("streamhouse_add_counts", add_counts);
        options.set_compaction_filter("streamhouse_drop_zero_counts", drop_zero_counts);
        // Writes are not synced one by one: the checkpoint task syncs the WAL on its interval.
        options.set_manual_wal_flush(false);
        // Result logs and state compress well; LZ4 is the one codec compiled in.
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // One bound for RocksDB's memory: memtables are charged to the block cache (and flushed
        // once they hold half of it), and so are the index and filter blocks of its files,
        // which otherwise grow with the state.
        let cache = rocksdb::Cache::new_lru_cache(block_cache_bytes);
        let memtables = (block_cache_bytes / 2).max(MEMTABLE_BYTES_MIN);
        let manager = rocksdb::WriteBufferManager::new_write_buffer_manager_with_cache(memtables, false, cache.clone());
        options.set_write_buffer_manager(&manager);
        options.set_write_buffer_size((memtables / 2).min(MEMTABLE_BYTES_MAX));
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_cache_index_and_filter_blocks(true);
        table.set_cache_index_and_filter_blocks_with_high_priority(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        // Partitioned: a lookup loads the 4 KiB partitions it needs, not a file's whole filter
        // and index, which a small cache would evict again at once (unpartitioned, a view with
        // 2 M groups under a 32 MiB cache took ten times as long to catch up).
        table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_partition_filters(true);
        table.set_metadata_block_size(METADATA_BLOCK_BYTES);
        table.set_pin_top_level_index_and_filter(true);
        // Most state lookups of a new key miss: a bloom filter answers them without reading.
        table.set_bloom_filter(10.0, false);
        options.set_block_based_table_factory(&table);
        // Opened by its (default) column family, with the same options, so that batched reads
        // can name it.
        let family = rocksdb::ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, options.clone());
        let db = DB::open_cf_descriptors(&options, path, [family]).map_err(state_error)?;
        Ok(Self { db: Arc::new(db) })
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get(key).map_err(state_error)
    }

    /// The values of `keys`, which are sorted, in one batched read (far cheaper than a get
    /// per key when there are many).
    /// `found` is called with the position of each key that has a value, and the value.
    pub fn get_sorted(&self, keys: &[&[u8]], mut found: impl FnMut(usize, &[u8]) -> Result<()>) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let family = self.db.cf_handle(rocksdb::DEFAULT_COLUMN_FAMILY_NAME).ok_or_else(|| EngineError::Internal("state store has no default column family".into()))?;
        for (i, value) in self.db.batched_multi_get_cf(family, keys.iter().copied(), true).into_iter().enumerate() {
            if let Some(value) = value.map_err(state_error)? {
                found(i, &value)?;
            }
        }
        Ok(())
    }

    /// Applies one epoch atomically (unsynced; see [`Self::sync`]).
    pub fn commit(&self, batch: WriteBatch) -> Result<()> {
        let mut options = WriteOptions::default();
        options.set_sync(false);
        self.db.write_opt(batch, &options).map_err(state_error)
    }

    /// Syncs the RocksDB WAL: every epoch committed before this call survives a power loss.
    pub fn sync(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(state_error)
    }

    /// Bytes a view's keys (state, results, changelog, progress) take on disk, approximately
    /// (compressed SST bytes), after flushing the memtables so that they count.
    pub fn view_bytes(&self, view: u64) -> Result<u64> {
        self.db.flush().map_err(state_error)?;
        let (start, end) = (view_prefix(view), view_prefix(view.saturating_add(1)));
        Ok(self.db.get_approximate_sizes(&[rocksdb::Range::new(&start, &end)]).first().copied().unwrap_or(0))
    }

    /// Deletes every key of a view.
    pub fn delete_view(&self, view: u64) -> Result<()> {
        self.delete_views(view, view.saturating_add(1))
    }

    /// Deletes every key of views `[from, to)`.
    pub fn delete_views(&self, from: u64, to: u64) -> Result<()> {
        if from >= to {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        batch.delete_range(view_prefix(from), view_prefix(to));
        self.commit(batch)
    }

    /// Result rows of a view with their counts (only positive counts), in key order, read from
    /// one consistent snapshot. Runs `each` for every row until it returns false or fails.
    /// Returns the view's progress record of the same snapshot.
    pub fn scan_results(&self, view: u64, mut each: impl FnMut(&[u8], i64) -> Result<bool>) -> Result<Option<Vec<u8>>> {
        let snapshot = self.db.snapshot();
        let meta = snapshot.get(meta_key(view)).map_err(state_error)?;
        scan_prefix(&snapshot, &result_prefix(view), |row, value| {
            let count = count_of(value);
            Ok(count <= 0 || each(row, count)?)
        })?;
        Ok(meta)
    }

    /// The result log entries of epochs `[from, to]` (epoch, bytes), in order, and the view's
    /// progress record, from one consistent snapshot.
    pub fn scan_log(&self, view: u64, from: u64, to: u64) -> Result<(Option<Vec<u8>>, LogEntries)> {
        let mut entries = Vec::new();
        let meta = self.scan_log_each(view, from, to, |epoch, value| {
            entries.push((epoch, value.to_vec()));
            Ok(true)
        })?;
        Ok((meta, entries))
    }

    /// [`Self::scan_log`] entry by entry, until `each` returns false; returns the progress
    /// record.
    pub fn scan_log_each(&self, view: u64, from: u64, to: u64, each: impl FnMut(u64, &[u8]) -> Result<bool>) -> Result<Option<Vec<u8>>> {
        let snapshot = self.db.snapshot();
        let meta = snapshot.get(meta_key(view)).map_err(state_error)?;
        epoch_entries_each(&snapshot, &log_key(view, from, 0), &log_key(view, to.saturating_add(1), 0), each)?;
        Ok(meta)
    }

    /// The changelog entries of epochs `[from, to]`, in epoch order.
    pub fn changes(&self, view: u64, from: u64, to: u64) -> Result<LogEntries> {
        epoch_entries(&self.db.snapshot(), &changes_key(view, from), &changes_key(view, to.saturating_add(1)))
    }
}

/// The values of the keys in `[start, end)` whose namespace is followed by an epoch (the
/// changelog's and the result log's), with that epoch, in key order.
fn epoch_entries(snapshot: &rocksdb::Snapshot<'_>, start: &[u8], end: &[u8]) -> Result<LogEntries> {
    let mut out = Vec::new();
    epoch_entries_each(snapshot, start, end, |epoch, value| {
        out.push((epoch, value.to_vec()));
        Ok(true)
    })?;
    Ok(out)
}

/// [`epoch_entries`] one by one, until `each` returns false.
fn epoch_entries_each(snapshot: &rocksdb::Snapshot<'_>, start: &[u8], end: &[u8], mut each: impl FnMut(u64, &[u8]) -> Result<bool>) -> Result<()> {
    for item in snapshot.iterator(rocksdb::IteratorMode::From(start, rocksdb::Direction::Forward)) {
        let (key, value) = item.map_err(state_error)?;
        if key.as_ref() >= end {
            break;
        }
        let epoch = key.get(9..17).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).ok_or_else(corrupt)?;
        if !each(epoch, &value)? {
            break;
        }
    }
    Ok(())
}

impl StateStore {
    /// Every committed state entry of one operator, in key order, until `each` returns false,
    /// and the view's progress record, from one consistent snapshot.
    pub fn scan_operator_state(&self, view: u64, operator: u16, each: impl FnMut(&[u8], &[u8]) -> Result<bool>) -> Result<Option<Vec<u8>>> {
        let snapshot = self.db.snapshot();
        let meta = snapshot.get(meta_key(view)).map_err(state_error)?;
        scan_operator(&snapshot, view, operator, each)?;
        Ok(meta)
    }

    /// Committed state entries of one operator whose key (after the operator prefix) sorts
    /// below `below`, in key order, from one consistent snapshot.
    /// An operator's state entries whose keys start with `prefix` (keys after the prefix), in
    /// key order, until `each` returns false or fails.
    pub fn scan_state_prefix(&self, view: u64, operator: u16, prefix: &[u8], each: impl FnMut(&[u8], &[u8]) -> Result<bool>) -> Result<()> {
        scan_prefix(&self.db.snapshot(), &state_key(view, operator, prefix), each)
    }

    pub fn scan_state(&self, view: u64, operator: u16, below: &[u8], mut each: impl FnMut(&[u8], &[u8])) -> Result<()> {
        scan_operator(&self.db.snapshot(), view, operator, |key, value| {
            if key >= below {
                return Ok(false);
            }
            each(key, value);
            Ok(true)
        })
    }
}

/// An operator's state entries in `snapshot` (keys after the operator prefix), in key order,
/// until `each` returns false or fails.
fn scan_operator(snapshot: &rocksdb::Snapshot<'_>, view: u64, operator: u16, each: impl FnMut(&[u8], &[u8]) -> Result<bool>) -> Result<()> {
    scan_prefix(snapshot, &state_key(view, operator, &[]), each)
}

/// The entries of `snapshot` whose keys start with `prefix` (keys after it), in key order, until
/// `each` returns false or fails. Keys and values are lent, not copied, and the iterator stops
/// at the prefix's end rather than at the first key past it.
fn scan_prefix(snapshot: &rocksdb::Snapshot<'_>, prefix: &[u8], mut each: impl FnMut(&[u8], &[u8]) -> Result<bool>) -> Result<()> {
    let mut options = rocksdb::ReadOptions::default();
    if let Some(end) = prefix_end(prefix) {
        options.set_iterate_upper_bound(end);
    }
    let mut iterator = snapshot.raw_iterator_opt(options);
    iterator.seek(prefix);
    while let (Some(key), Some(value)) = (iterator.key(), iterator.value()) {
        if !key.starts_with(prefix) || !each(&key[prefix.len()..], value)? {
            return Ok(());
        }
        iterator.next();
    }
    iterator.status().map_err(state_error)
}

/// The least key above every key that starts with `prefix`; `None` if there is none (all 0xff).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The most an epoch's write batch reserves up front (see [`EpochWriter::with_capacity`]).
pub const EPOCH_BATCH_RESERVE_MAX: usize = 256 << 20;

/// Builds one epoch's write batch.
pub struct EpochWriter {
    pub batch: WriteBatch,
    view: u64,
    /// Scratch for state keys (the batch copies each key in).
    key: Vec<u8>,
}

impl EpochWriter {
    pub fn new(view: u64) -> Self {
        Self::with_capacity(view, 0)
    }

    /// A writer whose batch reserves `bytes` (capped at [`EPOCH_BATCH_RESERVE_MAX`]): sized
    /// like the previous epoch's, a large batch is not copied over and over as it grows.
    pub fn with_capacity(view: u64, bytes: usize) -> Self {
        let batch = if bytes == 0 { WriteBatch::default() } else { WriteBatch::with_capacity_bytes(bytes.min(EPOCH_BATCH_RESERVE_MAX)) };
        Self { batch, view, key: Vec::new() }
    }

    pub fn put_state(&mut self, operator: u16, key: &[u8], value: &[u8]) {
        self.key.clear();
        write_state_key(&mut self.key, self.view, operator, key);
        self.batch.put(&self.key, value);
    }

    /// Puts a key built with [`write_state_key`] for this writer's view.
    pub fn put(&mut self, state_key: &[u8], value: &[u8]) {
        self.batch.put(state_key, value);
    }

    pub fn delete_state(&mut self, operator: u16, key: &[u8]) {
        self.key.clear();
        write_state_key(&mut self.key, self.view, operator, key);
        self.batch.delete(&self.key);
    }

    /// Deletes an operator's state entries with keys from `from` (inclusive) to `to`.
    pub fn delete_state_range(&mut self, operator: u16, from: &[u8], to: &[u8]) {
        self.batch.delete_range(state_key(self.view, operator, from), state_key(self.view, operator, to));
    }

    pub fn add_result(&mut self, row: &[u8], delta: i64) {
        let mut key = result_prefix(self.view);
        key.extend_from_slice(row);
        self.batch.merge(key, delta.to_le_bytes());
    }

    pub fn put_log(&mut self, epoch: u64, seq: u32, value: &[u8]) {
        self.batch.put(log_key(self.view, epoch, seq), value);
    }

    pub fn put_changes(&mut self, epoch: u64, value: &[u8]) {
        self.batch.put(changes_key(self.view, epoch), value);
    }

    /// Drops changelog entries of epochs before `epoch`.
    pub fn trim_changes(&mut self, epoch: u64) {
        self.batch.delete_range(changes_key(self.view, 0), changes_key(self.view, epoch));
    }

    pub fn put_meta(&mut self, value: &[u8]) {
        self.batch.put(meta_key(self.view), value);
    }
}

/// Little-endian encoding helpers for state values.
#[derive(Default)]
pub(crate) struct Encoder(pub Vec<u8>);

impl Encoder {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i128(&mut self, v: i128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.u64(v.len() as u64);
        self.0.extend_from_slice(v);
    }
}

/// Reads what [`Encoder`] wrote; every read checks bounds (a corrupt value is an error).
pub(crate) struct Decoder<'a>(pub &'a [u8]);

fn corrupt() -> EngineError {
    EngineError::Internal("state store holds a value that cannot be decoded".into())
}

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(corrupt());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| corrupt())?))
    }
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().map_err(|_| corrupt())?))
    }
    pub fn i128(&mut self) -> Result<i128> {
        Ok(i128::from_le_bytes(self.take(16)?.try_into().map_err(|_| corrupt())?))
    }
    pub fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(self.take(8)?.try_into().map_err(|_| corrupt())?))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = usize::try_from(self.u64()?).map_err(|_| corrupt())?;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_counts_merge_and_views_delete_as_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path(), 1 << 20).unwrap();
        let mut epoch = EpochWriter::new(7);
        epoch.add_result(b"a", 2);
        epoch.add_result(b"b", 1);
        epoch.add_result(b"a", -1);
        epoch.put_state(0, b"g", b"state");
        store.commit(epoch.batch).unwrap();
        let mut other = EpochWriter::new(8);
        other.add_result(b"a", 5);
        store.commit(other.batch).unwrap();
        let mut epoch = EpochWriter::new(7);
        epoch.add_result(b"b", -1);
        store.commit(epoch.batch).unwrap();

        let mut rows = Vec::new();
        store
            .scan_results(7, |row, count| {
                rows.push((row.to_vec(), count));
                Ok(true)
            })
            .unwrap();
        assert_eq!(rows, vec![(b"a".to_vec(), 1)]);
        assert_eq!(store.get(&state_key(7, 0, b"g")).unwrap().as_deref(), Some(&b"state"[..]));

        store.delete_view(7).unwrap();
        let mut left = 0;
        store.scan_results(7, |_, _| {
            left += 1;
            Ok(true)
        })
        .unwrap();
        assert_eq!(left, 0);
        assert_eq!(store.get(&state_key(7, 0, b"g")).unwrap(), None);
        let mut kept = Vec::new();
        store.scan_results(8, |row, count| {
            kept.push((row.to_vec(), count));
            Ok(true)
        })
        .unwrap();
        assert_eq!(kept, vec![(b"a".to_vec(), 5)]);
    }
}
