//! An ObjectStore wrapper that injects a failure at the n-th matching operation and then
//! behaves like a dead process (every later operation fails too), plus one that gives each
//! session its own lease object (to race two commits on the manifest).

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Which operations a rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put,
    Delete,
}

/// Fails the `nth` (0-based) `op` on a path containing `contains`, then everything.
#[derive(Debug)]
pub struct FailingStore {
    inner: Arc<dyn ObjectStore>,
    rules: Arc<Rules>,
}

#[derive(Debug)]
struct Rules {
    op: Op,
    contains: String,
    nth: usize,
    seen: AtomicUsize,
    crashed: AtomicBool,
}

impl FailingStore {
    pub fn new(inner: Arc<dyn ObjectStore>, op: Op, contains: &str, nth: usize) -> Self {
        FailingStore {
            inner,
            rules: Arc::new(Rules {
                op,
                contains: contains.to_owned(),
                nth,
                seen: AtomicUsize::new(0),
                crashed: AtomicBool::new(false),
            }),
        }
    }

    pub fn tripped(&self) -> bool {
        self.rules.crashed.load(Ordering::SeqCst)
    }

    fn check(&self, op: Option<Op>, path: &Path) -> Result<()> {
        self.rules.check(op, path)
    }
}

impl Rules {
    fn check(&self, op: Option<Op>, path: &Path) -> Result<()> {
        if self.crashed.load(Ordering::SeqCst) {
            return Err(injected("the process is dead"));
        }
        if op == Some(self.op)
            && path.as_ref().contains(&self.contains)
            && self.seen.fetch_add(1, Ordering::SeqCst) == self.nth
        {
            self.crashed.store(true, Ordering::SeqCst);
            return Err(injected("injected failure"));
        }
        Ok(())
    }
}

fn injected(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "FailingStore",
        source: what.to_owned().into(),
    }
}

impl fmt::Display for FailingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FailingStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FailingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.check(Some(Op::Put), location)?;
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.check(Some(Op::Put), location)?;
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.check(None, location)?;
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let rules = Arc::clone(&self.rules);
        let inner = Arc::clone(&self.inner);
        locations
            .then(move |p| {
                let rules = Arc::clone(&rules);
                let inner = Arc::clone(&inner);
                async move {
                    let p = p?;
                    rules.check(Some(Op::Delete), &p)?;
                    inner.delete(&p).await?;
                    Ok(p)
                }
            })
            .boxed()
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        if let Err(e) = self.check(None, prefix.unwrap_or(&Path::default())) {
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.check(None, prefix.unwrap_or(&Path::default()))?;
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.check(Some(Op::Put), to)?;
        self.inner.copy_opts(from, to, options).await
    }
}

/// Gives its session a private lease object, so two sessions can both "hold the lease" and
/// race on the manifest (the second line of defence).
#[derive(Debug)]
pub struct PrivateLease {
    inner: Arc<dyn ObjectStore>,
    tag: String,
}

impl PrivateLease {
    pub fn new(inner: Arc<dyn ObjectStore>, tag: &str) -> Self {
        PrivateLease {
            inner,
            tag: tag.to_owned(),
        }
    }
    fn map(&self, p: &Path) -> Path {
        match p.as_ref().strip_suffix("_sluice/lease.json") {
            Some(prefix) => Path::from(format!("{prefix}_sluice/lease-{}.json", self.tag)),
            None => p.clone(),
        }
    }
}

impl fmt::Display for PrivateLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateLease({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for PrivateLease {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner
            .put_opts(&self.map(location), payload, opts)
            .await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner
            .put_multipart_opts(&self.map(location), opts)
            .await
    }
    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(&self.map(location), options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let tag = self.tag.clone();
        let mapped = locations.map(move |p| {
            p.map(|p| match p.as_ref().strip_suffix("_sluice/lease.json") {
                Some(prefix) => Path::from(format!("{prefix}_sluice/lease-{tag}.json")),
                None => p,
            })
        });
        self.inner.delete_stream(mapped.boxed())
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
