//! # sluice-core
//!
//! The contracts every sluice plugin agrees on, and the sync engine.
//!
//! * [`TableSpec`]: each table declared once (columns, key, sync kind, deletes, history).
//! * [`Source`] / [`DynSource`] and [`Sink`] / [`SinkFactory`]: the plugin traits, registered
//!   with [`inventory`] through [`SourcePlugin`] and [`SinkPlugin`] and found via [`Registry`].
//! * [`SourceMessage`] and [`Change`]: Arrow batches and key sets, never row-by-row JSON.
//! * [`State`]: typed, versioned, stored in the destination, advanced only by [`Sink::commit`].
//! * [`run_sync`]: the engine; [`Plan`]: blocking and hashing ([`hash_value`]);
//!   [`Metrics`]: the live counters, with CPU time by [`CpuPhase`].
//! * [`sink_support`]: what sink authors use besides the contract: the shared merge (the
//!   upsert, delete and history semantics every sink applies), the key index, schema
//!   alignment and the system column names.
//!
//! The normative description is `docs/spec.md`.

mod cpu;
mod engine;
mod error;
mod message;
mod metrics;
mod registry;
mod run_settings;
mod secret;
mod secret_store;
mod sink;
pub mod sink_support;
mod source;
mod spec;
mod state;
mod transform;

pub use cpu::CpuPhase;
pub use engine::{SyncOptions, SyncReport, now_ms, run_sync};
pub use error::{Error, ErrorKind, Result};
pub use message::{Change, Scope, SinkChange, SourceMessage};
pub use metrics::{Metered, Metrics, TableCounters};
pub use registry::{Registry, SinkPlugin, SourcePlugin};
pub use run_settings::{RunSettings, sink_config};
pub use secret::Secret;
pub use secret_store::SecretStore;
pub use sink::{CommitReport, Sink, SinkFactory, TableCommitStats, build_sink};
pub use source::{CheckContext, DynSource, Emitter, ReadContext, Source};
pub use spec::{ColumnSpec, ColumnType, SyncKind, TableSpec, to_snake_case};
pub use state::{Cursor, Origin, STATE_VERSION, State, TableState};
pub use transform::{Plan, PlannedTable, SyncSettings, TableSettings, hash_value};

// Re-exported so plugins use the workspace's exact versions.
pub use arrow;
pub use async_trait::async_trait;
pub use inventory;
pub use tokio_util::sync::CancellationToken;
