//! Building the object store of a destination: the HTTP client every cloud store uses
//! (`[sink.network]` applied, TLS failures explained), the S3 credential chain (whose source is
//! logged, never the secret), and the Azure Blob Storage and Google Cloud Storage builders.

use super::LakeConfig;
use crate::error::{LakeError, Result};
use object_store::client::{
    ClientConfigKey, ClientOptions, HttpClient, HttpConnector, HttpError, HttpErrorKind,
    HttpRequest, HttpResponse, HttpService,
};
use sluice_core::Secret;
use std::path::PathBuf;

/// Builds each store's HTTP clients with `[sink.network]` on top of object_store's options
/// (timeouts, `allow_http`, user agent), so the proxy, extra CAs, client certificate and TLS
/// floor reach the store and its credential endpoints alike.
#[derive(Debug, Clone)]
pub(crate) struct NetConnector {
    pub(crate) network: sluice_net::Network,
}

impl HttpConnector for NetConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let get = |k: ClientConfigKey| options.get_config_value(&k);
        let duration = |k: ClientConfigKey| get(k).and_then(|v| humantime::parse_duration(&v).ok());
        let mut b = reqwest::Client::builder().user_agent(
            get(ClientConfigKey::UserAgent)
                .unwrap_or_else(|| concat!("sluice/", env!("CARGO_PKG_VERSION")).to_owned()),
        );
        if let Some(t) = duration(ClientConfigKey::Timeout) {
            b = b.timeout(t);
        }
        if let Some(t) = duration(ClientConfigKey::ConnectTimeout) {
            b = b.connect_timeout(t);
        }
        if let Some(t) = duration(ClientConfigKey::PoolIdleTimeout) {
            b = b.pool_idle_timeout(t);
        }
        if let Some(n) = get(ClientConfigKey::PoolMaxIdlePerHost).and_then(|v| v.parse().ok()) {
            b = b.pool_max_idle_per_host(n);
        }
        if get(ClientConfigKey::Http1Only).as_deref() == Some("true") {
            b = b.http1_only();
        }
        // Like object_store's own client: no transparent decompression (sizes must match).
        b = b.no_gzip().no_brotli().no_zstd().no_deflate();
        b = self.network.apply(b);
        let allow_http = get(ClientConfigKey::AllowHttp).as_deref() == Some("true");
        let client =
            b.https_only(!allow_http)
                .build()
                .map_err(|e| object_store::Error::Generic {
                    store: "sluice",
                    source: Box::new(e),
                })?;
        Ok(HttpClient::new(Explained {
            client,
            network: self.network.clone(),
        }))
    }
}

/// object_store's reqwest service, with TLS failures turned into one line that names the host
/// and the `[sink.network]` key that fixes them, and not retried.
#[derive(Debug)]
struct Explained {
    client: reqwest::Client,
    network: sluice_net::Network,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TlsFailure(String);

#[async_trait::async_trait]
impl HttpService for Explained {
    async fn call(&self, req: HttpRequest) -> std::result::Result<HttpResponse, HttpError> {
        let host = req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        match self.client.call(req).await {
            Ok(r) => Ok(r),
            Err(e) => match self.network.explain(&e, &host) {
                Some(why) => Err(HttpError::new(HttpErrorKind::Unknown, TlsFailure(why))),
                None => Err(e),
            },
        }
    }
}

/// Where S3 credentials come from, in the order of the AWS SDKs' default chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum S3Credentials {
    /// Keys given to the store as they are (configuration, environment, a profile).
    Static {
        key_id: String,
        secret: Secret,
        token: Option<Secret>,
    },
    /// `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` (EKS IRSA): STS AssumeRoleWithWebIdentity.
    WebIdentity {
        token_file: String,
        role_arn: String,
        session_name: Option<String>,
        sts_endpoint: Option<String>,
    },
    /// `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (ECS task role).
    ContainerRelative(String),
    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI` + `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` (EKS Pod
    /// Identity, ECS elsewhere).
    ContainerFull { uri: String, token_file: String },
    /// The EC2 instance metadata service (IMDSv2, role credentials).
    Instance,
}

/// The resolved chain: credentials, the source as a log line names it, and a region the
/// profile may give.
#[derive(Debug, Clone)]
pub(crate) struct S3Chain {
    pub(crate) credentials: S3Credentials,
    pub(crate) source: String,
    pub(crate) profile_region: Option<String>,
}

/// Resolves the S3 credential chain from `config` and `env` (the process environment in
/// production; a map in tests). No I/O but reading the shared profile files.
pub(crate) fn s3_chain(
    config: &LakeConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<S3Chain> {
    let bad = |m: String| LakeError::Config(m);
    // 1. configuration, 2. environment.
    let key_cfg = config.access_key_id.clone().filter(|k| !k.is_empty());
    let secret_cfg = config.secret_access_key.clone().filter(|s| !s.is_empty());
    let key_env = env("AWS_ACCESS_KEY_ID");
    let secret_env = env("AWS_SECRET_ACCESS_KEY").map(Secret::new);
    let key = key_cfg.clone().or(key_env.clone());
    let secret = secret_cfg.clone().or(secret_env.clone());
    let token = config
        .session_token
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| env("AWS_SESSION_TOKEN").map(Secret::new));
    let profile_name = env("AWS_PROFILE").or_else(|| env("AWS_DEFAULT_PROFILE"));
    let profile = read_profile(profile_name.as_deref().unwrap_or("default"), env)?;
    let profile_region = profile.as_ref().and_then(|p| p.get("region").cloned());
    match (&key, &secret) {
        (Some(key_id), Some(secret)) => {
            let source = if key_cfg.is_some() {
                "configuration ([sink].access_key_id)".to_owned()
            } else {
                "environment (AWS_ACCESS_KEY_ID)".to_owned()
            };
            return Ok(S3Chain {
                credentials: S3Credentials::Static {
                    key_id: key_id.clone(),
                    secret: secret.clone(),
                    token,
                },
                source,
                profile_region,
            });
        }
        (Some(_), None) => {
            return Err(bad(
                "S3 credentials: an access key id is set ([sink].access_key_id or AWS_ACCESS_KEY_ID) but no secret access key ([sink].secret_access_key or AWS_SECRET_ACCESS_KEY)".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(bad(
                "S3 credentials: a secret access key is set but no access key id ([sink].access_key_id or AWS_ACCESS_KEY_ID)".into(),
            ));
        }
        (None, None) => {}
    }
    // 3. the shared profile files.
    if let Some(p) = &profile {
        let name = profile_name.as_deref().unwrap_or("default");
        match (p.get("aws_access_key_id"), p.get("aws_secret_access_key")) {
            (Some(k), Some(s)) => {
                return Ok(S3Chain {
                    credentials: S3Credentials::Static {
                        key_id: k.clone(),
                        secret: Secret::new(s.clone()),
                        token: p.get("aws_session_token").map(|t| Secret::new(t.clone())),
                    },
                    source: format!("shared profile `{name}` ({})", p["__file"]),
                    profile_region,
                });
            }
            _ if profile_name.is_some() => {
                let how = [
                    "role_arn",
                    "sso_session",
                    "sso_start_url",
                    "credential_process",
                ]
                .into_iter()
                .find(|k| p.contains_key(*k))
                .unwrap_or("no aws_access_key_id/aws_secret_access_key");
                return Err(bad(format!(
                    "S3 credentials: AWS_PROFILE={name}: the profile uses {how}, which sluice does not resolve; give it aws_access_key_id and aws_secret_access_key (e.g. from `aws configure export-credentials --profile {name} --format env`), or use web identity, container or instance credentials"
                )));
            }
            _ => {}
        }
    } else if let Some(name) = &profile_name {
        return Err(bad(format!(
            "S3 credentials: AWS_PROFILE={name}: no such profile in {} or {}",
            credentials_file(env).display(),
            config_file(env).display()
        )));
    }
    // 4. web identity (EKS IRSA).
    if let (Some(token_file), Some(role_arn)) =
        (env("AWS_WEB_IDENTITY_TOKEN_FILE"), env("AWS_ROLE_ARN"))
    {
        return Ok(S3Chain {
            source: format!(
                "web identity token file (AWS_WEB_IDENTITY_TOKEN_FILE {token_file}, role {role_arn})"
            ),
            credentials: S3Credentials::WebIdentity {
                token_file,
                role_arn,
                session_name: env("AWS_ROLE_SESSION_NAME"),
                sts_endpoint: env("AWS_ENDPOINT_URL_STS"),
            },
            profile_region,
        });
    }
    // 5. container credentials (ECS task roles, EKS Pod Identity).
    if let Some(uri) = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
        return Ok(S3Chain {
            source: "container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, ECS task role)"
                .into(),
            credentials: S3Credentials::ContainerRelative(uri),
            profile_region,
        });
    }
    if let Some(uri) = env("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
        let Some(token_file) = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") else {
            return Err(bad(
                "S3 credentials: AWS_CONTAINER_CREDENTIALS_FULL_URI is set without AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE; sluice reads the authorization token from that file (a token given only in AWS_CONTAINER_AUTHORIZATION_TOKEN is not supported)".into(),
            ));
        };
        return Ok(S3Chain {
            source: format!("container credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI {uri})"),
            credentials: S3Credentials::ContainerFull { uri, token_file },
            profile_region,
        });
    }
    // 6. the instance metadata service.
    Ok(S3Chain {
        credentials: S3Credentials::Instance,
        source: format!(
            "instance metadata (IMDS at {}; no credentials in configuration, environment, profile, web identity or container settings)",
            env("AWS_EC2_METADATA_SERVICE_ENDPOINT")
                .unwrap_or_else(|| "http://169.254.169.254".to_owned())
        ),
        profile_region,
    })
}

fn home(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    PathBuf::from(env("HOME").unwrap_or_else(|| "/".into()))
}

fn credentials_file(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    env("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home(env).join(".aws/credentials"))
}

fn config_file(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    env("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home(env).join(".aws/config"))
}

type Profile = std::collections::BTreeMap<String, String>;

/// The profile `name` merged from the credentials file (`[name]`) and the config file
/// (`[profile name]`, `[default]`); the credentials file wins. `__file` names the file the
/// keys came from. `None` when neither file has it.
fn read_profile(name: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Profile>> {
    let mut merged: Option<Profile> = None;
    let config_section = if name == "default" {
        "default".to_owned()
    } else {
        format!("profile {name}")
    };
    for (path, section) in [
        (config_file(env), config_section),
        (credentials_file(env), name.to_owned()),
    ] {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(LakeError::Config(format!(
                    "S3 credentials: cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        if let Some(mut found) = ini_section(&text, &section) {
            let m = merged.get_or_insert_with(Profile::new);
            if found.contains_key("aws_access_key_id") {
                found.insert("__file".into(), path.display().to_string());
            }
            m.extend(found);
        }
    }
    if let Some(m) = &mut merged
        && !m.contains_key("__file")
    {
        m.insert("__file".into(), String::new());
    }
    Ok(merged)
}

/// The keys of `[section]` in an INI text (`#` and `;` comments).
fn ini_section(text: &str, section: &str) -> Option<Profile> {
    let mut current: Option<String> = None;
    let mut out: Option<Profile> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.split_whitespace().collect::<Vec<_>>().join(" "));
            if current.as_deref() == Some(section) {
                out.get_or_insert_with(Profile::new);
            }
            continue;
        }
        if current.as_deref() == Some(section)
            && let Some((k, v)) = line.split_once('=')
        {
            out.get_or_insert_with(Profile::new)
                .insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn chain(config: &LakeConfig, vars: &[(&str, &str)]) -> Result<S3Chain> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        s3_chain(config, &move |k| map.get(k).cloned())
    }

    #[test]
    fn the_chain_in_order_and_its_source_named_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_str().unwrap();
        let none = LakeConfig::new("s3://b/p");
        let c = chain(&none, &[("HOME", home)]).unwrap();
        assert_eq!(c.credentials, S3Credentials::Instance);
        assert!(c.source.starts_with("instance metadata"));

        std::fs::create_dir_all(dir.path().join(".aws")).unwrap();
        std::fs::write(
            dir.path().join(".aws/credentials"),
            "[default]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = profile-secret\n\n[other]\naws_access_key_id=AKIDOTHER\naws_secret_access_key=other-secret\naws_session_token=tok\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join(".aws/config"),
            "[default]\nregion = eu-west-3\n[profile sso]\nsso_session = corp\n",
        )
        .unwrap();
        let c = chain(&none, &[("HOME", home)]).unwrap();
        assert!(
            c.source.starts_with("shared profile `default` ("),
            "{}",
            c.source
        );
        assert!(c.source.ends_with(".aws/credentials)"), "{}", c.source);
        assert_eq!(c.profile_region.as_deref(), Some("eu-west-3"));
        assert!(!c.source.contains("profile-secret"));
        let c = chain(&none, &[("HOME", home), ("AWS_PROFILE", "other")]).unwrap();
        match c.credentials {
            S3Credentials::Static { key_id, token, .. } => {
                assert_eq!(key_id, "AKIDOTHER");
                assert!(token.is_some());
            }
            other => panic!("{other:?}"),
        }
        let e = chain(&none, &[("HOME", home), ("AWS_PROFILE", "sso")]).unwrap_err();
        assert!(e.to_string().contains("sso_session"), "{e}");
        let e = chain(&none, &[("HOME", home), ("AWS_PROFILE", "nope")]).unwrap_err();
        assert!(e.to_string().contains("no such profile"), "{e}");

        // The environment wins over the profile, configuration over the environment.
        let env = [
            ("HOME", home),
            ("AWS_ACCESS_KEY_ID", "AKIDENV"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
        ];
        let c = chain(&none, &env).unwrap();
        assert_eq!(c.source, "environment (AWS_ACCESS_KEY_ID)");
        let mut cfg = none.clone();
        cfg.access_key_id = Some("AKIDCFG".into());
        cfg.secret_access_key = Some(Secret::new("cfg-secret"));
        assert_eq!(
            chain(&cfg, &env).unwrap().source,
            "configuration ([sink].access_key_id)"
        );
        let e = chain(
            &none,
            &[("AWS_ACCESS_KEY_ID", "AKID"), ("HOME", "/nonexistent")],
        )
        .unwrap_err();
        assert!(e.to_string().contains("no secret access key"), "{e}");

        // Web identity, then container credentials (no profile here).
        let empty = tempfile::tempdir().unwrap();
        let home = empty.path().to_str().unwrap();
        let c = chain(
            &none,
            &[
                ("HOME", home),
                ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/token"),
                ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
                ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/creds"),
            ],
        )
        .unwrap();
        assert!(
            c.source.starts_with("web identity token file"),
            "{}",
            c.source
        );
        let c = chain(
            &none,
            &[
                ("HOME", home),
                ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/creds"),
            ],
        )
        .unwrap();
        assert_eq!(
            c.credentials,
            S3Credentials::ContainerRelative("/v2/creds".into())
        );
        let e = chain(
            &none,
            &[
                ("HOME", home),
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/c"),
            ],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
            "{e}"
        );
    }
}
