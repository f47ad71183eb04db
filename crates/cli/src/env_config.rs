//! Settings from the environment, so that a container needs no configuration file.
//!
//! `SLUICE_<KEY>` sets the top-level `<key>`, and `__` separates nested keys:
//! `SLUICE_SOURCE__RATE_LIMIT_PER_SECOND=5` is `[source] rate_limit_per_second = 5`,
//! `SLUICE_SINK__DEST=s3://bucket/lever` is `[sink] dest`, and
//! `SLUICE_TABLES__USERS__BLOCKED_COLUMNS='["photo"]'` is `[tables.users] blocked_columns`.
//! Names are matched case-insensitively and lowercased. A value is read as a TOML value when
//! it is one (`5`, `true`, `["a"]`), else as a string. Only the configuration file's
//! top-level keys are mapped (`source`, `sink`, `tables`, `hash_salt`,
//! `commit_interval_secs`, `commit_max_rows`); other `SLUICE_*` variables (the server's
//! `SLUICE_API_TOKEN`, `SLUICE_MASTER_KEY`) are not configuration. The environment wins over
//! the file.

use sluice_core::{Error, Result};
use std::collections::BTreeMap;

/// Prefix of the variables read.
pub(crate) const PREFIX: &str = "SLUICE_";
/// Separator of nested keys in a variable name.
const NESTING: &str = "__";
/// Top-level keys of the configuration file that variables may set.
const TOP_LEVEL: [&str; 6] = [
    "source",
    "sink",
    "tables",
    "hash_salt",
    "commit_interval_secs",
    "commit_max_rows",
];

/// One configuration value taken from a variable.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EnvSetting {
    /// The variable's name, as set.
    pub(crate) variable: String,
    /// The key path it sets (lowercase).
    pub(crate) path: Vec<String>,
    /// The value.
    pub(crate) value: toml::Value,
}

/// The configuration variables among `vars`, sorted by key path.
pub(crate) fn settings_from(vars: impl IntoIterator<Item = (String, String)>) -> Vec<EnvSetting> {
    let mut out: Vec<EnvSetting> = vars
        .into_iter()
        .filter_map(|(name, value)| {
            let rest = name
                .get(..PREFIX.len())?
                .eq_ignore_ascii_case(PREFIX)
                .then(|| &name[PREFIX.len()..])?;
            let path: Vec<String> = rest.split(NESTING).map(str::to_ascii_lowercase).collect();
            if !TOP_LEVEL.contains(&path[0].as_str()) || path.iter().any(String::is_empty) {
                return None;
            }
            Some(EnvSetting {
                variable: name,
                path,
                value: parse_value(&value),
            })
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The process's configuration variables.
pub(crate) fn settings() -> Vec<EnvSetting> {
    settings_from(
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
    )
}

/// A variable's text as a TOML value (a number, boolean, array or inline table), else as a
/// string.
fn parse_value(text: &str) -> toml::Value {
    let doc = format!("v = {text}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(text.to_owned())),
        Err(_) => toml::Value::String(text.to_owned()),
    }
}

/// Sets every variable's value into `root` (the configuration file as a TOML table).
pub(crate) fn apply(root: &mut toml::Table, settings: &[EnvSetting]) -> Result<()> {
    for s in settings {
        let (last, parents) = s.path.split_last().expect("non-empty path");
        let mut table = &mut *root;
        for key in parents {
            let entry = table
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = entry.as_table_mut().ok_or_else(|| {
                Error::config(format!(
                    "{}: `{key}` is not a table in the configuration, so it cannot have keys",
                    s.variable
                ))
            })?;
        }
        table.insert(last.clone(), s.value.clone());
    }
    Ok(())
}

/// Where each set value of the effective configuration came from, by dotted key path.
pub(crate) type Origins = BTreeMap<String, String>;

/// Records `origin` for every leaf of `table` under `prefix`.
pub(crate) fn record_origins(table: &toml::Table, prefix: &str, origin: &str, out: &mut Origins) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => record_origins(t, &path, origin, out),
            _ => {
                out.insert(path, origin.to_owned());
            }
        }
    }
}

/// Whether a key holds a secret whose value must never be shown.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    if k.ends_with("_env") || k.ends_with("_url") || k.ends_with("_file") {
        return false;
    }
    [
        "secret",
        "password",
        "token",
        "salt",
        "api_key",
        "access_key",
        "private_key",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// `table` with the values of secret keys replaced by `"***"`, and the secrets inside other
/// values masked: the user and password of a URL (`http://***@proxy:3128`) and secret-bearing
/// query parameters (`?sig=***`, as in an Azure SAS URL).
pub(crate) fn redacted(table: &toml::Table) -> toml::Table {
    table
        .iter()
        .map(|(k, v)| {
            let v = if is_secret_key(k) && !matches!(v, toml::Value::Table(_)) {
                toml::Value::String("***".into())
            } else {
                redacted_value(v)
            };
            (k.clone(), v)
        })
        .collect()
}

fn redacted_value(v: &toml::Value) -> toml::Value {
    match v {
        toml::Value::Table(t) => toml::Value::Table(redacted(t)),
        toml::Value::Array(a) => toml::Value::Array(a.iter().map(redacted_value).collect()),
        toml::Value::String(s) => toml::Value::String(redacted_text(s)),
        other => other.clone(),
    }
}

/// Query parameters whose value is a credential.
const SECRET_PARAMS: [&str; 8] = [
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-security-token",
    "token",
    "password",
    "secret",
    "key",
];

/// `text` with the credentials of a URL in it masked: `scheme://user:pass@host` →
/// `scheme://***@host`, and the values of [`SECRET_PARAMS`] in its query → `***`.
pub(crate) fn redacted_text(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_owned();
    };
    let (head, rest) = text.split_at(scheme_end + 3);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => format!("***{}", &authority[at..]),
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, format!("#{f}")),
                None => (query, String::new()),
            };
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _))
                        if SECRET_PARAMS.iter().any(|p| name.eq_ignore_ascii_case(p)) =>
                    {
                        format!("{name}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}{fragment}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{head}{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<EnvSetting> {
        settings_from(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn nested_names_typed_values_and_other_variables_ignored() {
        let s = vars(&[
            ("SLUICE_SOURCE__RATE_LIMIT_PER_SECOND", "5"),
            ("SLUICE_SINK__DEST", "s3://bucket/lever"),
            ("SLUICE_TABLES__USERS__BLOCKED_COLUMNS", "[\"photo\"]"),
            ("SLUICE_TABLES__USERS__ENABLED", "false"),
            ("SLUICE_COMMIT_INTERVAL_SECS", "0"),
            ("SLUICE_SOURCE__OAUTH__CLIENT_ID", "abc-1"),
            ("SLUICE_API_TOKEN", "t"),
            ("SLUICE_MASTER_KEY", "k"),
            ("SLUICE_SOURCE__", "x"),
            ("LEVER_API_KEY", "k"),
        ]);
        let mut root = toml::Table::new();
        apply(&mut root, &s).unwrap();
        let expected: toml::Table = r#"
commit_interval_secs = 0
[source]
rate_limit_per_second = 5
[source.oauth]
client_id = "abc-1"
[sink]
dest = "s3://bucket/lever"
[tables.users]
blocked_columns = ["photo"]
enabled = false
"#
        .parse()
        .unwrap();
        assert_eq!(root, expected);
    }

    #[test]
    fn the_environment_wins_and_a_scalar_cannot_take_keys() {
        let mut root: toml::Table = "[source]\nrate_limit_per_second = 10\npage_size = 50\n"
            .parse()
            .unwrap();
        apply(
            &mut root,
            &vars(&[("SLUICE_SOURCE__RATE_LIMIT_PER_SECOND", "3")]),
        )
        .unwrap();
        assert_eq!(
            root["source"]["rate_limit_per_second"].as_integer(),
            Some(3)
        );
        assert_eq!(root["source"]["page_size"].as_integer(), Some(50));
        let mut root: toml::Table = "hash_salt = \"s\"\n".parse().unwrap();
        let e = apply(&mut root, &vars(&[("SLUICE_HASH_SALT__X", "1")])).unwrap_err();
        assert!(e.to_string().contains("SLUICE_HASH_SALT__X"), "{e}");
    }

    #[test]
    fn secrets_are_redacted_by_key() {
        let t: toml::Table = r#"
hash_salt = "salty"
[source]
api_key = "k1"
api_key_env = "LEVER_API_KEY"
[source.oauth]
client_id = "id"
client_secret = "cs"
refresh_token = "rt"
token_url = "https://auth.lever.co/oauth/token"
"#
        .parse()
        .unwrap();
        let text = toml::to_string(&redacted(&t)).unwrap();
        for secret in ["salty", "k1", "\"cs\"", "\"rt\""] {
            assert!(!text.contains(secret), "{secret} shown: {text}");
        }
        for shown in [
            "LEVER_API_KEY",
            "\"id\"",
            "https://auth.lever.co/oauth/token",
        ] {
            assert!(text.contains(shown), "{shown} hidden: {text}");
        }
    }

    #[test]
    fn credentials_inside_urls_are_masked() {
        let t: toml::Table = r#"
[sink]
dest = "az://sluice/lever"
endpoint = "https://127.0.0.1:9000/path?x=1"
catalog_uri = "postgresql+psycopg2://cat:pgpw7@db:5432/lake?sslmode=disable&password=pgpw8"
[sink.network]
proxy_url = "http://proxy-user:p4ss@proxy:3128"
no_proxy = "localhost"
[source.network]
proxy_url = "http://tok3n@proxy"
[source]
base_url = "https://u:pw9@api.example/v1?sig=s1g&sv=2020&token=tk2#f"
other = ["socks5://a:b@h:1080"]
"#
        .parse()
        .unwrap();
        let text = toml::to_string(&redacted(&t)).unwrap();
        for secret in [
            "p4ss",
            "proxy-user",
            "tok3n",
            "pw9",
            "s1g",
            "tk2",
            "a:b@",
            "pgpw7",
            "pgpw8",
        ] {
            assert!(!text.contains(secret), "{secret} shown: {text}");
        }
        for shown in [
            "http://***@proxy:3128",
            "http://***@proxy\"",
            "https://***@api.example/v1?sig=***&sv=2020&token=***#f",
            "socks5://***@h:1080",
            "https://127.0.0.1:9000/path?x=1",
            "az://sluice/lever",
            "postgresql+psycopg2://***@db:5432/lake?sslmode=disable&password=***",
        ] {
            assert!(text.contains(shown), "{shown} missing: {text}");
        }
    }
}
