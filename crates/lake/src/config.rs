//! The `[sink]` settings and how they become an object store.

mod store;

use crate::error::{LakeError, Result};
use crate::local_store::DurableLocalStore;
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::path::Path;
use serde::Deserialize;
use sluice_core::Secret;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use store::{NetConnector, S3Credentials};

/// The config error for the `table_format` key, which is gone: each table format is its own
/// sink.
pub const TABLE_FORMAT_GONE: &str = "sink.table_format is no longer a setting: each table \
    format is its own sink; use `--sink delta` for Delta tables (`--sink parquet` for plain \
    Parquet) and remove table_format";

/// The destination used when `dest` is not set.
pub const DEFAULT_DEST: &str = "./lake";

/// The defaults of the keys every lake sink shares, as TOML (shown by `sluice config show`).
/// Keys without a fixed default (the S3 keys, which default from the AWS environment, `buckets`
/// and `[sink.network]`) are not listed.
pub const LAKE_DEFAULTS: &str = "\
dest = \"./lake\"
row_group_rows = 131072
row_group_bytes = 16777216
max_rows_per_file = 1000000
max_files_per_bucket = 8
bucket_rows = 1048576
rewrite_chunk_rows = 16384
lease_ttl_secs = 600
keep_manifests = 10
";

/// The `[sink]` settings every lake format shares (`dest` may come from `--dest`); each format
/// crate adds its own keys next to them.
///
/// S3 options default from the standard AWS environment variables. `Debug` never shows the
/// secret key or session token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeConfig {
    /// Where the tables go: a plain path, `file:///abs/path` or `s3://bucket/prefix`.
    /// Default `./lake`.
    #[serde(default)]
    pub dest: Option<String>,
    /// S3 region (default `AWS_REGION`, `AWS_DEFAULT_REGION`, then `us-east-1`).
    #[serde(default)]
    pub region: Option<String>,
    /// S3 endpoint for S3-compatible servers (default `AWS_ENDPOINT_URL`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Allow plain HTTP to the endpoint (default: true for `http://127.0.0.1…` and
    /// `http://localhost…`, else false).
    #[serde(default)]
    pub allow_http: Option<bool>,
    /// S3 access key id (default `AWS_ACCESS_KEY_ID`).
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// S3 secret access key (default `AWS_SECRET_ACCESS_KEY`).
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// S3 session token (default `AWS_SESSION_TOKEN`).
    #[serde(default)]
    pub session_token: Option<Secret>,
    /// Maximum rows per Parquet row group (default 131072).
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// Most bytes a row group may buffer while it is written (default 16 MiB): a row group
    /// ends at `row_group_rows` rows or at this size, whichever comes first, so the memory a
    /// file being written holds does not grow with the width of the table's rows.
    #[serde(default = "default_row_group_bytes")]
    pub row_group_bytes: usize,
    /// Maximum rows per data file; a bucket larger than this is split over several files
    /// (default 1000000).
    #[serde(default = "default_max_rows_per_file")]
    pub max_rows_per_file: usize,
    /// Most data files one bucket may hold (default 8). A commit that only adds new keys to a
    /// bucket writes them as an additional file; once a bucket would exceed this many files,
    /// the commit merges its smallest files with the new rows into one (size-tiered
    /// compaction, no merged file over `max_rows_per_file` rows).
    #[serde(default = "default_max_files_per_bucket")]
    pub max_files_per_bucket: usize,
    /// A fixed number of buckets for every new incremental or child table. Unset (the
    /// default): each such table's bucket count follows its size, see `bucket_rows`.
    /// Re-imported tables are rewritten whole at every re-import and use one bucket. The
    /// count in use is recorded in the manifest.
    #[serde(default)]
    pub buckets: Option<u32>,
    /// Per-table fixed bucket counts for new tables, overriding `buckets` and `bucket_rows`.
    #[serde(default)]
    pub table_buckets: BTreeMap<String, u32>,
    /// Most rows a bucket of a table with a size-driven bucket count should hold (default
    /// 1048576). Such a table starts with 1 bucket; a commit that would leave more rows than
    /// this per bucket first splits every bucket into 4 (row `r` of bucket `b` goes to bucket
    /// `hash(r) mod 4n`, one of `b`, `b + n`, `b + 2n`, `b + 3n`), up to 4096 buckets.
    #[serde(default = "default_bucket_rows")]
    pub bucket_rows: u64,
    /// Stored rows a rewrite merges at a time (default 16384). A commit that changes stored
    /// rows of a bucket rewrites the bucket streamed: a chunk of its rows (at least one read
    /// batch) with the changes of their keys, then the next, so memory holds one chunk, not
    /// the bucket.
    #[serde(default = "default_rewrite_chunk_rows")]
    pub rewrite_chunk_rows: usize,
    /// Lease time-to-live in seconds (default 600). A run renews its lease at each commit and
    /// while it writes; a lease not renewed for this long may be taken over.
    #[serde(default = "default_lease_ttl_secs")]
    pub lease_ttl_secs: u64,
    /// How many manifest versions to keep (default 10; at least 1).
    #[serde(default = "default_keep_manifests")]
    pub keep_manifests: usize,
    /// Proxy, extra CA certificates, client certificate and TLS floor of the object store's
    /// HTTP client (`[sink.network]`, the same keys as `[source.network]`).
    #[serde(default)]
    pub network: sluice_net::NetworkConfig,
}

fn default_row_group_rows() -> usize {
    128 * 1024
}
fn default_row_group_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_max_rows_per_file() -> usize {
    1_000_000
}
fn default_max_files_per_bucket() -> usize {
    8
}
fn default_bucket_rows() -> u64 {
    1024 * 1024
}
fn default_rewrite_chunk_rows() -> usize {
    16 * 1024
}
fn default_lease_ttl_secs() -> u64 {
    600
}
fn default_keep_manifests() -> usize {
    10
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            dest: None,
            region: None,
            endpoint: None,
            allow_http: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            row_group_rows: default_row_group_rows(),
            row_group_bytes: default_row_group_bytes(),
            max_rows_per_file: default_max_rows_per_file(),
            max_files_per_bucket: default_max_files_per_bucket(),
            buckets: None,
            table_buckets: BTreeMap::new(),
            bucket_rows: default_bucket_rows(),
            rewrite_chunk_rows: default_rewrite_chunk_rows(),
            lease_ttl_secs: default_lease_ttl_secs(),
            keep_manifests: default_keep_manifests(),
            network: sluice_net::NetworkConfig::default(),
        }
    }
}

impl LakeConfig {
    /// A config for `dest` with every other setting at its default.
    pub fn new(dest: impl Into<String>) -> Self {
        LakeConfig {
            dest: Some(dest.into()),
            ..Default::default()
        }
    }

    /// Checks the settings (no I/O).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(LakeError::Config(m.to_owned()));
        if self.row_group_rows == 0 {
            return bad("sink.row_group_rows must be at least 1");
        }
        if self.row_group_bytes < 64 * 1024 {
            return bad("sink.row_group_bytes must be at least 65536");
        }
        if self.max_rows_per_file == 0 {
            return bad("sink.max_rows_per_file must be at least 1");
        }
        if self.max_files_per_bucket == 0 {
            return bad("sink.max_files_per_bucket must be at least 1");
        }
        if self.buckets == Some(0) || self.table_buckets.values().any(|&b| b == 0) {
            return bad("sink.buckets must be at least 1");
        }
        if self.bucket_rows == 0 {
            return bad("sink.bucket_rows must be at least 1");
        }
        if self.rewrite_chunk_rows == 0 {
            return bad("sink.rewrite_chunk_rows must be at least 1");
        }
        if self.lease_ttl_secs == 0 {
            return bad("sink.lease_ttl_secs must be at least 1");
        }
        Ok(())
    }
}

/// A resolved destination: one object store and the root path of the lake inside it.
#[derive(Clone)]
pub struct Destination {
    /// The store (the local file system rooted at `/`, every put durable, or one S3 bucket).
    pub store: Arc<dyn ObjectStore>,
    /// The lake's root inside the store.
    pub root: Path,
    /// The destination as the user should see it (no credentials).
    pub url: String,
    /// Whether the store is the local file system (object paths are file paths).
    pub(crate) local: bool,
}

impl Destination {
    /// Whether the store is the local file system (object paths are file paths).
    pub fn is_local(&self) -> bool {
        self.local
    }
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("url", &self.url)
            .field("store", &self.store.to_string())
            .finish()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn dest_error(dest: &str, why: impl std::fmt::Display) -> LakeError {
    LakeError::Config(format!("sink.dest `{dest}`: {why}"))
}

impl Destination {
    /// Resolves `config.dest` (no I/O).
    pub fn from_config(config: &LakeConfig) -> Result<Destination> {
        let dest = config.dest.as_deref().unwrap_or(DEFAULT_DEST);
        if dest.trim().is_empty() {
            return Err(dest_error(dest, "is empty"));
        }
        if let Some((scheme, _)) = dest.split_once("://") {
            let url = url::Url::parse(dest).map_err(|e| dest_error(dest, e))?;
            match scheme {
                "file" => {
                    let path = url
                        .to_file_path()
                        .map_err(|()| dest_error(dest, "not an absolute local path"))?;
                    Self::local(path)
                }
                "s3" => Self::s3(config, dest, &url),
                "az" | "azure" | "abfs" | "abfss" => Self::azure(config, dest, &url),
                "gs" => Self::gcs(config, dest, &url),
                other => Err(dest_error(
                    dest,
                    format!(
                        "unsupported scheme `{other}` (use a path, file://, s3://, az:// or gs://)"
                    ),
                )),
            }
        } else {
            let path = PathBuf::from(dest);
            let path = if path.is_absolute() {
                path
            } else {
                std::env::current_dir()
                    .map_err(|e| dest_error(dest, e))?
                    .join(path)
            };
            Self::local(path)
        }
    }

    fn local(path: PathBuf) -> Result<Destination> {
        let display = path.display().to_string();
        let root = Path::from_absolute_path(&path)
            .map_err(|e| dest_error(&display, format!("not a valid path: {e}")))?;
        Ok(Destination {
            store: Arc::new(DurableLocalStore::new()),
            root,
            url: display,
            local: true,
        })
    }

    fn s3(config: &LakeConfig, dest: &str, url: &url::Url) -> Result<Destination> {
        let bucket = url
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| dest_error(dest, "missing bucket (s3://bucket/prefix)"))?;
        let prefix = url.path().trim_matches('/');
        let root = Path::parse(prefix).map_err(|e| dest_error(dest, e))?;
        let region = config
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_owned());
        let endpoint = config.endpoint.clone().or_else(|| env("AWS_ENDPOINT_URL"));
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(region);
        if let Some(endpoint) = &endpoint {
            let local = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
                .iter()
                .any(|p| endpoint.starts_with(p));
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(config.allow_http.unwrap_or(local))
                .with_virtual_hosted_style_request(false);
        } else if let Some(allow) = config.allow_http {
            builder = builder.with_allow_http(allow);
        }
        let chain = store::s3_chain(config, &env)?;
        tracing::info!("S3 credentials: {}", chain.source);
        builder = match chain.credentials {
            S3Credentials::Static {
                key_id,
                secret,
                token,
            } => {
                let b = builder
                    .with_access_key_id(key_id)
                    .with_secret_access_key(secret.expose());
                match token {
                    Some(t) => b.with_token(t.expose()),
                    None => b,
                }
            }
            S3Credentials::WebIdentity {
                token_file,
                role_arn,
                session_name,
                sts_endpoint,
            } => {
                let mut b = builder
                    .with_config(AmazonS3ConfigKey::WebIdentityTokenFile, token_file)
                    .with_config(AmazonS3ConfigKey::RoleArn, role_arn);
                if let Some(n) = session_name {
                    b = b.with_config(AmazonS3ConfigKey::RoleSessionName, n);
                }
                if let Some(e) = sts_endpoint {
                    b = b.with_config(AmazonS3ConfigKey::StsEndpoint, e);
                }
                b
            }
            S3Credentials::ContainerRelative(uri) => {
                builder.with_config(AmazonS3ConfigKey::ContainerCredentialsRelativeUri, uri)
            }
            S3Credentials::ContainerFull { uri, token_file } => builder
                .with_config(AmazonS3ConfigKey::ContainerCredentialsFullUri, uri)
                .with_config(
                    AmazonS3ConfigKey::ContainerAuthorizationTokenFile,
                    token_file,
                ),
            S3Credentials::Instance => match env("AWS_EC2_METADATA_SERVICE_ENDPOINT") {
                Some(e) => builder.with_config(AmazonS3ConfigKey::MetadataEndpoint, e),
                None => builder,
            },
        };
        if config.region.is_none()
            && env("AWS_REGION").is_none()
            && env("AWS_DEFAULT_REGION").is_none()
            && let Some(r) = chain.profile_region
        {
            builder = builder.with_region(r);
        }
        builder = builder.with_http_connector(connector(config)?);
        // Conditional PUT (If-None-Match / If-Match) is object_store's default for S3
        // (`S3ConditionalPut::ETagMatch`); set it explicitly since the commit protocol needs it.
        builder = builder.with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch);
        // object_store's errors name the bucket and key only; strip secrets from ours too.
        let store = builder
            .build()
            .map_err(|e| dest_error(dest, redact(&e.to_string(), config)))?;
        Ok(Destination {
            store: Arc::new(store),
            root,
            url: dest.to_owned(),
            local: false,
        })
    }

    /// `az://container/prefix` (also `azure://`, and `abfs[s]://container@account.dfs.core.windows.net/prefix`):
    /// Azure Blob Storage. Account and credentials from object_store's `AZURE_*` variables
    /// (account key, SAS, service principal, workload identity, managed identity, or the
    /// Azurite emulator with `AZURE_STORAGE_USE_EMULATOR=true`); `endpoint` overrides the
    /// account URL.
    fn azure(config: &LakeConfig, dest: &str, url: &url::Url) -> Result<Destination> {
        if url.host_str().is_none_or(str::is_empty) {
            return Err(dest_error(
                dest,
                "missing container (az://container/prefix)",
            ));
        }
        let root = Path::parse(url.path().trim_matches('/')).map_err(|e| dest_error(dest, e))?;
        let mut builder = MicrosoftAzureBuilder::from_env()
            .with_url(dest)
            .with_http_connector(connector(config)?);
        if let Some(endpoint) = config.endpoint.clone() {
            builder = builder
                .with_allow_http(config.allow_http.unwrap_or(is_loopback_http(&endpoint)))
                .with_endpoint(endpoint);
        } else if let Some(allow) = config.allow_http {
            builder = builder.with_allow_http(allow);
        }
        tracing::info!("Azure credentials: {}", azure_source(&env));
        let store = builder
            .build()
            .map_err(|e| dest_error(dest, redact(&e.to_string(), config)))?;
        Ok(Destination {
            store: Arc::new(store),
            root,
            url: dest.to_owned(),
            local: false,
        })
    }

    /// `gs://bucket/prefix`: Google Cloud Storage. Credentials from object_store's
    /// `GOOGLE_*` variables (a service account file or key, application default credentials,
    /// or the metadata server of GCE/GKE workload identity).
    fn gcs(config: &LakeConfig, dest: &str, url: &url::Url) -> Result<Destination> {
        if url.host_str().is_none_or(str::is_empty) {
            return Err(dest_error(dest, "missing bucket (gs://bucket/prefix)"));
        }
        let root = Path::parse(url.path().trim_matches('/')).map_err(|e| dest_error(dest, e))?;
        let builder = GoogleCloudStorageBuilder::from_env()
            .with_url(dest)
            .with_http_connector(connector(config)?);
        let source = if env("GOOGLE_SERVICE_ACCOUNT").is_some()
            || env("GOOGLE_SERVICE_ACCOUNT_PATH").is_some()
        {
            "service account file (GOOGLE_SERVICE_ACCOUNT)"
        } else if env("GOOGLE_SERVICE_ACCOUNT_KEY").is_some() {
            "service account key (GOOGLE_SERVICE_ACCOUNT_KEY)"
        } else if env("GOOGLE_APPLICATION_CREDENTIALS").is_some() {
            "application default credentials (GOOGLE_APPLICATION_CREDENTIALS)"
        } else {
            "application default credentials (gcloud's file), else the metadata server"
        };
        tracing::info!("GCS credentials: {source}");
        let store = builder
            .build()
            .map_err(|e| dest_error(dest, redact(&e.to_string(), config)))?;
        Ok(Destination {
            store: Arc::new(store),
            root,
            url: dest.to_owned(),
            local: false,
        })
    }

    /// The file-system path of an object of a local destination.
    pub(crate) fn fs_path(&self, path: &Path) -> Option<PathBuf> {
        self.local.then(|| PathBuf::from(format!("/{path}")))
    }
}

/// The object store's HTTP connector with `[sink.network]` applied.
fn connector(config: &LakeConfig) -> Result<NetConnector> {
    let network = config
        .network
        .resolve("[sink.network]")
        .map_err(|e| LakeError::Config(e.to_string()))?;
    if network.is_set() {
        tracing::info!("object store network: {}", network.describe());
    }
    Ok(NetConnector { network })
}

fn is_loopback_http(endpoint: &str) -> bool {
    ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| endpoint.starts_with(p))
}

/// Which Azure credential object_store will use, as a log line (no secret).
fn azure_source(env: &dyn Fn(&str) -> Option<String>) -> &'static str {
    let set = |k: &str| env(k).is_some();
    if env("AZURE_STORAGE_USE_EMULATOR").is_some_and(|v| v == "true") {
        "the Azurite emulator's account (AZURE_STORAGE_USE_EMULATOR)"
    } else if set("AZURE_STORAGE_ACCOUNT_KEY") || set("AZURE_STORAGE_ACCESS_KEY") {
        "account key (AZURE_STORAGE_ACCOUNT_KEY)"
    } else if set("AZURE_STORAGE_SAS_KEY") || set("AZURE_STORAGE_SAS_TOKEN") {
        "SAS token (AZURE_STORAGE_SAS_KEY)"
    } else if set("AZURE_CLIENT_SECRET") {
        "service principal (AZURE_CLIENT_ID, AZURE_CLIENT_SECRET)"
    } else if set("AZURE_FEDERATED_TOKEN_FILE") {
        "workload identity (AZURE_FEDERATED_TOKEN_FILE)"
    } else {
        "managed identity (instance metadata)"
    }
}

fn redact(message: &str, config: &LakeConfig) -> String {
    let mut m = message.to_owned();
    for s in [&config.secret_access_key, &config.session_token]
        .into_iter()
        .flatten()
    {
        if !s.is_empty() {
            m = m.replace(s.expose(), "***");
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_destinations() {
        let d = Destination::from_config(&LakeConfig::new("/tmp/lake")).unwrap();
        assert_eq!(d.root.as_ref(), "tmp/lake");
        assert!(d.local);
        let d = Destination::from_config(&LakeConfig::new("file:///tmp/x/y")).unwrap();
        assert_eq!(d.root.as_ref(), "tmp/x/y");
        let mut c = LakeConfig::new("s3://bucket/some/prefix/");
        c.endpoint = Some("http://127.0.0.1:9".into());
        c.access_key_id = Some("k".into());
        c.secret_access_key = Some(Secret::new("supersecret"));
        let d = Destination::from_config(&c).unwrap();
        assert_eq!(d.root.as_ref(), "some/prefix");
        assert!(!d.local);
        assert!(!format!("{d:?}").contains("supersecret"));
        assert!(!format!("{c:?}").contains("supersecret"));
        let d = Destination::from_config(&LakeConfig::default()).unwrap();
        assert!(d.root.as_ref().ends_with("lake"));
    }

    #[test]
    fn bad_urls_are_config_errors() {
        for bad in [
            "gs:///nobucket",
            "az:///x",
            "s3:///nobucket",
            "http://example.com/x",
            "",
        ] {
            let e = Destination::from_config(&LakeConfig::new(bad)).unwrap_err();
            let e: sluice_core::Error = e.into();
            assert_eq!(e.kind(), sluice_core::ErrorKind::Config, "{bad}: {e}");
            assert!(e.to_string().contains("sink.dest"), "{e}");
            assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let v = serde_json::json!({"dest": "/tmp/x", "bogus": 1});
        assert!(serde_json::from_value::<LakeConfig>(v).is_err());
    }

    #[test]
    fn the_listed_defaults_are_the_defaults() {
        let listed: LakeConfig = toml::from_str(LAKE_DEFAULTS).unwrap();
        assert_eq!(
            format!("{listed:?}"),
            format!("{:?}", LakeConfig::new(DEFAULT_DEST))
        );
    }
}
