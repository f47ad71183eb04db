//! Durable homes for the secrets a source must carry from run to run, such as an OAuth
//! refresh token that the authorization server rotates on every use.
//!
//! A rotated refresh token is the only copy of the account's authorization: the previous
//! token dies when the new one is issued. It therefore cannot wait for a commit like the rest
//! of the state; a source saves it through a [`SecretStore`] *before* it uses the access token
//! that came with it, so that a failure, Ctrl-C or a kill at any later instant leaves a token
//! that works. Sinks that keep state provide a store next to it
//! ([`crate::Sink::secret_store`]); the store keeps exactly one copy of each secret.

use crate::error::Result;
use crate::secret::Secret;
use async_trait::async_trait;

/// Keeps named secrets durably: one copy each, overwritten in place.
///
/// A rotated OAuth refresh token is the only copy of the account's authorization: the
/// previous token dies when the new one is issued. It therefore cannot wait for a commit like
/// the rest of the state; a source saves it through the store
/// ([`ReadContext::secrets`](crate::ReadContext::secrets),
/// [`CheckContext::secrets`](crate::CheckContext::secrets)) *before* it uses the access token
/// that came with it, so that a failure, Ctrl-C or a kill at any later instant leaves a token
/// that works. Sinks that keep state provide a store next to it
/// ([`Sink::secret_store`](crate::Sink::secret_store)).
///
/// Implementations must make [`SecretStore::save`] durable before it returns (a crash right
/// after it must not lose the value), must never write a secret in clear where others can
/// read it (files `0600`), and must never put a secret in an error or a log line.
#[async_trait]
pub trait SecretStore: Send + Sync + std::fmt::Debug {
    /// Where the secrets are kept, for messages (a path or URL; never a secret).
    fn location(&self) -> String;

    /// The secret saved under `name`, if any.
    async fn load(&self, name: &str) -> Result<Option<Secret>>;

    /// Saves `value` under `name`, replacing the previous value; durable when it returns.
    async fn save(&self, name: &str, value: &Secret) -> Result<()>;
}

/// Checks that a secret's name is a plain identifier (it becomes a file or object name).
pub fn check_secret_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(crate::Error::internal(format!(
            "secret name `{name}` is not a plain identifier ([A-Za-z0-9_-], at most 128 bytes)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_plain_identifiers() {
        assert!(check_secret_name("lever_oauth_refresh_token").is_ok());
        for bad in ["", "../x", "a/b", "a b", &"x".repeat(129)] {
            assert!(check_secret_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
