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

/// Makes an object just PUT to the local store under `root` durable. object_store's local store
/// writes a staging file and renames it without any fsync: the file's data, then each directory
/// from the file's up to `root` (the rename, and directories created for it) are synced here,
/// before the segment is registered and its WAL space released. (An S3 PUT is durable when it
/// returns.)
pub(crate) fn sync_local_object(root: &Path, key: &str) -> std::io::Result<()> {
    let path = root.join(key);
    std::fs::File::open(&path)?.sync_data()?;
    let mut dir = path.parent();
    while let Some(current) = dir {
        std::fs::File::open(current)?.sync_all()?;
        if current == root {
            break;
        }
        dir = current.parent();
    }
    Ok(())
}

fn local(dir: &Path) -> Result<Arc<dyn ObjectStore>> {
    std::fs::create_dir_all(dir).map_err(|source| StorageError::DataDirectory {
        path: dir.display().to_string(),
        source,
    })?;
    let store = LocalFileSystem::new_with_prefix(dir)?;
    Ok(Arc::new(store))
}
