//! The object store of a local destination: object_store's [`LocalFileSystem`] (rooted at
//! `/`) for reads, listings and copies, with
//!
//! * every put durable before it returns ([`crate::durable`]: staging file fsynced, linked or
//!   renamed into place, folder fsynced; new folders fsynced into their parents), multipart
//!   uploads included;
//! * `PutMode::Update` (which `LocalFileSystem` does not implement) as an atomic
//!   compare-and-swap: under an exclusive `flock` of the object's folder, the object's
//!   current ETag is compared with the expected one and the new content renamed over it.
//!   Deletes take the same lock, and a create-if-absent (a hard link) cannot succeed while
//!   the object exists, so nothing can slip between the check and the rename. The lock
//!   serialises the writers of one machine (a local destination's writers), which is what
//!   a folder on local disk can have.

use crate::durable::{self, Place, Staged};
use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
    UpdateVersion, UploadPart,
};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

const STORE: &str = "LocalFileSystem";

/// A local file system whose puts are durable and whose conditional updates are atomic.
#[derive(Debug)]
pub(crate) struct DurableLocalStore {
    inner: Arc<LocalFileSystem>,
}

impl DurableLocalStore {
    /// The whole local file system (object paths are absolute paths without the leading `/`).
    pub(crate) fn new() -> DurableLocalStore {
        DurableLocalStore {
            inner: Arc::new(LocalFileSystem::new()),
        }
    }

    fn fs_path(&self, location: &Path) -> Result<PathBuf> {
        self.inner.path_to_filesystem(location)
    }

    async fn update(
        &self,
        location: &Path,
        payload: PutPayload,
        expected: UpdateVersion,
    ) -> Result<PutResult> {
        let path = self.fs_path(location)?;
        let dir = path.parent().map(std::path::Path::to_path_buf);
        let Some(dir) = dir else {
            return Err(precondition(location, "the object does not exist"));
        };
        let lock = match blocking(move || durable::lock_dir(&dir)).await {
            Ok(lock) => lock,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(precondition(location, "the object does not exist"));
            }
            Err(e) => return Err(io_error(location, e)),
        };
        let current = match self.inner.head(location).await {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(precondition(location, "the object does not exist"));
            }
            Err(e) => return Err(e),
        };
        if expected.e_tag.is_none() || current.e_tag != expected.e_tag {
            return Err(precondition(location, "the object was replaced"));
        }
        let written = blocking(move || {
            let result = write_staged(&path, &payload, Place::Replace);
            drop(lock);
            result
        })
        .await;
        written.map_err(|e| io_error(location, e))
    }
}

impl std::fmt::Display for DurableLocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DurableLocalStore({})", self.inner)
    }
}

/// Runs blocking file-system work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(std::io::Error::other(format!(
            "file-system task failed: {e}"
        ))),
    }
}

/// Writes `payload` durably to `path`; the ETag is the one [`LocalFileSystem`] reports for it
/// (the staged file keeps its inode, size and modification time when linked or renamed).
fn write_staged(
    path: &std::path::Path,
    payload: &PutPayload,
    place: Place,
) -> std::io::Result<PutResult> {
    let staged = Staged::new(path, None)?;
    let mut file = staged.file();
    for chunk in payload.iter() {
        file.write_all(chunk)?;
    }
    let meta = staged.file().metadata()?;
    staged.commit(place)?;
    Ok(PutResult {
        e_tag: Some(e_tag(&meta)),
        version: None,
    })
}

/// The ETag [`LocalFileSystem`] gives a file: inode, modification time (µs) and size, in hex.
fn e_tag(meta: &std::fs::Metadata) -> String {
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let inode = 0u64;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default()
        .as_micros();
    format!("{inode:x}-{mtime:x}-{:x}", meta.len())
}

fn precondition(location: &Path, why: &str) -> object_store::Error {
    object_store::Error::Precondition {
        path: location.to_string(),
        source: why.to_owned().into(),
    }
}

fn io_error(location: &Path, e: std::io::Error) -> object_store::Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => object_store::Error::NotFound {
            path: location.to_string(),
            source: Box::new(e),
        },
        std::io::ErrorKind::AlreadyExists => object_store::Error::AlreadyExists {
            path: location.to_string(),
            source: Box::new(e),
        },
        _ => object_store::Error::Generic {
            store: STORE,
            source: Box::new(e),
        },
    }
}

#[async_trait]
impl ObjectStore for DurableLocalStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        if !opts.attributes.is_empty() {
            return Err(object_store::Error::NotImplemented {
                operation: "`put_opts` with `opts.attributes` specified".into(),
                implementer: self.to_string(),
            });
        }
        let place = match opts.mode {
            PutMode::Overwrite => Place::Replace,
            PutMode::Create => Place::CreateNew,
            PutMode::Update(expected) => return self.update(location, payload, expected).await,
        };
        let path = self.fs_path(location)?;
        blocking(move || write_staged(&path, &payload, place))
            .await
            .map_err(|e| io_error(location, e))
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        if !opts.attributes.is_empty() {
            return Err(object_store::Error::NotImplemented {
                operation: "`put_multipart_opts` with `opts.attributes` specified".into(),
                implementer: self.to_string(),
            });
        }
        let path = self.fs_path(location)?;
        let staged = blocking(move || Staged::new(&path, None))
            .await
            .map_err(|e| io_error(location, e))?;
        let file = Arc::new(
            staged
                .file()
                .try_clone()
                .map_err(|e| io_error(location, e))?,
        );
        Ok(Box::new(DurableUpload {
            location: location.clone(),
            staged: Some(staged),
            file,
            offset: 0,
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let inner = Arc::clone(&self.inner);
        locations
            .then(move |location| {
                let inner = Arc::clone(&inner);
                async move {
                    let location = location?;
                    let path = inner.path_to_filesystem(&location)?;
                    // Under the folder's lock, so a conditional update of the object cannot
                    // recreate it right after its delete.
                    let lock = match path.parent().map(std::path::Path::to_path_buf) {
                        Some(dir) => blocking(move || durable::lock_dir(&dir)).await.ok(),
                        None => None,
                    };
                    let result = inner.delete(&location).await;
                    drop(lock);
                    result.map(|()| location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// A multipart upload into a staging file, put in place durably by `complete`.
#[derive(Debug)]
struct DurableUpload {
    location: Path,
    staged: Option<Staged>,
    file: Arc<std::fs::File>,
    offset: u64,
}

#[async_trait]
impl MultipartUpload for DurableUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let offset = self.offset;
        self.offset += data.content_length() as u64;
        let file = Arc::clone(&self.file);
        let location = self.location.clone();
        let part: BoxFuture<'static, Result<()>> = async move {
            blocking(move || {
                let mut at = offset;
                for chunk in data.iter() {
                    write_all_at(&file, chunk, at)?;
                    at += chunk.len() as u64;
                }
                Ok(())
            })
            .await
            .map_err(|e| io_error(&location, e))
        }
        .boxed();
        part
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let staged = self.staged.take().ok_or(object_store::Error::Generic {
            store: STORE,
            source: "the upload was already completed or aborted".into(),
        })?;
        blocking(move || {
            let meta = staged.file().metadata()?;
            staged.commit(Place::Replace)?;
            Ok(PutResult {
                e_tag: Some(e_tag(&meta)),
                version: None,
            })
        })
        .await
        .map_err(|e| io_error(&self.location, e))
    }

    async fn abort(&mut self) -> Result<()> {
        // Dropping the staging file removes it.
        self.staged.take();
        Ok(())
    }
}

#[cfg(unix)]
fn write_all_at(file: &std::fs::File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

#[cfg(not(unix))]
fn write_all_at(file: &std::fs::File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut f = file;
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::{Step, steps};

    fn object(root: &std::path::Path, name: &str) -> Path {
        Path::from_absolute_path(root.join(name)).unwrap()
    }

    #[tokio::test]
    async fn puts_are_durable_and_etags_match_the_local_store() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let store = DurableLocalStore::new();
        let loc = object(&root, "t/a.json");
        let put = store
            .put(&loc, PutPayload::from_static(b"one"))
            .await
            .unwrap();
        let head = LocalFileSystem::new().head(&loc).await.unwrap();
        assert_eq!(put.e_tag, head.e_tag, "ETags must match what reads report");

        let mut upload = store
            .put_multipart(&object(&root, "t/big.parquet"))
            .await
            .unwrap();
        upload
            .put_part(PutPayload::from_static(b"ab"))
            .await
            .unwrap();
        upload
            .put_part(PutPayload::from_static(b"cd"))
            .await
            .unwrap();
        let done = upload.complete().await.unwrap();
        let big = root.join("t/big.parquet");
        assert_eq!(std::fs::read(&big).unwrap(), b"abcd");
        let head = LocalFileSystem::new()
            .head(&object(&root, "t/big.parquet"))
            .await
            .unwrap();
        assert_eq!(done.e_tag, head.e_tag);
        let of_big: Vec<Step> = steps(&root)
            .into_iter()
            .filter(|(_, p)| p.to_string_lossy().contains("big.parquet"))
            .map(|s| s.0)
            .collect();
        assert_eq!(
            of_big,
            [Step::SyncFile, Step::Rename],
            "file synced before its rename"
        );
        assert_eq!(
            steps(&root).last().unwrap(),
            &(Step::SyncDir, root.join("t")),
            "folder synced after the rename"
        );
    }

    #[tokio::test]
    async fn updates_are_compare_and_swap() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let store = Arc::new(DurableLocalStore::new());
        let loc = object(&root, "_sluice/lease.json");
        let first = store
            .put_opts(&loc, PutPayload::from_static(b"0"), PutMode::Create.into())
            .await
            .unwrap();
        let version = UpdateVersion {
            e_tag: first.e_tag,
            version: None,
        };
        // Many concurrent updates from the same version: exactly one wins.
        let tries = (0..8).map(|i| {
            let store = Arc::clone(&store);
            let (loc, version) = (loc.clone(), version.clone());
            async move {
                let body = PutPayload::from(format!("{i}").into_bytes());
                store
                    .put_opts(&loc, body, PutMode::Update(version).into())
                    .await
            }
        });
        let results = futures::future::join_all(tries).await;
        let won: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
        assert_eq!(won.len(), 1, "{results:?}");
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Ok(_) | Err(object_store::Error::Precondition { .. })))
        );
        // The winner's version is current: it can update again; the old one cannot.
        let next = UpdateVersion {
            e_tag: won[0].as_ref().unwrap().e_tag.clone(),
            version: None,
        };
        store
            .put_opts(
                &loc,
                PutPayload::from_static(b"x"),
                PutMode::Update(next).into(),
            )
            .await
            .unwrap();
        let stale = store
            .put_opts(
                &loc,
                PutPayload::from_static(b"y"),
                PutMode::Update(version).into(),
            )
            .await;
        assert!(matches!(
            stale,
            Err(object_store::Error::Precondition { .. })
        ));
        store.delete(&loc).await.unwrap();
        let gone = UpdateVersion {
            e_tag: Some("any".into()),
            version: None,
        };
        let missing = store
            .put_opts(
                &loc,
                PutPayload::from_static(b"z"),
                PutMode::Update(gone).into(),
            )
            .await;
        assert!(matches!(
            missing,
            Err(object_store::Error::Precondition { .. })
        ));
        assert!(!root.join("_sluice/lease.json").exists());
    }
}
