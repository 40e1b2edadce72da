//! A top-N's partitions touched in one epoch, held flat: their keys and rows are byte ranges
//! of one arena the operator reuses from epoch to epoch, so that touching a partition and
//! ending the epoch allocate and free nothing per partition.
//!
//! A partition's current rows are kept in one of two ways, fixed for the operator:
//! - over an append-only input with N at most [`FLAT_LIMIT_MAX`], in N slots of one vector
//!   of entries (a row's bytes in the arena and its count), in row order: at most N rows can
//!   matter, and inserting into N slots is a short move;
//! - otherwise (a retracting input keeps every row, and a large N), in an ordered map per
//!   partition, where an insertion stays logarithmic however many rows a partition holds.
//!
//! Its stored rows, as they were before the epoch, are one run of entries either way.

use std::collections::BTreeMap;
use std::hash::BuildHasher;

use super::changes::counted_entry_bytes;
use super::state::Decoder;
use crate::Result;

/// One partition's rows: (order key, row) bytes → count.
pub type Rows = BTreeMap<Vec<u8>, i64>;

/// The largest N kept in slots; a larger one is kept in ordered maps. Slots cost N entries
/// (24 bytes each) per touched partition, about what one node of an ordered map costs.
pub const FLAT_LIMIT_MAX: usize = 16;

/// An epoch's arena and vectors are kept for the next epoch up to about this many bytes each;
/// an unusually large epoch gives the rest back.
const RETAINED_BYTES_MAX: usize = 16 << 20;

/// A range of the arena.
#[derive(Debug, Clone, Copy, Default)]
pub struct Span {
    start: usize,
    len: usize,
}

/// A row (its bytes in the arena) and how many times it is present.
#[derive(Debug, Clone, Copy, Default)]
pub struct Entry {
    row: Span,
    count: i64,
}

#[derive(Debug)]
struct Partition {
    key: Span,
    /// Its stored rows: `before[start..start + len]`.
    before: (usize, usize),
    /// Slots: how many of its slots hold rows. Maps: its map's index.
    after: usize,
}

#[derive(Debug)]
enum Held {
    /// Partition `i`'s rows are `slots[i * limit..][..its count]`.
    Slots(Vec<Entry>),
    Maps(Vec<Rows>),
}

/// A partition's rows, in order, as (row bytes, count).
#[derive(Clone)]
pub enum RowsIter<'a> {
    Entries(std::slice::Iter<'a, Entry>, &'a [u8]),
    Map(std::collections::btree_map::Iter<'a, Vec<u8>, i64>),
}

impl<'a> Iterator for RowsIter<'a> {
    type Item = (&'a [u8], i64);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            RowsIter::Entries(entries, arena) => entries.next().map(|e| (&arena[e.row.start..e.row.start + e.row.len], e.count)),
            RowsIter::Map(map) => map.next().map(|(row, count)| (row.as_slice(), *count)),
        }
    }
}

/// The partitions one epoch touched.
#[derive(Debug)]
pub struct Touched {
    append_only: bool,
    /// The N of the top-N.
    limit: usize,
    arena: Vec<u8>,
    partitions: Vec<Partition>,
    before: Vec<Entry>,
    held: Held,
    /// Partitions by key (indices into `partitions`).
    index: hashbrown::HashTable<usize>,
    hasher: foldhash::fast::RandomState,
    /// Heap bytes of the rows held in maps (the vectors' are their capacities).
    map_bytes: usize,
}

fn bytes(arena: &[u8], span: Span) -> &[u8] {
    &arena[span.start..span.start + span.len]
}

/// A key's first 32 bytes (two partition key columns of 8 bytes and their null markers take
/// 18), zero-padded, as big-endian numbers.
type KeyPrefix = (u128, u128);

/// Two keys whose prefixes differ are in the order of their prefixes (a shorter key pads with
/// zeros, the smallest byte).
fn key_prefix(key: &[u8]) -> KeyPrefix {
    let mut bytes = [0u8; 32];
    let len = key.len().min(32);
    bytes[..len].copy_from_slice(&key[..len]);
    let (high, low) = bytes.split_at(16);
    let number = |half: &[u8]| u128::from_be_bytes(half.try_into().unwrap_or_default());
    (number(high), number(low))
}

fn push(arena: &mut Vec<u8>, data: &[u8]) -> Span {
    let span = Span { start: arena.len(), len: data.len() };
    arena.extend_from_slice(data);
    span
}

impl Touched {
    /// Rows are kept to the first `limit` over an append-only input.
    pub fn new(append_only: bool, limit: usize) -> Self {
        // Slots need N ≥ 1 (the planner never makes a top-N of N = 0).
        let held = if append_only && (1..=FLAT_LIMIT_MAX).contains(&limit) { Held::Slots(Vec::new()) } else { Held::Maps(Vec::new()) };
        Self {
            append_only,
            limit,
            arena: Vec::new(),
            partitions: Vec::new(),
            before: Vec::new(),
            held,
            index: hashbrown::HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            map_bytes: 0,
        }
    }

    /// Bytes held, approximately: the arena, the vectors, the index and the maps' rows.
    pub fn memory_bytes(&self) -> usize {
        fn held<T>(items: &Vec<T>) -> usize {
            items.capacity() * std::mem::size_of::<T>()
        }
        let rows = match &self.held {
            Held::Slots(slots) => held(slots),
            Held::Maps(maps) => held(maps) + self.map_bytes,
        };
        held(&self.arena) + held(&self.partitions) + held(&self.before) + rows + self.index.capacity() * (std::mem::size_of::<usize>() + 1)
    }

    pub fn len(&self) -> usize {
        self.partitions.len()
    }

    /// The partition of `key` and whether this call added it (without rows: see [`Self::load`]).
    pub fn locate(&mut self, key: &[u8]) -> (usize, bool) {
        let Self { arena, partitions, index, hasher, held, limit, .. } = self;
        let hash = hasher.hash_one(key);
        if let Some(&slot) = index.find(hash, |&i| bytes(arena, partitions[i].key) == key) {
            return (slot, false);
        }
        let slot = partitions.len();
        let after = match held {
            Held::Slots(slots) => {
                slots.resize(slots.len() + *limit, Entry::default());
                0
            }
            Held::Maps(maps) => {
                maps.push(Rows::new());
                maps.len() - 1
            }
        };
        partitions.push(Partition { key: push(arena, key), before: (0, 0), after });
        index.insert_unique(hash, slot, |&i| hasher.hash_one(bytes(arena, partitions[i].key)));
        (slot, true)
    }

    pub fn key(&self, partition: usize) -> &[u8] {
        bytes(&self.arena, self.partitions[partition].key)
    }

    /// Gives a partition just located its stored rows (as `TopNLayout::encode` wrote them),
    /// which are also its current rows until the epoch's rows change them.
    pub fn load(&mut self, partition: usize, stored: &[u8]) -> Result<()> {
        let mut input = Decoder(stored);
        let count = input.u64()?;
        let start = self.before.len();
        for _ in 0..count {
            let row = push(&mut self.arena, input.bytes()?);
            self.before.push(Entry { row, count: input.i64()? });
        }
        let run = (start, self.before.len() - start);
        let Partition { before, after, .. } = &mut self.partitions[partition];
        *before = run;
        let stored = &self.before[run.0..run.0 + run.1];
        match &mut self.held {
            Held::Slots(slots) => {
                // Stored rows were trimmed to the first N; a row past the first N distinct
                // ones could never be among the top N again.
                let kept = stored.len().min(self.limit);
                let base = partition * self.limit;
                slots[base..base + kept].copy_from_slice(&stored[..kept]);
                *after = kept;
            }
            Held::Maps(maps) => {
                self.map_bytes += stored.iter().map(|e| counted_entry_bytes(e.row.len)).sum::<usize>();
                maps[*after] = stored.iter().map(|e| (bytes(&self.arena, e.row).to_vec(), e.count)).collect();
            }
        }
        Ok(())
    }

    /// Adds `sign` (+1 or -1) occurrences of `row` to a partition. Over an append-only input
    /// (`sign` always +1) only rows that can still be among the first N are kept.
    pub fn add(&mut self, partition: usize, row: &[u8], sign: i64) {
        let limit = self.limit;
        let after = &mut self.partitions[partition].after;
        match &mut self.held {
            Held::Slots(slots) => {
                let arena = &mut self.arena;
                let run = &mut slots[partition * limit..(partition + 1) * limit];
                let len = *after;
                // A row after the last of N kept can never come back: skip it.
                if len == limit && row > bytes(arena, run[len - 1].row) {
                    return;
                }
                match run[..len].binary_search_by(|e| bytes(arena, e.row).cmp(row)) {
                    Ok(found) => run[found].count += 1,
                    Err(at) => {
                        // Full: the last row is pushed out (each kept row counts at least once).
                        let len = len.min(limit - 1);
                        run.copy_within(at..len, at + 1);
                        run[at] = Entry { row: push(arena, row), count: 1 };
                        *after = len + 1;
                    }
                }
            }
            Held::Maps(maps) => {
                let rows = &mut maps[*after];
                if self.append_only {
                    if rows.len() >= limit && rows.last_key_value().is_some_and(|(last, _)| row > last.as_slice()) {
                        return;
                    }
                    *rows.entry(row.to_vec()).or_insert_with(|| {
                        self.map_bytes += counted_entry_bytes(row.len());
                        0
                    }) += 1;
                    if rows.len() > limit {
                        rows.pop_last();
                    }
                    return;
                }
                match rows.entry(row.to_vec()) {
                    std::collections::btree_map::Entry::Occupied(mut entry) => {
                        *entry.get_mut() += sign;
                        if *entry.get() == 0 {
                            entry.remove();
                        }
                    }
                    std::collections::btree_map::Entry::Vacant(entry) => {
                        self.map_bytes += counted_entry_bytes(row.len());
                        entry.insert(sign);
                    }
                }
            }
        }
    }

    /// Over an append-only input, drops the rows past the first N (counting repeats).
    pub fn trim(&mut self, partition: usize) {
        if !self.append_only {
            return;
        }
        let limit = self.limit;
        let after = &mut self.partitions[partition].after;
        match &mut self.held {
            Held::Slots(slots) => {
                let run = &slots[partition * limit..partition * limit + *after];
                let mut kept = 0i64;
                *after = run
                    .iter()
                    .take_while(|e| {
                        let keep = kept < limit as i64;
                        kept += e.count;
                        keep
                    })
                    .count();
            }
            Held::Maps(maps) => {
                let rows = &mut maps[*after];
                // `add` keeps at most N entries: only a row present more than once can push
                // another past the N.
                if rows.values().all(|count| *count == 1) {
                    return;
                }
                let mut kept = 0i64;
                rows.retain(|_, count| {
                    let keep = kept < limit as i64;
                    kept += *count;
                    keep
                });
            }
        }
    }

    /// A partition's stored rows.
    pub fn before(&self, partition: usize) -> RowsIter<'_> {
        let (start, len) = self.partitions[partition].before;
        RowsIter::Entries(self.before[start..start + len].iter(), &self.arena)
    }

    /// A partition's current rows.
    pub fn after(&self, partition: usize) -> RowsIter<'_> {
        let after = self.partitions[partition].after;
        match &self.held {
            Held::Slots(slots) => {
                let base = partition * self.limit;
                RowsIter::Entries(slots[base..base + after].iter(), &self.arena)
            }
            Held::Maps(maps) => RowsIter::Map(maps[after].iter()),
        }
    }

    /// The partitions in key order. They are sorted by their keys' first 32 bytes first (as a
    /// big-endian number, in the keys' order), so that most comparisons read the vector being
    /// sorted rather than keys scattered over the arena.
    pub fn in_key_order(&self) -> Vec<usize> {
        let mut order: Vec<(KeyPrefix, usize)> = (0..self.partitions.len()).map(|p| (key_prefix(self.key(p)), p)).collect();
        order.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| self.key(a.1).cmp(self.key(b.1))));
        order.into_iter().map(|(_, p)| p).collect()
    }

    /// Forgets every partition, keeping (bounded) room for the next epoch.
    pub fn clear(&mut self) {
        fn reuse<T>(items: &mut Vec<T>) {
            items.clear();
            items.shrink_to(RETAINED_BYTES_MAX / std::mem::size_of::<T>().max(1));
        }
        reuse(&mut self.arena);
        reuse(&mut self.partitions);
        reuse(&mut self.before);
        match &mut self.held {
            Held::Slots(slots) => reuse(slots),
            Held::Maps(maps) => reuse(maps),
        }
        self.index.clear();
        self.index.shrink_to(RETAINED_BYTES_MAX / std::mem::size_of::<usize>(), |_| 0);
        self.map_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::Encoder;
    use super::*;

    type Counted = Vec<(Vec<u8>, i64)>;

    fn collect<'a>(rows: RowsIter<'a>) -> Counted {
        rows.map(|(row, count)| (row.to_vec(), count)).collect()
    }

    /// What an append-only top-N keeps of `rows`, worked out by sorting them all: the smallest
    /// distinct rows with all their repeats, while fewer than `limit` rows come before each.
    fn expected(rows: &[Vec<u8>], limit: usize) -> Counted {
        let mut sorted = rows.to_vec();
        sorted.sort();
        let mut distinct: Counted = Vec::new();
        for row in sorted {
            match distinct.last_mut() {
                Some((last, count)) if *last == row => *count += 1,
                _ => distinct.push((row, 1)),
            }
        }
        let mut before = 0;
        distinct.retain(|(_, count)| {
            let keep = before < limit as i64;
            before += *count;
            keep
        });
        distinct
    }

    /// A deterministic sequence of short rows with many repeats (a linear congruential
    /// generator: no seed to choose).
    fn rows(count: usize, distinct: u64) -> Vec<Vec<u8>> {
        let mut state = 12345u64;
        (0..count)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                format!("r{:03}", (state >> 33) % distinct).into_bytes()
            })
            .collect()
    }

    #[test]
    fn slots_and_maps_keep_the_same_top_rows_of_an_append_only_input() {
        for limit in [1, 2, 3, FLAT_LIMIT_MAX] {
            let input = rows(500, 40);
            let mut slots = Touched::new(true, limit);
            let mut maps = Touched::new(true, FLAT_LIMIT_MAX + limit);
            maps.limit = limit; // the map representation at the same N
            assert!(matches!(slots.held, Held::Slots(_)) && matches!(maps.held, Held::Maps(_)));
            for (i, row) in input.iter().enumerate() {
                // Two partitions, rows dealt alternately.
                let key = [(i % 2) as u8];
                for touched in [&mut slots, &mut maps] {
                    let (partition, _) = touched.locate(&key);
                    touched.add(partition, row, 1);
                }
            }
            for partition in 0..2 {
                let mine: Vec<Vec<u8>> = input.iter().skip(partition).step_by(2).cloned().collect();
                let want = expected(&mine, limit);
                for touched in [&mut slots, &mut maps] {
                    let (found, added) = touched.locate(&[partition as u8]);
                    assert_eq!((found, added), (partition, false));
                    touched.trim(partition);
                    assert_eq!(collect(touched.after(partition)), want, "limit {limit}, partition {partition}");
                    assert!(collect(touched.before(partition)).is_empty());
                }
            }
        }
    }

    #[test]
    fn stored_rows_are_loaded_as_before_and_after() {
        let stored: Counted = vec![(b"a".to_vec(), 2), (b"c".to_vec(), 1)];
        let mut value = Encoder::default();
        value.u64(stored.len() as u64);
        for (row, count) in &stored {
            value.bytes(row);
            value.i64(*count);
        }
        for append_only in [true, false] {
            let mut touched = Touched::new(append_only, 3);
            let (partition, added) = touched.locate(b"k");
            assert!(added);
            touched.load(partition, &value.0).unwrap();
            assert_eq!(collect(touched.before(partition)), stored);
            assert_eq!(collect(touched.after(partition)), stored);
            touched.add(partition, b"b", 1);
            // Before stays as stored; "b" sorts between; with N = 3 over an append-only input
            // ("a" twice, then "b") "c" can no longer be among the top 3.
            assert_eq!(collect(touched.before(partition)), stored);
            touched.trim(partition);
            let after = collect(touched.after(partition));
            if append_only {
                assert_eq!(after, vec![(b"a".to_vec(), 2), (b"b".to_vec(), 1)]);
            } else {
                assert_eq!(after, vec![(b"a".to_vec(), 2), (b"b".to_vec(), 1), (b"c".to_vec(), 1)]);
            }
            assert!(touched.load(partition, &value.0[..value.0.len() - 1]).is_err(), "a truncated value is an error");
        }
    }

    #[test]
    fn a_retracting_input_adds_and_removes_counts() {
        let mut touched = Touched::new(false, 1);
        let (p, _) = touched.locate(b"");
        touched.add(p, b"x", 1);
        touched.add(p, b"y", 1);
        touched.add(p, b"x", -1);
        touched.add(p, b"z", -1);
        assert_eq!(collect(touched.after(p)), vec![(b"y".to_vec(), 1), (b"z".to_vec(), -1)]);
    }

    #[test]
    fn partitions_come_in_key_order_and_clear_forgets_them() {
        let mut touched = Touched::new(true, 1);
        for key in [&b"m"[..], b"b", b"z", b"b"] {
            let (partition, _) = touched.locate(key);
            touched.add(partition, key, 1);
        }
        assert_eq!(touched.len(), 3);
        let keys: Vec<&[u8]> = touched.in_key_order().into_iter().map(|p| touched.key(p)).collect();
        assert_eq!(keys, vec![&b"b"[..], b"m", b"z"]);

        // Keys longer than the 32-byte prefix, equal in it, and keys that are prefixes of others.
        let mut touched = Touched::new(true, 1);
        let mut keys: Vec<Vec<u8>> = vec![[7u8; 40].to_vec(), [7u8; 32].to_vec(), [7u8; 3].to_vec(), vec![7, 7, 7, 0], vec![]];
        keys.push([[7u8; 32].as_slice(), &[1]].concat());
        keys.push([[7u8; 32].as_slice(), &[0, 9]].concat());
        keys.push([[7u8; 16].as_slice(), &[8]].concat());
        keys.push([[7u8; 16].as_slice(), &[6, 9, 9]].concat());
        for key in &keys {
            touched.locate(key);
        }
        let ordered: Vec<Vec<u8>> = touched.in_key_order().into_iter().map(|p| touched.key(p).to_vec()).collect();
        keys.sort();
        assert_eq!(ordered, keys);
        touched.clear();
        assert_eq!(touched.len(), 0);
        assert_eq!(touched.locate(b"z"), (0, true));
        assert!(collect(touched.after(0)).is_empty());
    }
}
