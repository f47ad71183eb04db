//! Plugin registration with `inventory`: each plugin crate submits one `'static` entry; the
//! registry collects them, sorted by name, and rejects duplicates and invalid table specs.

use crate::error::{Error, Result};
use crate::sink::Sink;
use crate::source::DynSource;
use std::collections::BTreeSet;

/// A source plugin's registration.
#[non_exhaustive]
pub struct SourcePlugin {
    /// Lower-case name used on the command line (`lever`).
    pub name: &'static str,
    /// One line for `sluice plugins`.
    pub description: &'static str,
    /// Constructs the source.
    pub build: fn() -> Box<dyn DynSource>,
    /// The settings a `[source]` section leaves unset take these values: TOML fragments, read
    /// one after the other (for `sluice config show`); empty when not given.
    pub defaults: &'static [&'static str],
}

impl SourcePlugin {
    /// A registration entry, usable in `inventory::submit!`.
    pub const fn new(
        name: &'static str,
        description: &'static str,
        build: fn() -> Box<dyn DynSource>,
    ) -> Self {
        SourcePlugin {
            name,
            description,
            build,
            defaults: &[],
        }
    }

    /// The entry with [`SourcePlugin::defaults`] set.
    pub const fn with_defaults(self, defaults: &'static [&'static str]) -> Self {
        SourcePlugin { defaults, ..self }
    }
}

/// A sink plugin's registration.
#[non_exhaustive]
pub struct SinkPlugin {
    /// Lower-case name used on the command line (`parquet`).
    pub name: &'static str,
    /// One line for `sluice plugins`.
    pub description: &'static str,
    /// Constructs the sink from its JSON config (see [`crate::build_sink`]).
    pub build: fn(&serde_json::Value) -> Result<Box<dyn Sink>>,
    /// The settings a `[sink]` section leaves unset take these values: TOML fragments, read
    /// one after the other (for `sluice config show`); empty when not given.
    pub defaults: &'static [&'static str],
}

impl SinkPlugin {
    /// A registration entry, usable in `inventory::submit!`.
    pub const fn new(
        name: &'static str,
        description: &'static str,
        build: fn(&serde_json::Value) -> Result<Box<dyn Sink>>,
    ) -> Self {
        SinkPlugin {
            name,
            description,
            build,
            defaults: &[],
        }
    }

    /// The entry with [`SinkPlugin::defaults`] set.
    pub const fn with_defaults(self, defaults: &'static [&'static str]) -> Self {
        SinkPlugin { defaults, ..self }
    }
}

inventory::collect!(SourcePlugin);
inventory::collect!(SinkPlugin);

/// The validated set of plugins.
pub struct Registry {
    sources: Vec<&'static SourcePlugin>,
    sinks: Vec<&'static SinkPlugin>,
}

impl Registry {
    /// Every plugin linked into this binary.
    pub fn from_inventory() -> Result<Registry> {
        Registry::new(
            inventory::iter::<SourcePlugin>.into_iter().collect(),
            inventory::iter::<SinkPlugin>.into_iter().collect(),
        )
    }

    /// A registry of the given plugins: sorted by name; duplicate names and invalid table
    /// specs are rejected.
    pub fn new(
        mut sources: Vec<&'static SourcePlugin>,
        mut sinks: Vec<&'static SinkPlugin>,
    ) -> Result<Registry> {
        sources.sort_by_key(|p| p.name);
        sinks.sort_by_key(|p| p.name);
        reject_duplicates("source", sources.iter().map(|p| p.name))?;
        reject_duplicates("sink", sinks.iter().map(|p| p.name))?;
        for plugin in &sources {
            let source = (plugin.build)();
            let mut names = BTreeSet::new();
            for spec in source.catalog() {
                spec.validate()
                    .map_err(|e| e.context(format!("source plugin `{}`", plugin.name)))?;
                if !names.insert(spec.name.clone()) {
                    return Err(Error::internal(format!(
                        "source plugin `{}` declares table `{}` twice",
                        plugin.name, spec.name
                    )));
                }
            }
        }
        Ok(Registry { sources, sinks })
    }

    /// Source plugins, sorted by name.
    pub fn sources(&self) -> &[&'static SourcePlugin] {
        &self.sources
    }

    /// Sink plugins, sorted by name.
    pub fn sinks(&self) -> &[&'static SinkPlugin] {
        &self.sinks
    }

    /// The source plugin called `name`.
    pub fn source(&self, name: &str) -> Result<&'static SourcePlugin> {
        self.sources
            .iter()
            .find(|p| p.name == name)
            .copied()
            .ok_or_else(|| {
                Error::config(format!(
                    "unknown source `{name}` (available: {})",
                    self.sources
                        .iter()
                        .map(|p| p.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// The sink plugin called `name`.
    pub fn sink(&self, name: &str) -> Result<&'static SinkPlugin> {
        self.sinks
            .iter()
            .find(|p| p.name == name)
            .copied()
            .ok_or_else(|| {
                Error::config(format!(
                    "unknown sink `{name}` (available: {})",
                    self.sinks
                        .iter()
                        .map(|p| p.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
}

fn reject_duplicates<'a>(kind: &str, names: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(Error::internal(format!(
                "two {kind} plugins are registered as `{name}`"
            )));
        }
    }
    Ok(())
}
