//! An ObjectStore wrapper that runs an async hook before every put (and every delete) and
//! lets it change the put's mode: to pause a put, race two of them, act on the store in the middle of a commit,
//! or pretend to be a store that ignores conditional writes.

use async_trait::async_trait;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use std::fmt;
use std::sync::Arc;

/// Called with each put's path and mode; returns the mode to use, or an error to fail the put
/// with. Multipart uploads are announced with `PutMode::Overwrite` (their mode cannot change).
pub type PutHook = Arc<dyn Fn(Path, PutMode) -> BoxFuture<'static, Result<PutMode>> + Send + Sync>;

/// The error a hook fails a put with.
pub fn injected() -> object_store::Error {
    object_store::Error::Generic {
        store: "HookStore",
        source: "injected failure".into(),
    }
}

pub struct HookStore {
    inner: Arc<dyn ObjectStore>,
    hook: PutHook,
}

impl HookStore {
    pub fn new(inner: Arc<dyn ObjectStore>, hook: PutHook) -> Self {
        HookStore { inner, hook }
    }
}

impl fmt::Debug for HookStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HookStore({})", self.inner)
    }
}

impl fmt::Display for HookStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HookStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for HookStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        mut opts: PutOptions,
    ) -> Result<PutResult> {
        opts.mode = (self.hook)(location.clone(), opts.mode.clone()).await?;
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        (self.hook)(location.clone(), PutMode::Overwrite).await?;
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        // Deletes are announced to the hook too (as `PutMode::Overwrite`), before they run.
        let hook = Arc::clone(&self.hook);
        let announced = locations
            .then(move |p| {
                let hook = Arc::clone(&hook);
                async move {
                    let p = p?;
                    hook(p.clone(), PutMode::Overwrite).await?;
                    Ok(p)
                }
            })
            .boxed();
        self.inner.delete_stream(announced)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
