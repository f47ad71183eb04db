//! The SQL catalog on PostgreSQL: the same two tables and statements as on SQLite, through
//! `tokio-postgres` on the sink's runtime, over plain TCP (no TLS).
//!
//! The password (in the URL or in `PGPASSWORD`) is kept inside `tokio_postgres::Config`,
//! whose `Debug` hides it; messages name the catalog by [`PostgresCatalog::url`], which is
//! rebuilt from the user, hosts, ports and database and so never holds it.

use sluice_lake::{LakeError, Result};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, NoTls};

/// How long one connection attempt (per host) may take, unless the URL's `connect_timeout`
/// says otherwise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one catalog call (connect, create the tables, the statements) may take in all,
/// in connect timeouts (60 s by default).
const CALL_TIMEOUTS: u32 = 6;

/// A PostgreSQL database holding the SQL catalog, from `catalog_uri`.
#[derive(Clone, PartialEq)]
pub struct PostgresCatalog {
    config: Arc<tokio_postgres::Config>,
    url: String,
    /// How long one call may take.
    call_timeout: Duration,
}

impl fmt::Debug for PostgresCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresCatalog({})", self.url)
    }
}

impl PostgresCatalog {
    /// The catalog at `uri` (`postgresql://user[:password]@host[:port]/dbname[?sslmode=disable]`,
    /// also `postgres://` and SQLAlchemy's `postgresql+psycopg2://`), with the password from
    /// the URL or else from the `PGPASSWORD` environment variable. The error is one line,
    /// without the password.
    pub fn from_uri(uri: &str) -> Result<PostgresCatalog, String> {
        Self::from_uri_with(uri, |name| std::env::var(name).ok())
    }

    /// [`PostgresCatalog::from_uri`] with `env` as the environment.
    pub(crate) fn from_uri_with(
        uri: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<PostgresCatalog, String> {
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Err("sink.catalog_uri: expected postgresql://user@host:port/dbname".into());
        };
        let driverless = scheme.split_once('+').map_or(scheme, |(s, _)| s);
        if driverless != "postgresql" && driverless != "postgres" {
            return Err(format!(
                "sink.catalog_uri: `{driverless}://…` is not a PostgreSQL URL"
            ));
        }
        if let Some(mode) = query_value(rest, "sslmode").filter(|m| m != "disable") {
            return Err(format!(
                "sink.catalog_uri: sslmode={mode} is not supported: the PostgreSQL catalog \
                 connects without TLS only (sslmode=disable; use a private network or a local \
                 TLS tunnel)"
            ));
        }
        let mut config: tokio_postgres::Config =
            format!("postgresql://{rest}")
                .parse()
                .map_err(|e: tokio_postgres::Error| {
                    format!("sink.catalog_uri: {}", one_line(&e, None))
                })?;
        if config.get_hosts().is_empty() {
            return Err("sink.catalog_uri: the PostgreSQL URL names no host".into());
        }
        if config.get_dbname().is_none() {
            return Err("sink.catalog_uri: the PostgreSQL URL names no database".into());
        }
        config.ssl_mode(SslMode::Disable);
        if config.get_password().is_none()
            && let Some(password) = env("PGPASSWORD").filter(|p| !p.is_empty())
        {
            config.password(password);
        }
        let connect_timeout = *config.get_connect_timeout().unwrap_or(&CONNECT_TIMEOUT);
        config.connect_timeout(connect_timeout);
        config.application_name("sluice");
        let url = shown_url(&config);
        Ok(PostgresCatalog {
            config: Arc::new(config),
            url,
            call_timeout: connect_timeout * CALL_TIMEOUTS,
        })
    }

    /// The catalog's URL without its password: `postgresql://user@host:port/dbname`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A destination error naming the catalog, on one line, without the password.
    fn err(&self, e: &dyn std::error::Error) -> LakeError {
        let password = self
            .config
            .get_password()
            .and_then(|p| std::str::from_utf8(p).ok());
        LakeError::Core(sluice_core::Error::destination(format!(
            "Iceberg SQL catalog {}: {}",
            self.url,
            one_line(e, password)
        )))
    }

    /// Runs `f` on a new connection with the catalog tables created, within the call timeout
    /// (a server that accepts the connection and then says nothing does not hold the run).
    async fn call<T>(
        &self,
        f: impl AsyncFnOnce(&Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T> {
        let work = async {
            let (client, connection) = self.config.connect(NoTls).await?;
            // The connection task ends when `client` is dropped (or the server goes away).
            tokio::spawn(async move {
                let _ = connection.await;
            });
            // Without the server's notices ("relation … already exists, skipping") in the log.
            client
                .batch_execute(&format!(
                    "SET client_min_messages = warning;{}",
                    crate::catalog::SCHEMA
                ))
                .await?;
            f(&client).await
        };
        match tokio::time::timeout(self.call_timeout, work).await {
            Ok(r) => r.map_err(|e| self.err(&e)),
            Err(_) => Err(self.err(&TimedOut(self.call_timeout))),
        }
    }

    /// Points `table` of `namespace` in catalog `name` at `metadata_location`.
    pub(crate) async fn register(
        &self,
        name: &str,
        namespace: &str,
        table: &str,
        metadata_location: &str,
    ) -> Result<()> {
        self.call(async |c: &Client| {
            c.execute(
                "INSERT INTO iceberg_namespace_properties VALUES ($1, $2, 'exists', 'true') \
                 ON CONFLICT DO NOTHING",
                &[&name, &namespace],
            )
            .await?;
            c.execute(
                "INSERT INTO iceberg_tables (catalog_name, table_namespace, table_name, \
                     metadata_location, previous_metadata_location, iceberg_type) \
                 VALUES ($1, $2, $3, $4, NULL, 'TABLE') \
                 ON CONFLICT (catalog_name, table_namespace, table_name) DO UPDATE SET \
                     previous_metadata_location = iceberg_tables.metadata_location, \
                     metadata_location = excluded.metadata_location \
                 WHERE iceberg_tables.metadata_location IS DISTINCT FROM excluded.metadata_location",
                &[&name, &namespace, &table, &metadata_location],
            )
            .await?;
            Ok(())
        })
        .await
    }

    /// The metadata location `table` points at, if it is registered.
    pub(crate) async fn location(
        &self,
        name: &str,
        namespace: &str,
        table: &str,
    ) -> Result<Option<String>> {
        self.call(async |c: &Client| {
            let row = c
                .query_opt(
                    "SELECT metadata_location FROM iceberg_tables \
                     WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3",
                    &[&name, &namespace, &table],
                )
                .await?;
            Ok(row.and_then(|r| r.get::<_, Option<String>>(0)))
        })
        .await
    }
}

/// The catalog call ran out of its time.
#[derive(Debug)]
struct TimedOut(Duration);

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no answer within {} s (6 times the connect timeout; the URL's connect_timeout sets it)",
            self.0.as_secs()
        )
    }
}

impl std::error::Error for TimedOut {}

/// `e` and its causes on one line (`error connecting to server: Connection refused`), with
/// `password` masked should the server or the client ever quote it.
fn one_line(e: &dyn std::error::Error, password: Option<&str>) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.ends_with(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    let mut text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(p) = password.filter(|p| !p.trim().is_empty()) {
        text = text.replace(p, "***");
    }
    text
}

/// The value of `key` in the query of the URL remainder `rest`.
fn query_value(rest: &str, key: &str) -> Option<String> {
    let (_, query) = rest.split_once('?')?;
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_owned())
}

/// `postgresql://user@host:port,host2:port2/dbname`, from the parsed settings.
fn shown_url(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                Host::Tcp(h) if h.contains(':') => format!("[{h}]"),
                Host::Tcp(h) => h.clone(),
                Host::Unix(p) => p.display().to_string(),
            };
            match ports.get(i).or(ports.first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    format!(
        "postgresql://{user}{}/{}",
        hosts.join(","),
        config.get_dbname().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(uri: &str, env: Option<&str>) -> Result<PostgresCatalog, String> {
        PostgresCatalog::from_uri_with(uri, |k| {
            assert_eq!(k, "PGPASSWORD");
            env.map(str::to_owned)
        })
    }

    #[test]
    fn urls_parse_and_never_show_the_password() {
        for (uri, env, shown, password) in [
            (
                "postgresql://cat:s3cr-et@db.example:5433/lake",
                Some("from-env"),
                "postgresql://cat@db.example:5433/lake",
                Some("s3cr-et"),
            ),
            (
                "postgres://cat@127.0.0.1/lake?sslmode=disable",
                Some("from-env"),
                "postgresql://cat@127.0.0.1:5432/lake",
                Some("from-env"),
            ),
            (
                "postgresql+psycopg2://cat:p%40ss@h:1/db",
                None,
                "postgresql://cat@h:1/db",
                Some("p@ss"),
            ),
            (
                "postgresql://cat@h/db?password=q-secret",
                None,
                "postgresql://cat@h:5432/db",
                Some("q-secret"),
            ),
            (
                "postgresql://cat@h/db",
                None,
                "postgresql://cat@h:5432/db",
                None,
            ),
        ] {
            let c = parse(uri, env).unwrap();
            assert_eq!(c.url(), shown, "{uri}");
            assert_eq!(
                c.config
                    .get_password()
                    .map(|p| std::str::from_utf8(p).unwrap()),
                password,
                "{uri}"
            );
            assert_eq!(c.config.get_ssl_mode(), SslMode::Disable);
            assert_eq!(c.config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
            let debug = format!("{c:?}");
            if let Some(p) = password {
                assert!(!debug.contains(p), "{debug}");
                let e = sluice_core::Error::from(
                    c.err(&std::io::Error::other(format!("bad\npassword {p}"))),
                );
                assert_eq!(e.exit_code(), 5, "{e}");
                let e = e.to_string();
                assert!(!e.contains(p) && !e.contains('\n'), "{e}");
                assert!(
                    e.contains(&format!("Iceberg SQL catalog {shown}: bad ")),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn bad_urls_say_why_on_one_line() {
        for (uri, says) in [
            (
                "postgresql://cat:pw-x@h/db?sslmode=require",
                "sslmode=require",
            ),
            (
                "postgresql://cat:pw-x@h/db?sslmode=verify-full",
                "without TLS",
            ),
            (
                "postgresql://cat:pw-x@h/db?sslmode=prefer",
                "sslmode=disable",
            ),
            ("postgresql://cat:pw-x@h/db?nonsense=1", "nonsense"),
            ("postgresql://cat:pw-x@h:notaport/db", "invalid"),
            ("postgresql://cat:pw-x@h", "no database"),
            ("mysql://cat:pw-x@h/db", "not a PostgreSQL URL"),
        ] {
            let e = parse(uri, None).unwrap_err();
            assert!(
                e.contains(says) && !e.contains('\n') && !e.contains("pw-x"),
                "{uri}: {e}"
            );
        }
    }
}
