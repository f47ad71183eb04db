//! A table format on the lake engine, as `docs/write-a-sink.md` shows it: after each commit,
//! every changed table gets `<table>/_files.txt`, the list of its live files. Built by
//! `cargo clippy --all-targets` (so by `cargo xtask ci`); run with
//! `cargo run -p sluice-lake --example listing_format`.

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sluice_core::{Sink, SinkFactory, async_trait};
use sluice_lake::{LakeConfig, LakeError, LakeSink, Result, TableEntry, TableFormat, TableLog};
use std::sync::Arc;

/// The format: no deletion vectors (the default, rewrites), superseded files deleted at once
/// (the default retention), and a listing published after each manifest commit.
#[derive(Debug)]
struct ListingFormat;

#[async_trait]
impl TableFormat for ListingFormat {
    fn name(&self) -> &'static str {
        "listing"
    }

    fn keeps_log(&self) -> bool {
        true
    }

    /// Before the manifest commit: the table's next listing, or the same one if its files
    /// did not change (then nothing is published).
    fn next_log(
        &self,
        _table: &str,
        _key: &[String],
        old: Option<&TableEntry>,
        new: &TableEntry,
        now_ms: i64,
    ) -> Option<TableLog> {
        let listing = |e: &TableEntry| -> String {
            e.files.iter().map(|f| format!("{}\n", f.name)).collect()
        };
        let text = listing(new);
        match &new.log {
            Some(log) if old.map(listing).as_ref() == Some(&text) => Some(log.clone()),
            prev => Some(TableLog {
                table_id: "listing".to_owned(),
                version: prev.as_ref().map_or(0, |l| l.version + 1),
                schema: String::new(),
                commit: text,
                created_ms: prev.as_ref().map_or(now_ms, |l| l.created_ms),
                format: Some("listing".to_owned()),
                versions: Vec::new(),
            }),
        }
    }

    /// After the manifest commit (and at the next open if a run stopped before it).
    async fn publish(&self, store: &dyn ObjectStore, dir: &Path, entry: &TableEntry) -> Result<()> {
        let Some(log) = &entry.log else { return Ok(()) };
        let path = dir.clone().join("_files.txt");
        store
            .put(&path, PutPayload::from(log.commit.clone().into_bytes()))
            .await
            .map_err(|e| LakeError::store("writing", &path, e))?;
        Ok(())
    }
}

/// The sink's factory: the lake's `[sink]` keys, this format.
struct ListingSinkFactory;

impl SinkFactory for ListingSinkFactory {
    type Config = LakeConfig;
    fn build(config: LakeConfig) -> sluice_core::Result<Box<dyn Sink>> {
        Ok(Box::new(LakeSink::new(config, Arc::new(ListingFormat))?))
    }
}

// In a sink crate: its one registration (and one `use … as _;` line in crates/plugins).
sluice_core::inventory::submit! {
    sluice_core::SinkPlugin::new(
        "listing",
        "Parquet tables with a list of live files per table",
        sluice_core::build_sink::<ListingSinkFactory>,
    )
}

fn main() -> sluice_core::Result<()> {
    let config = serde_json::json!({"dest": "./lake-listing-example"});
    let _sink = sluice_core::build_sink::<ListingSinkFactory>(&config)?;
    println!("built a `listing` sink (no I/O until open)");
    Ok(())
}
