//! The disk reserve: a file of `disk_reserve_bytes` preallocated in the data directory, given
//! back when the disk is full so that the statements that free space (`DROP TOPIC`, `DROP
//! MATERIALIZED VIEW`) can still write their few catalog pages. It is taken again once space
//! returns (after the dropped objects are deleted, or at the next start).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub(crate) const RESERVE_FILE: &str = "disk-reserve";

pub(crate) struct DiskReserve {
    path: PathBuf,
    bytes: u64,
    /// Whether the file is on disk at its full size.
    held: Mutex<bool>,
}

impl DiskReserve {
    /// The reserve of `bytes` in `data_dir`, taken if there is room (`0`: none).
    pub(crate) fn new(data_dir: &Path, bytes: u64) -> Self {
        let reserve = Self { path: data_dir.join(RESERVE_FILE), bytes, held: Mutex::new(false) };
        reserve.take();
        reserve
    }

    fn held(&self) -> std::sync::MutexGuard<'_, bool> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the reserve's space if it is not held; returns whether it is held now.
    pub(crate) fn take(&self) -> bool {
        let mut held = self.held();
        if *held || self.bytes == 0 {
            return *held;
        }
        let taken = std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(&self.path).and_then(|file| {
            rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, self.bytes)?;
            file.sync_all()
        });
        match taken {
            Ok(()) => {
                tracing::debug!(bytes = self.bytes, "disk reserve taken");
                *held = true;
            }
            Err(error) => {
                // Not enough room (or no fallocate): no reserve until there is.
                tracing::debug!(%error, "cannot take the disk reserve");
                let _ = std::fs::remove_file(&self.path);
            }
        }
        *held
    }

    /// Gives the reserve's space back to the filesystem; returns whether there was any.
    pub(crate) fn release(&self) -> bool {
        let mut held = self.held();
        if !*held {
            return false;
        }
        *held = false;
        match std::fs::remove_file(&self.path) {
            Ok(()) => {
                tracing::warn!(
                    bytes = self.bytes,
                    "the disk is full: released the disk reserve so that space can be freed; it is taken again once there is room"
                );
                true
            }
            Err(error) => {
                tracing::error!(%error, "cannot release the disk reserve");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_takes_its_space_gives_it_back_and_takes_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let reserve = DiskReserve::new(dir.path(), 1 << 20);
        let path = dir.path().join(RESERVE_FILE);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
        assert!(reserve.release());
        assert!(!path.exists());
        assert!(!reserve.release(), "nothing left to release");
        assert!(reserve.take());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
        let none = DiskReserve::new(&dir.path().join("none"), 0);
        assert!(!none.take() && !none.release());
    }
}
