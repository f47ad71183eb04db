//! # sluice-net
//!
//! The network settings a private deployment needs, in one block shared by the source's HTTP
//! client (`[source.network]`) and the destination's object store (`[sink.network]`):
//!
//! * `proxy_url` (and `no_proxy`): an HTTP(S) forward proxy. Unset, the standard
//!   `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY` variables apply (reqwest reads
//!   them, lower case too).
//! * `ca_cert_file`: extra CA certificates (PEM, one or more), trusted in addition to the
//!   built-in roots: a TLS-inspecting corporate proxy, a private S3 endpoint.
//! * `client_cert_file` + `client_key_file`: a client certificate for mutual TLS.
//! * `min_tls_version`: `"1.2"` (the default floor) or `"1.3"`.
//!
//! [`NetworkConfig::resolve`] reads and checks the files once (errors name the key and the
//! file, never a key's content); [`Network::apply`] sets them on a `reqwest::ClientBuilder`;
//! [`Network::explain`] turns a TLS failure found anywhere in an error chain into one line
//! that names the host and the setting that fixes it.

use serde::{Deserialize, Serialize};
use std::error::Error as StdError;
use std::path::{Path, PathBuf};

/// Link-local metadata endpoints (EC2 instance metadata, ECS container credentials), never
/// reached through `proxy_url`.
pub const METADATA_HOSTS: &str = "169.254.169.254,169.254.170.2";

/// A problem with the network settings (a config error: the user fixes it).
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A setting or a file it names is unusable.
    #[error("{0}")]
    Config(String),
}

/// The `network` block of `[source]` or `[sink]`. Every key is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Forward proxy for every request, `http://host:port` (credentials may be in the URL;
    /// they are never logged). Unset: `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<String>,
    /// Hosts reached without `proxy_url`, comma-separated (`NO_PROXY` syntax: names, domain
    /// suffixes, IPs, CIDR blocks, `*`). Only with `proxy_url`; the `NO_PROXY` variable goes
    /// with the proxy variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_proxy: Option<String>,
    /// PEM file of extra CA certificates trusted in addition to the built-in roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate (chain) for mutual TLS; with `client_key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, RSA or SEC1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
    /// Lowest TLS version accepted: `"1.2"` (default) or `"1.3"` (a number is taken too, as
    /// `SLUICE_SOURCE__NETWORK__MIN_TLS_VERSION=1.3` reads).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_number"
    )]
    pub min_tls_version: Option<String>,
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum V {
        S(String),
        N(f64),
    }
    Ok(Option::<V>::deserialize(d)?.map(|v| match v {
        V::S(s) => s,
        V::N(n) => format!("{n:?}"),
    }))
}

/// Resolved network settings: files read and parsed, ready to apply to any number of clients.
#[derive(Clone, Default)]
pub struct Network {
    section: String,
    proxy: Option<(reqwest::Proxy, String)>,
    roots: Vec<reqwest::Certificate>,
    ca_file: Option<PathBuf>,
    identity: Option<(reqwest::Identity, PathBuf)>,
    min_tls: Option<(reqwest::tls::Version, &'static str)>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl NetworkConfig {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self == &NetworkConfig::default()
    }

    /// Reads and checks the settings; `section` names the block in errors
    /// (`[source.network]`, `[sink.network]`).
    pub fn resolve(&self, section: &str) -> Result<Network, NetError> {
        let bad = |key: &str, why: String| NetError::Config(format!("{section}.{key}: {why}"));
        let mut net = Network {
            section: section.to_owned(),
            ..Network::default()
        };
        if let Some(url) = self.proxy_url.as_deref() {
            let url = url.trim();
            let parsed = reqwest::Url::parse(url).map_err(|e| {
                bad(
                    "proxy_url",
                    format!("`{}` is not a URL: {e}", redact_userinfo(url)),
                )
            })?;
            if !matches!(parsed.scheme(), "http" | "https" | "socks5" | "socks5h") {
                return Err(bad(
                    "proxy_url",
                    format!(
                        "`{}`: use an http:// or https:// proxy URL",
                        redact_userinfo(url)
                    ),
                ));
            }
            let mut proxy = reqwest::Proxy::all(url)
                .map_err(|e| bad("proxy_url", format!("`{}`: {e}", redact_userinfo(url))))?;
            // The cloud metadata addresses (instance and container credentials) are link-local:
            // never through a proxy.
            let list = match &self.no_proxy {
                Some(l) if !l.trim().is_empty() => format!("{l},{METADATA_HOSTS}"),
                _ => METADATA_HOSTS.to_owned(),
            };
            proxy = proxy.no_proxy(reqwest::NoProxy::from_string(&list));
            net.proxy = Some((proxy, redact_userinfo(url)));
        } else if self.no_proxy.is_some() {
            return Err(bad(
                "no_proxy",
                "only applies with proxy_url (the NO_PROXY variable goes with HTTPS_PROXY)".into(),
            ));
        }
        if let Some(path) = &self.ca_cert_file {
            let pem = read(section, "ca_cert_file", path)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                bad(
                    "ca_cert_file",
                    format!("`{}`: not a PEM certificate bundle: {e}", path.display()),
                )
            })?;
            if certs.is_empty() || !contains(&pem, b"-----BEGIN CERTIFICATE-----") {
                return Err(bad(
                    "ca_cert_file",
                    format!(
                        "`{}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                        path.display()
                    ),
                ));
            }
            net.roots = certs;
            net.ca_file = Some(path.clone());
        }
        match (&self.client_cert_file, &self.client_key_file) {
            (None, None) => {}
            (Some(_), None) | (None, Some(_)) => {
                return Err(NetError::Config(format!(
                    "{section}: client_cert_file and client_key_file go together (mutual TLS needs both)"
                )));
            }
            (Some(cert_path), Some(key_path)) => {
                let cert = read(section, "client_cert_file", cert_path)?;
                let key = read(section, "client_key_file", key_path)?;
                if !contains(&cert, b"-----BEGIN CERTIFICATE-----") {
                    return Err(bad(
                        "client_cert_file",
                        format!("`{}` holds no PEM certificate", cert_path.display()),
                    ));
                }
                if !contains(&key, b"PRIVATE KEY-----") {
                    return Err(bad(
                        "client_key_file",
                        format!(
                            "`{}` holds no PEM private key (PKCS#8, RSA or SEC1)",
                            key_path.display()
                        ),
                    ));
                }
                let mut both = key;
                both.push(b'\n');
                both.extend_from_slice(&cert);
                // reqwest's message says nothing of the key's content; still, ours is fixed.
                let identity = reqwest::Identity::from_pem(&both).map_err(|_| {
                    NetError::Config(format!(
                        "{section}: client_cert_file `{}` and client_key_file `{}` do not form a usable client certificate (unsupported key type or damaged PEM)",
                        cert_path.display(),
                        key_path.display()
                    ))
                })?;
                net.identity = Some((identity, cert_path.clone()));
            }
        }
        if let Some(v) = self.min_tls_version.as_deref() {
            net.min_tls = Some(match v.trim() {
                "1.2" | "TLSv1.2" | "tls1.2" => (reqwest::tls::Version::TLS_1_2, "1.2"),
                "1.3" | "TLSv1.3" | "tls1.3" => (reqwest::tls::Version::TLS_1_3, "1.3"),
                other => {
                    return Err(bad(
                        "min_tls_version",
                        format!(
                            "`{other}`: use \"1.2\" or \"1.3\" (TLS 1.0 and 1.1 are never used)"
                        ),
                    ));
                }
            });
        }
        Ok(net)
    }
}

fn read(section: &str, key: &str, path: &Path) -> Result<Vec<u8>, NetError> {
    std::fs::read(path).map_err(|e| {
        NetError::Config(format!(
            "{section}.{key}: cannot read `{}`: {e}",
            path.display()
        ))
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `scheme://user:pass@host` → `scheme://***@host`.
pub fn redact_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

impl Network {
    /// No settings: reqwest's defaults (environment proxies, built-in roots).
    pub fn none(section: &str) -> Network {
        Network {
            section: section.to_owned(),
            ..Network::default()
        }
    }

    /// Whether any setting is in effect.
    pub fn is_set(&self) -> bool {
        self.proxy.is_some()
            || !self.roots.is_empty()
            || self.identity.is_some()
            || self.min_tls.is_some()
    }

    /// The settings for a log line (no secrets: proxy credentials are masked).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        match &self.proxy {
            Some((_, url)) => parts.push(format!("proxy {url}")),
            None => parts.push("proxy from HTTPS_PROXY/NO_PROXY if set".to_owned()),
        }
        if let Some(p) = &self.ca_file {
            parts.push(format!("extra CA {}", p.display()));
        }
        if let Some((_, p)) = &self.identity {
            parts.push(format!("client certificate {}", p.display()));
        }
        if let Some((_, v)) = &self.min_tls {
            parts.push(format!("TLS {v}+"));
        }
        parts.join(", ")
    }

    /// Sets the proxy, extra roots, client certificate and TLS floor on `builder`.
    pub fn apply(&self, mut builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        if let Some((proxy, _)) = &self.proxy {
            builder = builder.proxy(proxy.clone());
        }
        for cert in &self.roots {
            builder = builder.add_root_certificate(cert.clone());
        }
        if let Some((identity, _)) = &self.identity {
            builder = builder.identity(identity.clone());
        }
        if let Some((v, _)) = self.min_tls {
            builder = builder.min_tls_version(v);
        }
        builder
    }

    /// One line saying why a TLS connection to `host` failed and which setting fixes it, when
    /// `err` (or an error in its chain) is a TLS failure; `None` otherwise.
    pub fn explain(&self, err: &(dyn StdError + 'static), host: &str) -> Option<String> {
        let tls = find_rustls(err)?;
        let s = &self.section;
        use rustls::AlertDescription as A;
        use rustls::CertificateError as C;
        use rustls::Error as E;
        Some(match tls {
            E::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => match &self.ca_file {
                None => format!(
                    "TLS: the certificate of {host} is not trusted (unknown issuer): add the CA that signed it with {s}.ca_cert_file"
                ),
                Some(p) => format!(
                    "TLS: the certificate of {host} is not trusted (unknown issuer), and the CAs of {s}.ca_cert_file `{}` did not sign it",
                    p.display()
                ),
            },
            E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
                format!("TLS: the certificate of {host} is not valid for the name {host}")
            }
            E::InvalidCertificate(
                C::Expired
                | C::ExpiredContext { .. }
                | C::NotValidYet
                | C::NotValidYetContext { .. },
            ) => format!(
                "TLS: the certificate of {host} has expired or is not valid yet (is this machine's clock right?)"
            ),
            E::InvalidCertificate(other) => {
                format!("TLS: the certificate of {host} was rejected: {other:?}")
            }
            E::AlertReceived(
                alert @ (A::CertificateRequired
                | A::BadCertificate
                | A::UnknownCA
                | A::AccessDenied
                | A::CertificateUnknown
                | A::UnsupportedCertificate
                | A::HandshakeFailure),
            ) => match &self.identity {
                None => format!(
                    "TLS: {host} refused the handshake ({alert:?}): it wants a client certificate: set {s}.client_cert_file and {s}.client_key_file"
                ),
                Some((_, p)) => format!(
                    "TLS: {host} refused the client certificate {s}.client_cert_file `{}` ({alert:?}): is it signed by a CA the server trusts, and still valid?",
                    p.display()
                ),
            },
            E::AlertReceived(A::ProtocolVersion) | E::PeerIncompatible(_) => {
                let floor = self.min_tls.map(|(_, v)| v).unwrap_or("1.2");
                format!(
                    "TLS: {host} and sluice share no TLS version (sluice needs TLS {floor} or newer; {s}.min_tls_version): {tls}"
                )
            }
            E::InvalidMessage(_) => format!(
                "TLS: {host} did not answer in TLS: is the URL https:// where the server speaks plain http://?"
            ),
            other => format!("TLS: the connection to {host} failed: {other}"),
        })
    }
}

/// The first rustls error in `err`'s chain (io errors hide theirs behind `get_ref`).
fn find_rustls<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&'a (dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            if let Some(t) = inner.downcast_ref::<rustls::Error>() {
                return Some(t);
            }
            if let Some(t) = find_rustls(inner) {
                return Some(t);
            }
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: serde_json::Value) -> NetworkConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn empty_settings_resolve_to_nothing() {
        let n = NetworkConfig::default()
            .resolve("[source.network]")
            .unwrap();
        assert!(!n.is_set());
        assert!(
            serde_json::from_value::<NetworkConfig>(serde_json::json!({"proxy": "x"})).is_err()
        );
    }

    #[test]
    fn errors_name_the_key_and_file_never_the_content() {
        let dir = std::env::temp_dir().join(format!("sluice-net-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("key.pem");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nSECRETSECRET\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let missing = dir.join("missing.pem");
        let e = cfg(serde_json::json!({"ca_cert_file": missing}))
            .resolve("[sink.network]")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("[sink.network].ca_cert_file: cannot read"),
            "{e}"
        );
        assert!(e.contains("missing.pem") && !e.contains('\n'), "{e}");
        // A key given as the CA file: named, not shown.
        let e = cfg(serde_json::json!({"ca_cert_file": key}))
            .resolve("[sink.network]")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ca_cert_file") && !e.contains("SECRETSECRET"),
            "{e}"
        );
        let e = cfg(serde_json::json!({"client_key_file": key}))
            .resolve("[source.network]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("go together"), "{e}");
        let e = cfg(serde_json::json!({"client_key_file": key, "client_cert_file": key}))
            .resolve("[source.network]")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("client_cert_file") && !e.contains("SECRETSECRET"),
            "{e}"
        );
        let e = cfg(serde_json::json!({"min_tls_version": "1.1"}))
            .resolve("[source.network]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("min_tls_version") && e.contains("1.3"), "{e}");
        let e = cfg(serde_json::json!({"no_proxy": "localhost"}))
            .resolve("[source.network]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no_proxy"), "{e}");
        assert_eq!(
            cfg(serde_json::json!({"min_tls_version": 1.3}))
                .min_tls_version
                .as_deref(),
            Some("1.3")
        );
        let n = cfg(serde_json::json!({"proxy_url": "http://user:pw@proxy.corp:3128", "min_tls_version": "1.3"}))
            .resolve("[source.network]")
            .unwrap();
        assert!(n.is_set());
        let d = n.describe();
        assert!(
            d.contains("proxy.corp:3128") && !d.contains("pw") && d.contains("TLS 1.3"),
            "{d}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tls_errors_are_found_behind_io_errors() {
        let net = Network::none("[source.network]");
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let m = net.explain(&io, "127.0.0.1:1").unwrap();
        assert!(
            m.contains("not trusted") && m.contains("[source.network].ca_cert_file"),
            "{m}"
        );
        let plain = std::io::Error::other("connection refused");
        assert!(net.explain(&plain, "h").is_none());
    }
}
