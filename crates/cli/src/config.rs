//! `sluice.toml`: loading, environment overrides and validation, with one-line errors that
//! name the offending key.

use serde::Deserialize;
use sluice_core::{Error, Result, RunSettings, Secret, TableSettings};
use std::collections::BTreeMap;
use std::path::Path;

use crate::env_config;

/// The whole configuration file. Every section is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    /// Settings of the source plugin (`[source]`), passed to it as they are.
    #[serde(default)]
    pub(crate) source: Option<toml::Table>,
    /// Settings of the sink plugin (`[sink]`), passed to it as they are; `--dest` overrides
    /// `sink.dest`.
    #[serde(default)]
    pub(crate) sink: Option<toml::Table>,
    /// Salt for column hashing. Prefer the `SLUICE_HASH_SALT` environment variable.
    #[serde(default)]
    pub(crate) hash_salt: Option<Secret>,
    /// Commit at a checkpoint only when this many seconds passed since the last commit
    /// (default 30; 0 commits at every checkpoint).
    #[serde(default)]
    pub(crate) commit_interval_secs: Option<u64>,
    /// Commit at the next checkpoint once this many rows are staged (default 250000).
    #[serde(default)]
    pub(crate) commit_max_rows: Option<u64>,
    /// Per-table settings (`[tables.<name>]`).
    #[serde(default)]
    pub(crate) tables: BTreeMap<String, TableSettings>,
}

impl ConfigFile {
    /// Parses configuration text; `origin` names it in errors.
    pub(crate) fn parse(text: &str, origin: &str) -> Result<ConfigFile> {
        let de = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let line = inner
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            let message = inner.message().trim().replace('\n', " ");
            let at = line.map(|l| format!(":{l}")).unwrap_or_default();
            let key = if path.is_empty() || path == "." {
                String::new()
            } else {
                format!(" {path}:")
            };
            Error::config(format!("{origin}{at}:{key} {message}"))
        })
    }

    /// Deserializes merged settings; `origin` names them in errors.
    pub(crate) fn from_table(table: &toml::Table, origin: &str) -> Result<ConfigFile> {
        serde_path_to_error::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().to_string().trim().replace('\n', " ");
            Error::config(format!("{origin}: {path}: {message}"))
        })
    }

    /// The source section as JSON (an empty object when absent).
    pub(crate) fn source_json(&self) -> serde_json::Value {
        table_json(self.source.as_ref())
    }

    /// The sink section as JSON with `dest` overridden.
    pub(crate) fn sink_json(&self, dest: Option<&str>) -> serde_json::Value {
        sluice_core::sink_config(table_json(self.sink.as_ref()), dest)
    }

    /// The top-level settings of a sync, mapped to the engine's options the same way
    /// `sluice serve` maps a connection's.
    pub(crate) fn run_settings(&self, allow_origin_change: bool) -> RunSettings {
        let mut settings = RunSettings::new(self.tables.clone(), self.hash_salt.clone());
        settings.commit_interval_secs = self.commit_interval_secs;
        settings.commit_max_rows = self.commit_max_rows;
        settings.allow_origin_change = allow_origin_change;
        settings
    }
}

fn table_json(t: Option<&toml::Table>) -> serde_json::Value {
    match t {
        Some(t) => serde_json::to_value(t).unwrap_or_default(),
        None => serde_json::Value::Object(Default::default()),
    }
}

/// The effective configuration: the file (if any) with the `SLUICE_*` environment applied, the
/// merged table, and where each set value came from.
pub(crate) struct Effective {
    /// The parsed configuration.
    pub(crate) config: ConfigFile,
    /// The merged settings as TOML (secrets included: redact before showing).
    pub(crate) table: toml::Table,
    /// Dotted key path → the file or variable that set it.
    pub(crate) origins: env_config::Origins,
}

/// Loads `--config`, else `./sluice.toml` when present, else defaults, then applies the
/// environment (see [`env_config`]).
pub(crate) fn load(explicit: Option<&Path>) -> Result<ConfigFile> {
    Ok(load_effective(explicit)?.config)
}

/// Like [`load`], keeping the merged table and the origin of each value.
pub(crate) fn load_effective(explicit: Option<&Path>) -> Result<Effective> {
    let default = Path::new("sluice.toml");
    let file = match explicit {
        Some(p) => Some(p),
        None if default.exists() => Some(default),
        None => None,
    };
    let (text, origin) = match file {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                Error::config(format!("cannot read config file {}: {e}", p.display()))
            })?;
            (text, p.display().to_string())
        }
        None => (String::new(), "defaults".to_owned()),
    };
    // The file on its own first, so that its errors carry line numbers.
    let from_file = ConfigFile::parse(&text, &origin)?;
    let mut table: toml::Table = text
        .parse()
        .map_err(|e| Error::config(format!("{origin}: {e}").replace('\n', " ")))?;
    let mut origins = env_config::Origins::new();
    env_config::record_origins(&table, "", &origin, &mut origins);
    let env = env_config::settings();
    if env.is_empty() {
        return Ok(Effective {
            config: from_file,
            table,
            origins,
        });
    }
    env_config::apply(&mut table, &env)?;
    for s in &env {
        origins.retain(|k, _| !k.starts_with(&format!("{}.", s.path.join("."))));
        origins.insert(s.path.join("."), format!("environment {}", s.variable));
    }
    let config = ConfigFile::from_table(&table, &format!("{origin} with SLUICE_* variables"))?;
    Ok(Effective {
        config,
        table,
        origins,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file() {
        let c = ConfigFile::parse(
            r#"
hash_salt = "s"
[source]
api_key_env = "MY_KEY"
[sink]
dest = "s3://bucket/lake"
[tables.users]
blocked_columns = ["photo"]
hashed_columns = ["email"]
[tables.requisition]
enabled = false
[tables.opportunity_stage_history]
history = true
"#,
            "sluice.toml",
        )
        .unwrap();
        assert_eq!(c.source_json()["api_key_env"], "MY_KEY");
        assert_eq!(c.sink_json(Some("/tmp/x"))["dest"], "/tmp/x");
        assert_eq!(c.sink_json(None)["dest"], "s3://bucket/lake");
        assert!(!c.tables["requisition"].enabled);
        assert_eq!(c.tables["opportunity_stage_history"].history, Some(true));
        assert!(!format!("{c:?}").contains("\"s\""), "salt leaked in Debug");
    }

    #[test]
    fn errors_are_one_line_and_name_the_key() {
        let cases = [
            (
                "[tables.users]\nenabeld = false\n",
                "tables.users.enabeld: unknown field `enabeld`, expected one of `enabled`",
            ),
            (
                "[tables.users]\nenabled = \"yes\"\n",
                "tables.users.enabled: invalid type: string \"yes\", expected a boolean",
            ),
            ("bogus = 1\n", "unknown field `bogus`"),
            (
                "[tables.users]\nhashed_columns = \"email\"\n",
                "tables.users.hashed_columns: invalid type",
            ),
            ("[source\n", "sluice.toml:1"),
        ];
        for (text, expected) in cases {
            let e = ConfigFile::parse(text, "sluice.toml").unwrap_err();
            let line = e.to_string();
            assert!(line.contains(expected), "{line:?} lacks {expected:?}");
            assert!(!line.contains('\n'), "multi-line error: {line:?}");
            assert_eq!(e.exit_code(), 2);
        }
    }
}
