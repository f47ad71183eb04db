//! The destination's secret store: secrets a source must carry from run to run (a rotated
//! OAuth refresh token), one object each under `<dest>/_sluice/secrets/<name>`, overwritten in
//! place. Exactly one copy exists, whatever the number of manifests kept.
//!
//! On local disk the folder is created `0700` and each file `0600`, written durably (staging
//! file fsynced, renamed into place, folder fsynced; see [`crate::durable`]). On S3 a put
//! replaces the object atomically; access is what the bucket's policy grants.

use crate::config::Destination;
use crate::durable::{self, Place};
use crate::layout;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use sluice_core::sink_support::check_secret_name;
use sluice_core::{Error, Result, Secret, SecretStore, async_trait};

/// Name of the folder under `_sluice` holding the secrets.
const SECRETS_DIR: &str = "secrets";

/// A [`SecretStore`] inside a Parquet or Delta destination.
#[derive(Debug)]
pub(crate) struct DestinationSecrets {
    dest: Destination,
}

impl DestinationSecrets {
    /// The store of `dest` (no I/O).
    pub(crate) fn new(dest: Destination) -> Self {
        DestinationSecrets { dest }
    }

    fn object(&self, name: &str) -> Path {
        self.dest
            .root
            .clone()
            .join(layout::SLUICE_DIR)
            .join(SECRETS_DIR)
            .join(name)
    }

    /// The file-system path of `name` (local destinations: object paths are file paths).
    fn file(&self, name: &str) -> std::path::PathBuf {
        std::path::Path::new("/").join(self.object(name).as_ref())
    }

    fn error(&self, what: &str, name: &str, e: impl std::fmt::Display) -> Error {
        Error::destination(format!(
            "{what} secret `{name}` in {}: {e}",
            self.location()
        ))
    }
}

#[async_trait]
impl SecretStore for DestinationSecrets {
    fn location(&self) -> String {
        format!(
            "{}/_sluice/{SECRETS_DIR}",
            self.dest.url.trim_end_matches('/')
        )
    }

    async fn load(&self, name: &str) -> Result<Option<Secret>> {
        check_secret_name(name)?;
        let bytes = match self.dest.store.get(&self.object(name)).await {
            Ok(r) => r
                .bytes()
                .await
                .map_err(|e| self.error("reading", name, e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error("reading", name, e)),
        };
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| self.error("reading", name, "not UTF-8"))?
            .trim();
        Ok((!text.is_empty()).then(|| Secret::new(text)))
    }

    async fn save(&self, name: &str, value: &Secret) -> Result<()> {
        check_secret_name(name)?;
        if self.dest.local {
            let path = self.file(name);
            let bytes = value.expose().as_bytes().to_vec();
            tokio::task::spawn_blocking(move || write_private(&path, &bytes))
                .await
                .map_err(|e| self.error("saving", name, e))?
                .map_err(|e| self.error("saving", name, e))
        } else {
            let payload = PutPayload::from(value.expose().as_bytes().to_vec());
            self.dest
                .store
                .put(&self.object(name), payload)
                .await
                .map(|_| ())
                .map_err(|e| self.error("saving", name, e))
        }
    }
}

/// Writes `bytes` to `path` readable by its owner only, in a folder only its owner can list,
/// durably.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("a secret's path has a folder");
    if !dir.exists() {
        if let Some(parent) = dir.parent() {
            durable::create_dirs(parent)?;
        }
        create_private_dir(dir)?;
    }
    durable::write_file(path, bytes, Place::Replace, Some(0o600))
}

fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    if let Some(parent) = dir.parent() {
        durable::sync_dir(parent)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LakeConfig;

    fn local(dir: &std::path::Path) -> DestinationSecrets {
        let config: LakeConfig =
            serde_json::from_value(serde_json::json!({"dest": dir.to_str().unwrap()})).unwrap();
        DestinationSecrets::new(Destination::from_config(&config).unwrap())
    }

    #[tokio::test]
    async fn one_private_durable_copy_per_secret_on_local_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let store = local(tmp.path());
        assert_eq!(store.load("token").await.unwrap(), None);
        store.save("token", &Secret::new("first")).await.unwrap();
        store.save("token", &Secret::new("second")).await.unwrap();
        assert_eq!(
            store.load("token").await.unwrap().unwrap().expose(),
            "second"
        );
        let dir = tmp.path().join("_sluice").join("secrets");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["token"], "exactly one copy, no staging leftovers");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode();
            assert_eq!(mode(&dir.join("token")) & 0o777, 0o600);
            assert_eq!(mode(&dir) & 0o777, 0o700);
        }
        assert!(!format!("{store:?}").contains("second"));
        assert!(store.location().ends_with("/_sluice/secrets"));
        assert!(store.save("../escape", &Secret::new("x")).await.is_err());
    }
}
