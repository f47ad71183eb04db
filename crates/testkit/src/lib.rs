//! # sluice-testkit
//!
//! Test doubles and conformance suites for sluice plugins (not shipped in the binary):
//!
//! * [`MemoryDestination`] / [`MemorySink`]: an in-memory sink with the shared merge
//!   semantics and failure injection at every step of a commit.
//! * [`TestSource`]: a deterministic in-memory source (registered nowhere).
//! * [`sink_conformance`] and [`source_conformance`]: suites every sink and source crate runs
//!   on itself.
//! * [`rows`]: Arrow batches as JSON rows for comparisons with ground truth.
//! * [`net`]: a test CA, a TLS front and a forward proxy on 127.0.0.1 (private networking).

pub mod memory_secrets;
pub mod memory_sink;
pub mod net;
pub mod rows;
pub mod sink_conformance;
pub mod source_conformance;
pub mod test_source;

pub use memory_secrets::MemorySecrets;
pub use memory_sink::{FailPoint, MemoryDestination, MemorySink};
pub use rows::{Row, batch_rows, rows_by_key};
pub use test_source::{TestSource, TestSourceConfig};

use sluice_core::{DynSource, Result, SyncOptions, SyncReport};

/// Runs one sync of `source` into `dest` with `options` (a fresh sink session).
pub async fn sync_with(
    source: &dyn DynSource,
    config: &serde_json::Value,
    dest: &MemoryDestination,
    options: SyncOptions,
) -> Result<SyncReport> {
    let mut sink = dest.sink();
    sluice_core::run_sync(dest.source_name(), source, config, &mut sink, options).await
}
