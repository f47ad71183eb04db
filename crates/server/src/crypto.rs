//! Secrets at rest: ChaCha20-Poly1305 with a random nonce per secret, under a 256-bit master
//! key from `SLUICE_MASTER_KEY` or `<data-dir>/master.key` (created `0600` on first start).
//! Each ciphertext is bound to its slot (connection and name) as associated data, so a
//! ciphertext copied into another slot does not decrypt.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use sluice_core::{Error, Result, Secret};
use std::io::Write;
use std::path::Path;

/// Environment variable holding the master key (64 hex digits).
pub const MASTER_KEY_ENV: &str = "SLUICE_MASTER_KEY";
/// File in the data dir holding the master key when the environment does not.
pub const MASTER_KEY_FILE: &str = "master.key";

const NONCE_LEN: usize = 12;

/// Encrypts and decrypts secrets with the master key.
pub struct Cipher {
    aead: ChaCha20Poly1305,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(***)")
    }
}

impl Cipher {
    /// A cipher with the key `SLUICE_MASTER_KEY` holds, else the key file in `data_dir`
    /// (created with a random key, mode 0600, when absent).
    pub fn load(data_dir: &Path, from_env: Option<&str>) -> Result<Cipher> {
        let key = match from_env {
            Some(hex_key) => parse_key(hex_key.trim())
                .map_err(|why| Error::config(format!("{MASTER_KEY_ENV}: {why}")))?,
            None => key_file(&data_dir.join(MASTER_KEY_FILE))?,
        };
        Ok(Cipher::new(&key))
    }

    /// A cipher with `key`.
    pub fn new(key: &[u8; 32]) -> Cipher {
        Cipher {
            aead: ChaCha20Poly1305::new(&Key::from(*key)),
        }
    }

    /// `nonce || ciphertext` of `secret`, bound to `slot`.
    pub fn seal(&self, slot: &str, secret: &Secret) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .aead
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: secret.expose().as_bytes(),
                    aad: slot.as_bytes(),
                },
            )
            .map_err(|_| Error::internal("encrypting a secret failed"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The secret sealed in `bytes` for `slot`.
    pub fn open(&self, slot: &str, bytes: &[u8]) -> Result<Secret> {
        if bytes.len() < NONCE_LEN {
            return Err(Error::config("a stored secret is truncated"));
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at NONCE_LEN");
        let plain = self
            .aead
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: slot.as_bytes(),
                },
            )
            .map_err(|_| {
                Error::config(format!(
                    "a stored secret does not decrypt: the master key ({MASTER_KEY_ENV} or {MASTER_KEY_FILE}) is not the one it was encrypted with"
                ))
            })?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| Error::internal("a stored secret is not UTF-8"))
    }
}

fn parse_key(text: &str) -> std::result::Result<[u8; 32], &'static str> {
    let bytes = hex::decode(text).map_err(|_| "must be 64 hexadecimal digits")?;
    bytes
        .try_into()
        .map_err(|_| "must be 64 hexadecimal digits (32 bytes)")
}

/// Reads the key file, or creates it (0600, durably) with a random key.
fn key_file(path: &Path) -> Result<[u8; 32]> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            return parse_key(text.trim())
                .map_err(|why| Error::config(format!("{}: {why}", path.display())));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::config(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    }
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let write = || -> std::io::Result<()> {
        let mut f = options.open(path)?;
        f.write_all(hex::encode(key).as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    };
    write().map_err(|e| Error::config(format!("cannot create {}: {e}", path.display())))?;
    tracing::info!(path = %path.display(), "created a new master key for secrets at rest");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_with_fresh_nonces_and_binds_the_slot() {
        let c = Cipher::new(&[7u8; 32]);
        let s = Secret::new("hunter2");
        let a = c.seal("c1/api_key", &s).unwrap();
        let b = c.seal("c1/api_key", &s).unwrap();
        assert_ne!(a, b, "a nonce was reused");
        assert!(!a.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(c.open("c1/api_key", &a).unwrap().expose(), "hunter2");
        assert!(
            c.open("c2/api_key", &a).is_err(),
            "moved ciphertext decrypted"
        );
        assert!(Cipher::new(&[8u8; 32]).open("c1/api_key", &a).is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Cipher::load(dir.path(), None).unwrap();
        let sealed = a.seal("x", &Secret::new("v")).unwrap();
        let b = Cipher::load(dir.path(), None).unwrap();
        assert_eq!(b.open("x", &sealed).unwrap().expose(), "v");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(MASTER_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(Cipher::load(dir.path(), Some("nothex")).is_err());
    }
}
