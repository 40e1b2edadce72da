//! Opening the object store segments live in, and the layout of keys in it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;

use crate::{Result, StorageError};

/// `topics/{topic_id}/{partition}/{base_offset:020}.arrow`
pub fn segment_key(topic_id: u64, partition: u32, base_offset: u64) -> String {
    format!("topics/{topic_id}/{partition}/{base_offset:020}.arrow")
}

/// `topics/{topic_id}/{partition}/{base_offset:020}.{compacted_at_us}.arrow`: a compacted
/// segment, which replaces segments starting at the same offset and so needs its own name.
pub fn compacted_segment_key(topic_id: u64, partition: u32, base_offset: u64, compacted_at_us: i64) -> String {
    format!("topics/{topic_id}/{partition}/{base_offset:020}.{compacted_at_us}.arrow")
}

/// `topics/{topic_id}/`: every object of a topic.
pub fn topic_prefix(topic_id: u64) -> String {
    format!("topics/{topic_id}/")
}

/// Opens the object store named by `url`: `None` or `file://…` for a local directory (the data
/// directory when no path is given), `s3://bucket[/prefix]` for S3 configured from the standard
/// `AWS_*` environment variables (`AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, credentials, region).
pub fn open_object_store(url: Option<&str>, data_dir: &Path) -> Result<Arc<dyn ObjectStore>> {
    let bad = |url: &str, reason: &str| StorageError::ObjectStoreUrl { url: url.into(), reason: reason.into() };
    match (local_root(url, data_dir), url) {
        (Some(dir), _) => local(&dir),
        (None, Some(url)) if url.starts_with("s3://") => {
            let rest = &url["s3://".len()..];
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad(url, "no bucket name"));
            }
            let store = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| bad(url, &e.to_string()))?;
            let prefix = prefix.trim_matches('/');
            if prefix.is_empty() {
                Ok(Arc::new(store))
            } else {
                Ok(Arc::new(PrefixStore::new(store, prefix)))
            }
        }
        (None, url) => Err(bad(url.unwrap_or_default(), "expected file://path or s3://bucket/prefix")),
    }
}

/// The directory of a local object store (`None` or `file://…`; `None` for any other URL).
pub fn local_root(url: Option<&str>, data_dir: &Path) -> Option<PathBuf> {
    match url {
        None => Some(data_dir.to_path_buf()),
        Some(url) => url.strip_prefix("file://").map(|path| if path.is_empty() { data_dir.to_path_buf() } else { PathBuf::from(path) }),
    }
}

/// File offsets, lengths and buffer addresses of direct writes are multiples of this (the
/// largest logical block size Linux filesystems use).
pub(crate) const DIRECT_WRITE_ALIGN: usize = 4096;

/// Direct writes are issued this many bytes at a time: a WAL fsync waits for the disk's write
/// in flight, and on the machine we measure on (2.9 GB/s) one 6 MB write made it wait 1.5 ms
/// (against 0.15 ms), a chunk about 90 µs. A multiple of [`DIRECT_WRITE_ALIGN`].
const DIRECT_WRITE_CHUNK_BYTES: usize = 256 * 1024;

/// Directories whose entries, up to the store's root, this process has synced.
static SYNCED_DIRECTORIES: std::sync::Mutex<std::collections::BTreeSet<PathBuf>> = std::sync::Mutex::new(std::collections::BTreeSet::new());

fn synced_directories() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<PathBuf>> {
    SYNCED_DIRECTORIES.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes an object to the local store under `root` durably, before it is registered and its WAL
/// space released: into a staging file (`….staging`, swept as an orphan if a crash leaves it),
/// synced, renamed into place, then the directories whose entries changed synced (see the body). (An S3
/// PUT is durable when it returns.)
///
/// The aligned bulk of the bytes is written with `O_DIRECT`: a segment is written once and read
/// back rarely, so copying it through the page cache only costs CPU (new page-cache pages are
/// the dearest memory to touch on a virtual machine) and leaves a burst of dirty pages whose
/// writeback competes with the WAL's fsyncs. Where the filesystem refuses direct I/O (tmpfs),
/// the whole object is written through the page cache.
pub(crate) fn write_local_object(root: &Path, key: &str, bytes: &[u8]) -> std::io::Result<()> {
    let path = root.join(key);
    let parent = path.parent().unwrap_or(root);
    // The highest directory this write creates: its parent's entry for it must be synced too.
    let mut created = None;
    let mut missing = Some(parent);
    while let Some(dir) = missing.filter(|dir| *dir != root && !dir.exists()) {
        created = Some(dir);
        missing = dir.parent();
    }
    std::fs::create_dir_all(parent)?;
    let mut staging = path.clone().into_os_string();
    staging.push(".staging");
    let staging = PathBuf::from(staging);
    // A write cut short (a full disk) must not leave its part behind, taking space.
    let staged = write_staging(&staging, bytes).and_then(|file| file.sync_data());
    if let Err(error) = staged {
        let _ = std::fs::remove_file(&staging);
        return Err(error);
    }
    std::fs::rename(&staging, &path)?;
    // The rename is in `parent`; a created directory's entry is in its own parent. Each sync
    // of a directory is a filesystem journal commit, which the WAL's next fsync waits for, so
    // a directory is synced up to the root only the first time this process writes into it
    // (a crash may have left it unsynced) or when this write created part of it; after that,
    // only `parent`.
    let first_time = !synced_directories().contains(parent);
    let last = match created {
        _ if first_time => root,
        Some(created) => created.parent().unwrap_or(root),
        None => parent,
    };
    let mut dir = Some(parent);
    while let Some(current) = dir {
        std::fs::File::open(current)?.sync_all()?;
        if current == last || current == root {
            break;
        }
        dir = current.parent();
    }
    if first_time {
        synced_directories().insert(parent.to_path_buf());
    }
    Ok(())
}

/// Writes `bytes` to a new file at `path`, the aligned bulk directly (see
/// [`write_local_object`]), and returns the file open for writing.
fn write_staging(path: &Path, bytes: &[u8]) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    // The whole object through the page cache, replacing whatever is at `path`.
    let buffered = || -> std::io::Result<std::fs::File> {
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
        file.write_all(bytes)?;
        Ok(file)
    };
    let bulk = bytes.len() / DIRECT_WRITE_ALIGN * DIRECT_WRITE_ALIGN;
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC | OFlags::DIRECT;
    let direct = match rustix::fs::open(path, flags, Mode::from_raw_mode(0o644)) {
        Ok(fd) if bulk > 0 => std::fs::File::from(fd),
        _ => return buffered(),
    };
    // The bytes copied to an address that is a multiple of the alignment.
    let mut buffer: Vec<u8> = Vec::with_capacity(bulk + DIRECT_WRITE_ALIGN);
    let start = buffer.as_ptr().align_offset(DIRECT_WRITE_ALIGN).min(DIRECT_WRITE_ALIGN);
    buffer.resize(start, 0);
    buffer.extend_from_slice(&bytes[..bulk]);
    let aligned = &buffer[start..];
    let written = aligned
        .chunks(DIRECT_WRITE_CHUNK_BYTES)
        .enumerate()
        .try_for_each(|(index, chunk)| direct.write_all_at(chunk, (index * DIRECT_WRITE_CHUNK_BYTES) as u64));
    match written {
        Ok(()) => {}
        // Direct I/O with other alignment rules: the page cache it is.
        Err(error) if error.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
            drop(direct);
            return buffered();
        }
        Err(error) => return Err(error),
    }
    drop(direct);
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.write_all_at(&bytes[bulk..], bulk as u64)?;
    Ok(file)
}

fn local(dir: &Path) -> Result<Arc<dyn ObjectStore>> {
    std::fs::create_dir_all(dir).map_err(|source| StorageError::DataDirectory {
        path: dir.display().to_string(),
        source,
    })?;
    let store = LocalFileSystem::new_with_prefix(dir)?;
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_written_whole_in_new_and_existing_directories() {
        // On the target directory's disk (a tmpfs refuses direct I/O and takes the other path).
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
        std::fs::create_dir_all(&target).unwrap();
        let root = tempfile::tempdir_in(target).unwrap();
        // Several direct chunks, a partial one and an unaligned tail; then the same directory
        // again; then an object smaller than one block.
        let large: Vec<u8> = (0..2 * DIRECT_WRITE_CHUNK_BYTES + 3 * DIRECT_WRITE_ALIGN + 123).map(|i| (i * 7 % 251) as u8).collect();
        for (key, bytes) in [("a/b/c/one.arrow", &large[..]), ("a/b/c/two.arrow", &large[5..]), ("a/d/three.arrow", &large[..100])] {
            write_local_object(root.path(), key, bytes).unwrap();
            assert_eq!(std::fs::read(root.path().join(key)).unwrap(), bytes, "{key}");
        }
        let leftovers: Vec<_> = walk(root.path()).into_iter().filter(|p| p.extension().is_some_and(|e| e == "staging")).collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.extend(walk(&path));
            } else {
                found.push(path);
            }
        }
        found
    }
}
