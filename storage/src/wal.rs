//! The write-ahead log: numbered files `wal/{sequence:020}.wal` of CRC32C-framed records (see
//! [`crate::record`]).
//!
//! One thread owns the open file. Writers hand it records through a channel; it takes every
//! record waiting (up to `wal_group_bytes_max`), writes them, fsyncs once, makes the rows visible
//! in order and only then acknowledges each writer: group commit. A failed write or fsync poisons
//! the log: nothing more is accepted until restart, because the state of the file is unknown.
//!
//! A file is released once every partition it holds rows for is sealed past them.
//!
//! `fdatasync` of a file that grows must also commit its new size and blocks to the filesystem
//! journal, which waits for whatever else is being written (segments, the catalog). So files
//! are reused: a released file is renamed `spare-{sequence}.wal` (up to [`SPARE_FILES_MAX`]),
//! and the next roll renames a spare to the new number and overwrites it from the start; only
//! without a spare is a new file created, preallocated to `wal_file_bytes_max` (`fallocate`).
//! On this machine a 270 KB commit took 0.83 ms appending, 0.35 ms into preallocated space and
//! 0.19 ms overwriting written blocks. Every record carries the number of the file it was
//! written to, so replay tells the stale records of a reused file's previous life from new ones
//! and stops there; it also stops at an all-zero frame header (preallocated space). A clean
//! shutdown cuts the open file back to what was written.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::metrics::StorageMetrics;
use crate::record::{decode_payload, finish_frame, payload_sequence, read_frame, FrameEnd, RecordEntry};
use crate::{Result, StorageError};

/// Bound of the queue between writers and the WAL thread (records, not bytes: each record's
/// bytes are bounded by the statement that made it).
const WAL_QUEUE_RECORDS_MAX: usize = 4096;
/// Released files kept for reuse (each up to `wal_file_bytes_max` on disk).
const SPARE_FILES_MAX: usize = 2;
const SPARE_PREFIX: &str = "spare-";

pub(crate) struct WalRequest {
    pub frame: Vec<u8>,
    pub entries: Vec<RecordEntry>,
    pub ack: oneshot::Sender<Result<()>>,
}

/// For each `(topic, partition)`, one past the last offset a WAL file holds.
type FileExtent = HashMap<(u64, u32), u64>;

struct WalFile {
    sequence: u64,
    path: PathBuf,
    extent: FileExtent,
}

/// The files of the log, oldest first; the last is the open one. And released files kept for
/// reuse.
#[derive(Default)]
pub(crate) struct WalFiles {
    files: Vec<WalFile>,
    spares: Vec<PathBuf>,
}

pub(crate) struct Wal {
    dir: PathBuf,
    /// `None` once shut down.
    sender: Mutex<Option<mpsc::Sender<WalRequest>>>,
    files: Arc<Mutex<WalFiles>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Makes rows durable-and-acknowledged visible; called by the WAL thread after each fsync, in
/// log order.
pub(crate) type ApplyFn = Arc<dyn Fn(&[RecordEntry]) + Send + Sync>;

fn file_path(dir: &Path, sequence: u64) -> PathBuf {
    dir.join(format!("{sequence:020}.wal"))
}

fn sync_directory(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Lists WAL files by sequence.
fn list_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(StorageError::WalIo)? {
        let entry = entry.map_err(StorageError::WalIo)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".wal") {
            if let Ok(sequence) = stem.parse::<u64>() {
                files.push((sequence, entry.path()));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Lists spare files (see the module doc).
fn list_spares(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut spares = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(StorageError::WalIo)? {
        let entry = entry.map_err(StorageError::WalIo)?;
        if entry.file_name().to_str().is_some_and(|n| n.starts_with(SPARE_PREFIX) && n.ends_with(".wal")) {
            spares.push(entry.path());
        }
    }
    Ok(spares)
}

/// Replays every record in the WAL directory in order, calling `replay` for each entry.
/// A torn or corrupt tail is truncated (it was never acknowledged). Returns the files found,
/// with what each holds, and the next sequence number.
pub(crate) fn replay(
    dir: &Path,
    mut replay: impl FnMut(RecordEntry),
) -> Result<(WalFiles, u64)> {
    std::fs::create_dir_all(dir).map_err(StorageError::WalIo)?;
    let mut found = WalFiles::default();
    let mut next_sequence = 1;
    for (sequence, path) in list_files(dir)? {
        let data = std::fs::read(&path).map_err(StorageError::WalIo)?;
        let mut position = 0usize;
        let mut extent = FileExtent::new();
        // Whether a record of this file carried its number: unnumbered (version 1) records
        // after one are stale too.
        let mut numbered = false;
        loop {
            match read_frame(&data, position) {
                Ok((payload, _))
                    if payload_sequence(payload).map_or(numbered, |written_to| written_to != sequence) =>
                {
                    // A reused file: what follows is from its previous life, all sealed.
                    tracing::debug!(file = %path.display(), position, "end of records (older records follow)");
                    break;
                }
                Ok((payload, next)) => match decode_payload(payload) {
                    Ok(entries) => {
                        numbered |= payload_sequence(payload).is_some();
                        for entry in entries {
                            let end = entry.base_offset + entry.batch.num_rows() as u64;
                            let slot = extent.entry((entry.topic_id, entry.partition)).or_insert(0);
                            *slot = (*slot).max(end);
                            replay(entry);
                        }
                        position = next;
                    }
                    Err(error) => {
                        truncate(&path, &data, position, &format!("undecodable record: {error}"))?;
                        break;
                    }
                },
                Err(FrameEnd::Clean) => break,
                Err(FrameEnd::Torn { reason }) => {
                    truncate(&path, &data, position, &reason)?;
                    break;
                }
            }
        }
        found.files.push(WalFile { sequence, path, extent });
        next_sequence = sequence + 1;
    }
    found.spares = list_spares(dir)?;
    Ok((found, next_sequence))
}

fn truncate(path: &Path, data: &[u8], position: usize, reason: &str) -> Result<()> {
    // Zeros after the damage are unused preallocated space, not lost data.
    let dropped = data[position..].iter().rposition(|&b| b != 0).map_or(0, |last| last + 1);
    tracing::warn!(
        file = %path.display(),
        position,
        bytes = dropped,
        reason,
        "truncating torn WAL tail: {dropped} bytes after the last whole record were never acknowledged \
         (in a reused file, most are its old records)"
    );
    let file = OpenOptions::new().write(true).open(path).map_err(StorageError::WalIo)?;
    file.set_len(position as u64).map_err(StorageError::WalIo)?;
    file.sync_all().map_err(StorageError::WalIo)?;
    Ok(())
}

struct WalWriter {
    dir: PathBuf,
    file: File,
    /// The open file's number, which every record written to it carries.
    sequence: u64,
    file_bytes: u64,
    file_bytes_max: u64,
    group_bytes_max: u64,
    files: Arc<Mutex<WalFiles>>,
    apply: ApplyFn,
    metrics: Arc<StorageMetrics>,
    poisoned: Option<String>,
}

impl Wal {
    /// Starts the WAL thread on a new file numbered `next_sequence`, after replay found `files`.
    pub(crate) fn start(
        dir: &Path,
        files: WalFiles,
        next_sequence: u64,
        file_bytes_max: u64,
        group_bytes_max: u64,
        apply: ApplyFn,
        metrics: Arc<StorageMetrics>,
    ) -> Result<Self> {
        let files = Arc::new(Mutex::new(files));
        let file = open_file(dir, next_sequence, file_bytes_max, &files)?;
        let (sender, receiver) = mpsc::channel(WAL_QUEUE_RECORDS_MAX);
        let writer = WalWriter {
            dir: dir.to_path_buf(),
            file,
            sequence: next_sequence,
            file_bytes: 0,
            file_bytes_max,
            group_bytes_max,
            files: files.clone(),
            apply,
            metrics,
            poisoned: None,
        };
        let thread = std::thread::Builder::new()
            .name("streamhouse-wal".into())
            .spawn(move || writer.run(receiver))
            .map_err(StorageError::WalIo)?;
        Ok(Self { dir: dir.to_path_buf(), sender: Mutex::new(Some(sender)), files, thread: Mutex::new(Some(thread)) })
    }

    /// Queues a record. The caller must hold the append-order lock while calling this, so that
    /// records enter the log in offset order.
    pub(crate) async fn submit(&self, request: WalRequest) -> Result<()> {
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match sender {
            Some(sender) => sender.send(request).await.map_err(|_| StorageError::ShuttingDown),
            None => Err(StorageError::ShuttingDown),
        }
    }

    /// Releases every closed file whose rows are all sealed: keeps it as a spare, or deletes it
    /// when there are enough. `sealed_offset` answers, for a partition, how far it is sealed
    /// (`None` if its topic was dropped).
    pub(crate) fn release(&self, sealed_offset: impl Fn(u64, u32) -> Option<u64>) {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let open = files.files.len().saturating_sub(1);
        let mut kept = Vec::with_capacity(files.files.len());
        for (index, file) in std::mem::take(&mut files.files).into_iter().enumerate() {
            let releasable = index < open
                && file.extent.iter().all(|(&(topic, partition), &end)| {
                    sealed_offset(topic, partition).is_none_or(|sealed| sealed >= end)
                });
            if releasable {
                let outcome = if files.spares.len() < SPARE_FILES_MAX {
                    let spare = self.dir.join(format!("{SPARE_PREFIX}{:020}.wal", file.sequence));
                    std::fs::rename(&file.path, &spare).map(|()| files.spares.push(spare))
                } else {
                    std::fs::remove_file(&file.path)
                };
                match outcome {
                    Ok(()) => {
                        tracing::debug!(sequence = file.sequence, "released WAL file");
                        continue;
                    }
                    Err(error) => tracing::warn!(file = %file.path.display(), %error, "cannot release WAL file"),
                }
            }
            kept.push(file);
        }
        files.files = kept;
    }

    /// Stops accepting records, lets the thread finish what is queued and waits for it.
    pub(crate) fn shutdown(&self) {
        // The thread ends once every sender is gone; writers mid-submit hold a clone only until
        // their record is queued, and queued records are still committed.
        drop(self.sender.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }

    /// Number of WAL files on disk.
    pub(crate) fn file_count(&self) -> usize {
        self.files.lock().unwrap_or_else(|p| p.into_inner()).files.len()
    }
}

/// Opens the file numbered `sequence` for writing from its start: a spare renamed, or a new
/// file preallocated to `preallocate` bytes.
fn open_file(dir: &Path, sequence: u64, preallocate: u64, files: &Mutex<WalFiles>) -> Result<File> {
    let path = file_path(dir, sequence);
    let spare = files.lock().unwrap_or_else(|p| p.into_inner()).spares.pop();
    let reused = spare.and_then(|spare| {
        let reuse = std::fs::rename(&spare, &path).and_then(|()| OpenOptions::new().write(true).open(&path));
        reuse.inspect_err(|error| tracing::warn!(file = %spare.display(), %error, "cannot reuse WAL file")).ok()
    });
    let file = match reused {
        Some(file) => file,
        None => {
            let file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&path)
                .map_err(StorageError::WalIo)?;
            if let Err(error) = rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, preallocate) {
                // A filesystem without fallocate: the file grows as it is written, commits are slower.
                tracing::debug!(%error, "cannot preallocate WAL file");
            }
            file
        }
    };
    // The new file's directory entry must be durable before anything in it is acknowledged.
    sync_directory(dir).map_err(StorageError::WalIo)?;
    files
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .files
        .push(WalFile { sequence, path, extent: FileExtent::new() });
    Ok(file)
}

impl WalWriter {
    fn run(mut self, mut receiver: mpsc::Receiver<WalRequest>) {
        while let Some(first) = receiver.blocking_recv() {
            let mut group_bytes = first.frame.len() as u64;
            let mut group = vec![first];
            while group_bytes < self.group_bytes_max {
                match receiver.try_recv() {
                    Ok(request) => {
                        group_bytes += request.frame.len() as u64;
                        group.push(request);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group);
        }
        // Channel closed: every writer is gone. Make sure what was written is on disk, and give
        // back the preallocated space it did not use.
        if let Err(error) = self.file.sync_data().and_then(|()| self.file.set_len(self.file_bytes)) {
            tracing::error!(%error, "final WAL fsync failed");
        }
    }

    fn commit_group(&mut self, mut group: Vec<WalRequest>) {
        if let Some(reason) = &self.poisoned {
            for request in group {
                let _ = request.ack.send(Err(StorageError::WalFailed(reason.clone())));
            }
            return;
        }
        let started = Instant::now();
        let mut written = 0u64;
        let mut outcome = Ok(());
        for request in group.iter_mut() {
            finish_frame(&mut request.frame, self.sequence);
            if let Err(error) = self.file.write_all(&request.frame) {
                outcome = Err(error);
                break;
            }
            written += request.frame.len() as u64;
        }
        if outcome.is_ok() {
            outcome = self.file.sync_data();
        }
        if let Err(error) = outcome {
            let reason = format!("WAL write or fsync failed: {error}");
            tracing::error!("{reason}; refusing further writes");
            self.poisoned = Some(reason.clone());
            for request in group {
                let _ = request.ack.send(Err(StorageError::WalFailed(reason.clone())));
            }
            return;
        }
        self.metrics.wal_fsync_seconds.observe(started.elapsed().as_secs_f64());
        self.metrics.wal_bytes_written.add(written);
        self.metrics.wal_group_commits.add(1);
        self.file_bytes += written;
        {
            let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(current) = files.files.last_mut() {
                for request in &group {
                    for entry in &request.entries {
                        let end = entry.base_offset + entry.batch.num_rows() as u64;
                        let slot = current.extent.entry((entry.topic_id, entry.partition)).or_insert(0);
                        *slot = (*slot).max(end);
                    }
                }
            }
        }
        for request in group {
            (self.apply)(&request.entries);
            let _ = request.ack.send(Ok(()));
        }
        if self.file_bytes >= self.file_bytes_max {
            self.roll();
        }
    }

    fn roll(&mut self) {
        let next = self.sequence + 1;
        match open_file(&self.dir, next, self.file_bytes_max, &self.files) {
            Ok(file) => {
                self.file = file;
                self.sequence = next;
                self.file_bytes = 0;
            }
            Err(error) => {
                // Keep writing to the current file: it is still valid, only larger.
                tracing::error!(%error, "cannot start a new WAL file");
            }
        }
    }
}
