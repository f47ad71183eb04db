//! Names every sluice plugin crate so the linker keeps their `inventory` registrations.
//!
//! A plugin crate that nothing references is not linked, and its `inventory::submit!`
//! silently vanishes. Adding a plugin = one line here plus one name in the test below.

use sluice_sink_delta as _;
use sluice_sink_iceberg as _;
use sluice_sink_parquet as _;
use sluice_source_lever as _;

/// The registry of every plugin linked into this build.
pub fn registry() -> sluice_core::Result<sluice_core::Registry> {
    sluice_core::Registry::from_inventory()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_plugin_is_registered_exactly_once() {
        let r = super::registry().expect("valid registry");
        let sources: Vec<_> = r.sources().iter().map(|p| p.name).collect();
        let sinks: Vec<_> = r.sinks().iter().map(|p| p.name).collect();
        assert_eq!(sources, ["lever"]);
        assert_eq!(sinks, ["delta", "iceberg", "parquet"]);
    }
}
