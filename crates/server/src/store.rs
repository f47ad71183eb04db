//! The embedded store: one SQLite database in the data dir (`sluice.db`) holding connection
//! definitions, run history, pending OAuth states and the encrypted secrets.
//!
//! Calls are short local transactions on one connection behind a mutex; WAL with
//! `synchronous = FULL` makes each one durable when it returns.

use crate::crypto::Cipher;
use crate::model::{Run, Schedule};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sluice_core::{Error, Result, Secret, TableSettings};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// File name of the database in the data dir.
pub const DB_FILE: &str = "sluice.db";

/// Names of the secrets a connection can hold.
pub mod secret {
    /// A Lever API key.
    pub const API_KEY: &str = "api_key";
    /// The OAuth app's client secret.
    pub const OAUTH_CLIENT_SECRET: &str = "oauth_client_secret";
    /// The refresh token of the last authorization.
    pub const OAUTH_REFRESH_TOKEN: &str = "oauth_refresh_token";
    /// The hashing salt.
    pub const HASH_SALT: &str = "hash_salt";
}

/// An OAuth app's public settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthClient {
    /// The app's client id.
    pub client_id: String,
    /// Token endpoint (`None`: Lever's).
    pub token_url: Option<String>,
    /// Authorization page (`None`: Lever's).
    pub authorize_url: Option<String>,
}

/// A connection as stored (secrets are elsewhere, encrypted).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredConnection {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Source plugin.
    pub source: String,
    /// Sink plugin.
    pub sink: String,
    /// Destination.
    pub destination: String,
    /// The source's settings without secrets.
    pub source_settings: serde_json::Map<String, serde_json::Value>,
    /// The sink's settings without `dest`.
    pub sink_settings: serde_json::Map<String, serde_json::Value>,
    /// Per-table settings.
    #[serde(default)]
    pub tables: BTreeMap<String, TableSettings>,
    /// The schedule.
    pub schedule: Schedule,
    /// The OAuth app, when OAuth is set up.
    #[serde(default)]
    pub oauth: Option<OAuthClient>,
    /// Created (epoch ms).
    pub created_at: i64,
    /// Last changed (epoch ms).
    pub updated_at: i64,
    /// The schedule counts from here when no run is newer (creation or resume).
    #[serde(default)]
    pub schedule_anchor_ms: i64,
}

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Mutex<rusqlite::Connection>>,
    cipher: Arc<Cipher>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

fn db_error(e: rusqlite::Error) -> Error {
    Error::internal(format!("the server's store failed: {e}"))
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS connections (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (
    connection_id TEXT NOT NULL, name TEXT NOT NULL, sealed BLOB NOT NULL,
    PRIMARY KEY (connection_id, name));
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
    connection_id TEXT NOT NULL, status TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_by_connection ON runs (connection_id, seq);
CREATE TABLE IF NOT EXISTS oauth_states (
    state_hash TEXT PRIMARY KEY, connection_id TEXT NOT NULL, redirect_uri TEXT NOT NULL,
    expires_at INTEGER NOT NULL);
";

impl Store {
    /// Opens (or creates) the database in `data_dir`.
    pub fn open(data_dir: &Path, cipher: Cipher) -> Result<Store> {
        let path = data_dir.join(DB_FILE);
        let db = rusqlite::Connection::open(&path)
            .map_err(|e| Error::config(format!("cannot open {}: {e}", path.display())))?;
        db.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db_error)?;
        db.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_error)?;
        db.pragma_update(None, "synchronous", "FULL")
            .map_err(db_error)?;
        db.execute_batch(SCHEMA).map_err(db_error)?;
        restrict(&path);
        Ok(Store {
            db: Arc::new(Mutex::new(db)),
            cipher: Arc::new(cipher),
        })
    }

    fn db(&self) -> MutexGuard<'_, rusqlite::Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A value of the `meta` table.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.db()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(db_error)
    }

    /// Sets a value of the `meta` table.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.db()
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map(|_| ())
            .map_err(db_error)
    }

    /// Checks that the master key opens the secrets sealed so far (a sealed marker written
    /// on first start), so a wrong key fails at start, not at the first run.
    pub fn check_master_key(&self) -> Result<()> {
        const MARKER: &str = "master_key_check";
        let sealed: Option<Vec<u8>> = self
            .db()
            .query_row(
                "SELECT sealed FROM secrets WHERE connection_id = '' AND name = ?1",
                [MARKER],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_error)?;
        match sealed {
            Some(bytes) => self.cipher.open(MARKER, &bytes).map(|_| ()),
            None => {
                let bytes = self.cipher.seal(MARKER, &Secret::new("sluice"))?;
                self.db()
                    .execute(
                        "INSERT INTO secrets (connection_id, name, sealed) VALUES ('', ?1, ?2)",
                        params![MARKER, bytes],
                    )
                    .map(|_| ())
                    .map_err(db_error)
            }
        }
    }

    /// Every connection, oldest first.
    pub fn connections(&self) -> Result<Vec<StoredConnection>> {
        let db = self.db();
        let mut stmt = db
            .prepare("SELECT body FROM connections ORDER BY rowid")
            .map_err(db_error)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(db_error)?;
        let mut out = Vec::new();
        for body in rows {
            out.push(parse(&body.map_err(db_error)?)?);
        }
        Ok(out)
    }

    /// One connection.
    pub fn connection(&self, id: &str) -> Result<Option<StoredConnection>> {
        let body: Option<String> = self
            .db()
            .query_row("SELECT body FROM connections WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db_error)?;
        body.map(|b| parse(&b)).transpose()
    }

    /// Inserts or replaces a connection.
    pub fn put_connection(&self, c: &StoredConnection) -> Result<()> {
        let body = serde_json::to_string(c).map_err(|e| Error::internal(e.to_string()))?;
        self.db()
            .execute(
                "INSERT INTO connections (id, body) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                params![c.id, body],
            )
            .map(|_| ())
            .map_err(db_error)
    }

    /// Deletes a connection with its secrets, runs and OAuth states (never its lake).
    pub fn delete_connection(&self, id: &str) -> Result<bool> {
        let mut db = self.db();
        let tx = db.transaction().map_err(db_error)?;
        let n = tx
            .execute("DELETE FROM connections WHERE id = ?1", [id])
            .map_err(db_error)?;
        for table in ["secrets", "runs", "oauth_states"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE connection_id = ?1"),
                [id],
            )
            .map_err(db_error)?;
        }
        tx.commit().map_err(db_error)?;
        Ok(n > 0)
    }

    /// The secret `name` of a connection, decrypted.
    pub fn secret(&self, connection_id: &str, name: &str) -> Result<Option<Secret>> {
        let sealed: Option<Vec<u8>> = self
            .db()
            .query_row(
                "SELECT sealed FROM secrets WHERE connection_id = ?1 AND name = ?2",
                [connection_id, name],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_error)?;
        sealed
            .map(|b| self.cipher.open(&slot(connection_id, name), &b))
            .transpose()
    }

    /// Which secrets a connection holds.
    pub fn secret_names(&self, connection_id: &str) -> Result<Vec<String>> {
        let db = self.db();
        let mut stmt = db
            .prepare("SELECT name FROM secrets WHERE connection_id = ?1 ORDER BY name")
            .map_err(db_error)?;
        let names = stmt
            .query_map([connection_id], |r| r.get::<_, String>(0))
            .map_err(db_error)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_error)?;
        Ok(names)
    }

    /// Encrypts and saves a secret of a connection (replacing it).
    pub fn set_secret(&self, connection_id: &str, name: &str, value: &Secret) -> Result<()> {
        let sealed = self.cipher.seal(&slot(connection_id, name), value)?;
        self.db()
            .execute(
                "INSERT INTO secrets (connection_id, name, sealed) VALUES (?1, ?2, ?3)
                 ON CONFLICT (connection_id, name) DO UPDATE SET sealed = excluded.sealed",
                params![connection_id, name, sealed],
            )
            .map(|_| ())
            .map_err(db_error)
    }

    /// Removes a secret of a connection.
    pub fn remove_secret(&self, connection_id: &str, name: &str) -> Result<()> {
        self.db()
            .execute(
                "DELETE FROM secrets WHERE connection_id = ?1 AND name = ?2",
                [connection_id, name],
            )
            .map(|_| ())
            .map_err(db_error)
    }

    /// Inserts or replaces a run.
    pub fn put_run(&self, run: &Run) -> Result<()> {
        let body = serde_json::to_string(run).map_err(|e| Error::internal(e.to_string()))?;
        self.db()
            .execute(
                "INSERT INTO runs (id, connection_id, status, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status, body = excluded.body",
                params![run.id, run.connection_id, run.status.as_str(), body],
            )
            .map(|_| ())
            .map_err(db_error)
    }

    /// One run.
    pub fn run(&self, id: &str) -> Result<Option<Run>> {
        let body: Option<String> = self
            .db()
            .query_row("SELECT body FROM runs WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(db_error)?;
        body.map(|b| parse(&b)).transpose()
    }

    /// The newest succeeded run of a connection.
    pub fn last_succeeded_run(&self, connection_id: &str) -> Result<Option<Run>> {
        let db = self.db();
        let body: Option<String> = db
            .query_row(
                "SELECT body FROM runs WHERE connection_id = ?1 AND status = 'succeeded' ORDER BY seq DESC LIMIT 1",
                [connection_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_error)?;
        body.map(|b| parse(&b)).transpose()
    }

    /// The newest `limit` runs of a connection, newest first.
    pub fn runs(&self, connection_id: &str, limit: usize) -> Result<Vec<Run>> {
        let db = self.db();
        let mut stmt = db
            .prepare("SELECT body FROM runs WHERE connection_id = ?1 ORDER BY seq DESC LIMIT ?2")
            .map_err(db_error)?;
        let rows = stmt
            .query_map(params![connection_id, limit as i64], |r| {
                r.get::<_, String>(0)
            })
            .map_err(db_error)?;
        let mut out = Vec::new();
        for body in rows {
            out.push(parse(&body.map_err(db_error)?)?);
        }
        Ok(out)
    }

    /// Runs left queued or running by a server that stopped without finishing them.
    pub fn unfinished_runs(&self) -> Result<Vec<Run>> {
        let db = self.db();
        let mut stmt = db
            .prepare("SELECT body FROM runs WHERE status IN ('queued', 'running') ORDER BY seq")
            .map_err(db_error)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(db_error)?;
        let mut out = Vec::new();
        for body in rows {
            out.push(parse(&body.map_err(db_error)?)?);
        }
        Ok(out)
    }

    /// Remembers an OAuth `state` (by its hash) for a connection until `expires_at`.
    pub fn put_oauth_state(
        &self,
        state_hash: &str,
        connection_id: &str,
        redirect_uri: &str,
        expires_at: i64,
    ) -> Result<()> {
        let db = self.db();
        db.execute(
            "DELETE FROM oauth_states WHERE expires_at < ?1",
            [sluice_core::now_ms()],
        )
        .map_err(db_error)?;
        db.execute(
            "INSERT INTO oauth_states (state_hash, connection_id, redirect_uri, expires_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![state_hash, connection_id, redirect_uri, expires_at],
        )
        .map(|_| ())
        .map_err(db_error)
    }

    /// Takes (deletes and returns) an OAuth state: `(connection_id, redirect_uri,
    /// expires_at)`. A state is used once.
    pub fn take_oauth_state(&self, state_hash: &str) -> Result<Option<(String, String, i64)>> {
        let mut db = self.db();
        let tx = db.transaction().map_err(db_error)?;
        let found = tx
            .query_row(
                "SELECT connection_id, redirect_uri, expires_at FROM oauth_states WHERE state_hash = ?1",
                [state_hash],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(db_error)?;
        tx.execute(
            "DELETE FROM oauth_states WHERE state_hash = ?1",
            [state_hash],
        )
        .map_err(db_error)?;
        tx.commit().map_err(db_error)?;
        Ok(found)
    }
}

fn slot(connection_id: &str, name: &str) -> String {
    format!("{connection_id}/{name}")
}

fn parse<T: for<'de> Deserialize<'de>>(body: &str) -> Result<T> {
    serde_json::from_str(body).map_err(|e| {
        Error::internal(format!(
            "the server's store holds an unreadable record: {e}"
        ))
    })
}

/// Makes the database readable by its owner only (it holds no secret in clear, but run
/// history and settings are nobody else's business).
fn restrict(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    #[cfg(not(unix))]
    let _ = path;
}
