//! Who reads a view's changelog right now.
//!
//! A view writes an epoch's result changes to its changelog only while something may read them:
//! a subscriber, a view over it that is following it, or a view over it that is not running but
//! has changes left to read (see `Views::changes_needed`). Otherwise the changes go to the
//! result multiset only, uncoalesced, and the epoch is recorded here as unlogged. A reader that
//! registers learns the last unlogged epoch: every later epoch is logged (it is decided after
//! the registration), so the reader starts after it — from a snapshot at least that recent, or,
//! without a snapshot, from the epoch after it.

use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Default)]
struct Gate {
    readers: usize,
    /// The last epoch committed (or being committed) without a changelog entry; 0: none.
    unlogged_through: u64,
}

/// Shared by a view's handle (readers register) and its epoch loop (which decides).
#[derive(Debug, Clone, Default)]
pub struct ChangelogGate(Arc<Mutex<Gate>>);

impl ChangelogGate {
    fn lock(&self) -> MutexGuard<'_, Gate> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a reader; returns it (deregistered when dropped) and the last epoch committed,
    /// or being committed, without a changelog entry (0: none).
    pub fn register(&self) -> (ChangelogReader, u64) {
        let mut gate = self.lock();
        gate.readers += 1;
        (ChangelogReader(self.clone()), gate.unlogged_through)
    }

    /// Whether `epoch` writes its changes to the changelog: yes while a reader is registered or
    /// `needed`; otherwise the epoch is recorded as unlogged.
    pub(super) fn logs(&self, epoch: u64, needed: bool) -> bool {
        let mut gate = self.lock();
        if gate.readers > 0 || needed {
            return true;
        }
        gate.unlogged_through = gate.unlogged_through.max(epoch);
        false
    }
}

/// A registered changelog reader; deregisters when dropped.
#[derive(Debug)]
pub struct ChangelogReader(ChangelogGate);

impl Drop for ChangelogReader {
    fn drop(&mut self) {
        let mut gate = self.0.lock();
        gate.readers = gate.readers.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_logged_while_a_reader_is_registered_and_readers_learn_the_last_unlogged_one() {
        let gate = ChangelogGate::default();
        assert!(!gate.logs(1, false));
        assert!(gate.logs(2, true), "a view not following yet needs the changes");
        assert!(!gate.logs(3, false));
        let (reader, unlogged) = gate.register();
        assert_eq!(unlogged, 3);
        assert!(gate.logs(4, false));
        let (second, unlogged) = gate.register();
        assert_eq!(unlogged, 3);
        drop(reader);
        assert!(gate.logs(5, false), "one reader is left");
        drop(second);
        assert!(!gate.logs(6, false));
        assert_eq!(gate.register().1, 6);
    }
}
