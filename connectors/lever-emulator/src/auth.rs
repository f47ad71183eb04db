//! Credentials: API keys (HTTP Basic) and OAuth 2.0 clients, codes and tokens.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::rng::hash;

/// Who is calling, as the data routes see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credential {
    /// Rate-limit bucket key (API key, or `oauth:<client_id>` for bearer tokens).
    pub(crate) bucket: String,
    /// Whether the credential may read confidential data.
    pub(crate) confidential: bool,
}

/// Why an `Authorization` header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    Missing,
    BadKey,
    BadToken,
    Expired,
}

impl AuthFailure {
    pub(crate) fn message(self) -> &'static str {
        match self {
            AuthFailure::Missing => {
                "Missing credentials: use HTTP Basic with your API key as user name, or a Bearer token"
            }
            AuthFailure::BadKey => "Invalid API key",
            AuthFailure::BadToken => "Invalid access token",
            AuthFailure::Expired => "Access token expired",
        }
    }
}

/// An OAuth token-endpoint error: `(status, error, description)`.
pub(crate) type OAuthError = (u16, &'static str, String);

#[derive(Debug, Clone)]
struct Grant {
    client_id: String,
    confidential: bool,
    /// The authorization this token descends from: every refresh token rotated from one
    /// authorization (and every access token issued with them) shares it.
    family: u64,
}

/// How the token endpoint treats a refresh token after it was rotated. Lever documents
/// rotation but not whether the previous token keeps working for a while, so both are
/// available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// How long a rotated refresh token still works (zero: it dies at once).
    pub grace: Duration,
    /// Whether presenting a dead rotated token revokes its whole family (every refresh and
    /// access token descending from the same authorization), as reuse detection does.
    pub reuse_revokes_family: bool,
}

impl Default for RotationPolicy {
    /// The strictest reading: no grace, reuse revokes the family.
    fn default() -> Self {
        RotationPolicy {
            grace: Duration::ZERO,
            reuse_revokes_family: true,
        }
    }
}

/// Scopes granted to every OAuth token (plus `confidential:access:admin` when allowed).
const SCOPES: &str = "offline_access opportunities:read:admin applications:read:admin archive_reasons:read:admin feedback:read:admin feedback_templates:read:admin files:read:admin forms:read:admin form_templates:read:admin interviews:read:admin notes:read:admin offers:read:admin panels:read:admin postings:read:admin referrals:read:admin requisitions:read:admin requisition_fields:read:admin resumes:read:admin sources:read:admin stages:read:admin tags:read:admin users:read:admin";

/// Successful token response.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct TokenResponse {
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
    pub(crate) token_type: &'static str,
    pub(crate) scope: String,
    pub(crate) expires_in: u64,
}

#[derive(Debug)]
pub(crate) struct AuthState {
    seed: u64,
    counter: u64,
    api_keys: HashMap<String, bool>,
    clients: HashMap<String, String>,
    codes: HashMap<String, Grant>,
    refresh: HashMap<String, Grant>,
    /// Rotated refresh tokens: their grant and when they were rotated.
    rotated: HashMap<String, (Grant, Instant)>,
    /// Families revoked by reuse detection.
    revoked: HashSet<u64>,
    access: HashMap<String, (Grant, Instant)>,
    pub(crate) policy: RotationPolicy,
    pub(crate) default_key: String,
}

impl AuthState {
    pub(crate) fn new(seed: u64) -> Self {
        let mut s = Self {
            seed,
            counter: 0,
            api_keys: HashMap::new(),
            clients: HashMap::new(),
            codes: HashMap::new(),
            refresh: HashMap::new(),
            rotated: HashMap::new(),
            revoked: HashSet::new(),
            access: HashMap::new(),
            policy: RotationPolicy::default(),
            default_key: String::new(),
        };
        s.default_key = s.create_api_key(true);
        s
    }

    fn secret(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!(
            "{prefix}_{:016x}{:016x}",
            hash(&[self.seed, 0xA17, self.counter, 1]),
            hash(&[self.seed, 0xA17, self.counter, 2])
        )
    }

    pub(crate) fn create_api_key(&mut self, confidential: bool) -> String {
        let key = self.secret("levemu");
        self.api_keys.insert(key.clone(), confidential);
        key
    }

    pub(crate) fn register_client(&mut self) -> (String, String) {
        let id = self.secret("client");
        let secret = self.secret("secret");
        self.clients.insert(id.clone(), secret.clone());
        (id, secret)
    }

    pub(crate) fn issue_code(&mut self, client_id: &str, confidential: bool) -> Option<String> {
        self.clients.contains_key(client_id).then_some(())?;
        let code = self.secret("code");
        self.counter += 1;
        let family = self.counter;
        self.codes.insert(
            code.clone(),
            Grant {
                client_id: client_id.to_string(),
                confidential,
                family,
            },
        );
        Some(code)
    }

    pub(crate) fn issue_refresh(&mut self, client_id: &str, confidential: bool) -> Option<String> {
        self.clients.contains_key(client_id).then_some(())?;
        let token = self.secret("refresh");
        self.counter += 1;
        let family = self.counter;
        self.refresh.insert(
            token.clone(),
            Grant {
                client_id: client_id.to_string(),
                confidential,
                family,
            },
        );
        Some(token)
    }

    /// Handles `POST /oauth/token`.
    pub(crate) fn token(
        &mut self,
        form: &HashMap<String, String>,
        ttl: Duration,
        now: Instant,
    ) -> Result<TokenResponse, OAuthError> {
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let client_id = get("client_id");
        match self.clients.get(client_id) {
            Some(secret) if secret == get("client_secret") => {}
            _ => {
                return Err((
                    401,
                    "invalid_client",
                    "Unknown client or wrong client_secret".into(),
                ));
            }
        }
        let grant = match get("grant_type") {
            "authorization_code" => self.codes.remove(get("code")).ok_or((
                400,
                "invalid_grant",
                "Invalid or already used authorization code".to_string(),
            ))?,
            "refresh_token" => self.redeem_refresh(get("refresh_token"), now)?,
            other => {
                return Err((
                    400,
                    "unsupported_grant_type",
                    format!("Unsupported grant_type {other:?}"),
                ));
            }
        };
        if grant.client_id != client_id {
            return Err((
                400,
                "invalid_grant",
                "Grant was issued to another client".into(),
            ));
        }
        let access = self.secret("access");
        let refresh = self.secret("refresh");
        self.access
            .insert(access.clone(), (grant.clone(), now + ttl));
        let scope = if grant.confidential {
            format!("{SCOPES} confidential:access:admin")
        } else {
            SCOPES.to_string()
        };
        self.refresh.insert(refresh.clone(), grant);
        Ok(TokenResponse {
            access_token: access,
            refresh_token: refresh,
            token_type: "Bearer",
            scope,
            expires_in: ttl.as_secs(),
        })
    }

    /// Redeems a refresh token: a live one is rotated; a rotated one works within the grace
    /// period and otherwise, with reuse detection, revokes its family.
    fn redeem_refresh(&mut self, token: &str, now: Instant) -> Result<Grant, OAuthError> {
        if let Some(g) = self.refresh.remove(token) {
            self.rotated.insert(token.to_string(), (g.clone(), now));
            return Ok(g);
        }
        let Some((g, rotated_at)) = self.rotated.get(token).cloned() else {
            return Err((400, "invalid_grant", "Unknown refresh token".to_string()));
        };
        if self.revoked.contains(&g.family) {
            return Err((
                400,
                "invalid_grant",
                "Refresh token was revoked".to_string(),
            ));
        }
        if now.saturating_duration_since(rotated_at) < self.policy.grace {
            return Ok(g);
        }
        if self.policy.reuse_revokes_family {
            self.revoke_family(g.family);
            return Err((
                400,
                "invalid_grant",
                "Refresh token reuse detected: every token of this authorization is revoked".into(),
            ));
        }
        Err((
            400,
            "invalid_grant",
            "Refresh token has been rotated and is no longer valid".into(),
        ))
    }

    /// Revokes every refresh and access token of `family`.
    fn revoke_family(&mut self, family: u64) {
        self.revoked.insert(family);
        self.refresh.retain(|_, g| g.family != family);
        self.access.retain(|_, (g, _)| g.family != family);
    }

    /// Checks an `Authorization` header.
    pub(crate) fn authenticate(
        &self,
        header: Option<&str>,
        now: Instant,
    ) -> Result<Credential, AuthFailure> {
        let header = header.ok_or(AuthFailure::Missing)?.trim();
        if let Some(b64) = header.strip_prefix("Basic ") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| AuthFailure::BadKey)?;
            let text = String::from_utf8(decoded).map_err(|_| AuthFailure::BadKey)?;
            let (user, password) = text.split_once(':').ok_or(AuthFailure::BadKey)?;
            if !password.is_empty() {
                return Err(AuthFailure::BadKey);
            }
            let confidential = *self.api_keys.get(user).ok_or(AuthFailure::BadKey)?;
            return Ok(Credential {
                bucket: user.to_string(),
                confidential,
            });
        }
        if let Some(token) = header.strip_prefix("Bearer ") {
            let (grant, expires) = self.access.get(token.trim()).ok_or(AuthFailure::BadToken)?;
            if now >= *expires {
                return Err(AuthFailure::Expired);
            }
            return Ok(Credential {
                bucket: format!("oauth:{}", grant.client_id),
                confidential: grant.confidential,
            });
        }
        Err(AuthFailure::Missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(key: &str, pw: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{key}:{pw}"))
        )
    }

    #[test]
    fn api_keys() {
        let mut a = AuthState::new(1);
        let now = Instant::now();
        let key = a.default_key.clone();
        assert!(
            a.authenticate(Some(&basic(&key, "")), now)
                .unwrap()
                .confidential
        );
        assert_eq!(
            a.authenticate(Some(&basic(&key, "x")), now),
            Err(AuthFailure::BadKey)
        );
        assert_eq!(
            a.authenticate(Some(&basic("nope", "")), now),
            Err(AuthFailure::BadKey)
        );
        assert_eq!(a.authenticate(None, now), Err(AuthFailure::Missing));
        let k2 = a.create_api_key(false);
        assert!(
            !a.authenticate(Some(&basic(&k2, "")), now)
                .unwrap()
                .confidential
        );
    }

    #[test]
    fn refresh_rotation_and_expiry() {
        let mut a = AuthState::new(1);
        a.policy.reuse_revokes_family = false;
        let now = Instant::now();
        let (id, secret) = a.register_client();
        let code = a.issue_code(&id, true).unwrap();
        let form = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        let ttl = Duration::from_secs(10);
        let t1 = a
            .token(
                &form(&[
                    ("grant_type", "authorization_code"),
                    ("client_id", &id),
                    ("client_secret", &secret),
                    ("code", &code),
                ]),
                ttl,
                now,
            )
            .unwrap();
        assert!(
            a.token(
                &form(&[
                    ("grant_type", "authorization_code"),
                    ("client_id", &id),
                    ("client_secret", &secret),
                    ("code", &code)
                ]),
                ttl,
                now
            )
            .is_err()
        );
        let t2 = a
            .token(
                &form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", &id),
                    ("client_secret", &secret),
                    ("refresh_token", &t1.refresh_token),
                ]),
                ttl,
                now,
            )
            .unwrap();
        assert_ne!(t1.refresh_token, t2.refresh_token);
        let again = a.token(
            &form(&[
                ("grant_type", "refresh_token"),
                ("client_id", &id),
                ("client_secret", &secret),
                ("refresh_token", &t1.refresh_token),
            ]),
            ttl,
            now,
        );
        assert_eq!(again.unwrap_err().1, "invalid_grant");
        let bearer = format!("Bearer {}", t2.access_token);
        assert!(a.authenticate(Some(&bearer), now).is_ok());
        assert_eq!(
            a.authenticate(Some(&bearer), now + ttl),
            Err(AuthFailure::Expired)
        );
    }

    fn refresh_form(id: &str, secret: &str, token: &str) -> HashMap<String, String> {
        [
            ("grant_type", "refresh_token"),
            ("client_id", id),
            ("client_secret", secret),
            ("refresh_token", token),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn reuse_of_a_rotated_token_revokes_its_family_or_works_within_grace() {
        let ttl = Duration::from_secs(60);
        let now = Instant::now();
        // Strict (default): reusing the first token kills the second one too.
        let mut a = AuthState::new(1);
        let (id, secret) = a.register_client();
        let first = a.issue_refresh(&id, true).unwrap();
        let t1 = a
            .token(&refresh_form(&id, &secret, &first), ttl, now)
            .unwrap();
        let access = format!("Bearer {}", t1.access_token);
        assert!(a.authenticate(Some(&access), now).is_ok());
        let e = a
            .token(&refresh_form(&id, &secret, &first), ttl, now)
            .unwrap_err();
        assert!(e.2.contains("reuse"), "{e:?}");
        assert!(
            a.token(&refresh_form(&id, &secret, &t1.refresh_token), ttl, now)
                .is_err()
        );
        assert_eq!(
            a.authenticate(Some(&access), now),
            Err(AuthFailure::BadToken)
        );
        // Another authorization of the same client is untouched.
        let other = a.issue_refresh(&id, true).unwrap();
        assert!(
            a.token(&refresh_form(&id, &secret, &other), ttl, now)
                .is_ok()
        );
        // With a grace period the rotated token still works for a while, then it is reuse.
        let mut a = AuthState::new(2);
        a.policy = RotationPolicy {
            grace: Duration::from_secs(30),
            reuse_revokes_family: false,
        };
        let (id, secret) = a.register_client();
        let first = a.issue_refresh(&id, true).unwrap();
        let t1 = a
            .token(&refresh_form(&id, &secret, &first), ttl, now)
            .unwrap();
        assert!(
            a.token(
                &refresh_form(&id, &secret, &first),
                ttl,
                now + Duration::from_secs(10)
            )
            .is_ok()
        );
        assert!(
            a.token(
                &refresh_form(&id, &secret, &first),
                ttl,
                now + Duration::from_secs(31)
            )
            .is_err()
        );
        assert!(
            a.token(&refresh_form(&id, &secret, &t1.refresh_token), ttl, now)
                .is_ok()
        );
    }
}
