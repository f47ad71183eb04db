//! # sluice-core
//!
//! The contracts every sluice plugin agrees on, and the sync engine.
//!
//! * [`TableSpec`]: each table declared once (columns, key, sync kind, deletes, history).
//! * [`Source`] / [`DynSource`] and [`Sink`] / [`SinkFactory`]: the plugin traits, registered
//!   with [`inventory`] through [`SourcePlugin`] and [`SinkPlugin`] and found via [`Registry`].
//! * [`SourceMessage`] and [`Change`]: Arrow batches and key sets, never row-by-row JSON.
//! * [`State`]: typed, versioned, stored in the destination, advanced only by [`Sink::commit`].
//! * [`run_sync`]: the engine; [`Plan`]: blocking and hashing; [`merge()`]: the upsert,
//!   delete and history semantics every sink shares.
//!
//! The normative description is `docs/spec.md`.

pub mod cpu;
pub mod engine;
pub mod error;
pub mod key_index;
pub mod merge;
pub mod message;
pub mod metrics;
pub mod registry;
pub mod run_settings;
pub mod secret;
pub mod secret_store;
pub mod sink;
pub mod source;
pub mod spec;
pub mod state;
pub mod transform;

pub use engine::{SyncOptions, SyncReport, now_ms, run_sync};
pub use error::{Error, ErrorKind, Result};
pub use merge::merge;
pub use message::{Change, Scope, SinkChange, SourceMessage};
pub use metrics::{Metrics, TableCounters};
pub use registry::{Registry, SinkPlugin, SourcePlugin};
pub use run_settings::{RunSettings, sink_config};
pub use secret::Secret;
pub use secret_store::SecretStore;
pub use sink::{CommitReport, Sink, SinkFactory, TableCommitStats, build_sink};
pub use source::{CheckContext, DynSource, Emitter, ReadContext, Source, parse_config};
pub use spec::{ColumnSpec, ColumnType, SyncKind, TableSpec};
pub use state::{Cursor, Origin, STATE_VERSION, State, TableState};
pub use transform::{Plan, PlannedTable, SyncSettings, TableSettings};

// Re-exported so plugins use the workspace's exact versions.
pub use arrow;
pub use async_trait::async_trait;
pub use inventory;
pub use tokio_util::sync::CancellationToken;
