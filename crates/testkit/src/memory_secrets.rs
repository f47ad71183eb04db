//! An in-memory [`SecretStore`] that counts saves and can be told to fail, for tests of
//! sources that rotate secrets.

use sluice_core::{Error, Result, Secret, SecretStore, async_trait};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Secrets in memory, shared by clones (one destination's store across runs).
#[derive(Clone, Default)]
pub struct MemorySecrets {
    values: Arc<Mutex<BTreeMap<String, Secret>>>,
    saves: Arc<AtomicU64>,
    fail_saves: Arc<AtomicBool>,
}

impl std::fmt::Debug for MemorySecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemorySecrets(***)")
    }
}

impl MemorySecrets {
    /// The value saved under `name` (tests compare it; never print it in production code).
    pub fn get(&self, name: &str) -> Option<Secret> {
        self.values.lock().expect("lock").get(name).cloned()
    }
    /// Number of successful saves so far.
    pub fn saves(&self) -> u64 {
        self.saves.load(Ordering::SeqCst)
    }
    /// Makes every later save fail (a destination that became unwritable).
    pub fn fail_saves(&self, fail: bool) {
        self.fail_saves.store(fail, Ordering::SeqCst);
    }
}

#[async_trait]
impl SecretStore for MemorySecrets {
    fn location(&self) -> String {
        "memory".into()
    }
    async fn load(&self, name: &str) -> Result<Option<Secret>> {
        Ok(self.get(name))
    }
    async fn save(&self, name: &str, value: &Secret) -> Result<()> {
        if self.fail_saves.load(Ordering::SeqCst) {
            return Err(Error::destination(format!(
                "injected failure saving secret `{name}`"
            )));
        }
        self.values
            .lock()
            .expect("lock")
            .insert(name.to_owned(), value.clone());
        self.saves.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}
