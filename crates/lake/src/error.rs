//! The crate's error type and its mapping into [`sluice_core::Error`].

use sluice_core::ErrorKind;

/// Everything that can go wrong in a lake sink. Messages name paths and tables, never
/// credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LakeError {
    /// The `[sink]` settings are wrong.
    #[error("{0}")]
    Config(String),
    /// An object store operation failed (I/O, permissions, network, disk full).
    #[error("{op} {path}: {source}")]
    Store {
        /// What was being done (`writing`, `reading`, `listing`, `deleting`).
        op: &'static str,
        /// The object's location.
        path: String,
        /// The store's error (carries the OS message for local files).
        #[source]
        source: object_store::Error,
    },
    /// Encoding or decoding Parquet failed.
    #[error("{op} {path}: {source}")]
    Parquet {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: String,
        /// Parquet's error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Another run holds the destination's lease.
    #[error(
        "destination {dest} is in use by another sluice run (pid {pid} on {host}, since {since}); \
         if that run is dead, wait until {until} or delete {lease}"
    )]
    InUse {
        /// The destination URL.
        dest: String,
        /// The holder's process id.
        pid: u32,
        /// The holder's host name.
        host: String,
        /// When the holder took the lease (RFC 3339).
        since: String,
        /// When the lease expires unless renewed (RFC 3339).
        until: String,
        /// The lease object.
        lease: String,
    },
    /// This run's lease was taken over by another run (it expired while this run stalled).
    #[error("lost the lease on {dest}: {detail}; this run stops without committing")]
    LeaseLost {
        /// The destination URL.
        dest: String,
        /// What was found.
        detail: String,
    },
    /// The destination's store does not keep conditional writes (create-if-absent,
    /// replace-if-unchanged), on which the lease and the manifest rest.
    #[error(
        "destination {dest} cannot keep sluice's commit protocol: {detail}; sluice does not \
         write to it (use a store that honours conditional writes: If-None-Match and If-Match)"
    )]
    Unsafe {
        /// The destination URL.
        dest: String,
        /// What the probe found.
        detail: String,
    },
    /// A declared column type differs from the type stored in the destination.
    #[error(
        "table `{table}` column `{column}`: stored type {stored} is incompatible with declared \
         type {declared}; the destination was left unchanged (re-sync the table into a new \
         destination, or restore the old type)"
    )]
    TypeChange {
        /// Table name.
        table: String,
        /// Column name.
        column: String,
        /// The type in the manifest.
        stored: String,
        /// The declared type.
        declared: String,
    },
    /// Another run committed the same manifest version first.
    #[error(
        "another sluice run committed to {dest} concurrently (manifest version {version} \
         already exists); this commit was discarded and the other run's data kept"
    )]
    Conflict {
        /// The destination URL.
        dest: String,
        /// The manifest version both tried to create.
        version: u64,
    },
    /// The manifest is unreadable or from a newer sluice.
    #[error("manifest {path}: {detail}")]
    Manifest {
        /// The manifest object.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// A deletion vector or Delta log object is unreadable or inconsistent.
    #[error("{path}: {detail}; the destination is damaged (restore it or re-sync into a new one)")]
    Damaged {
        /// The object.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// An error from sluice-core (merge, alignment).
    #[error(transparent)]
    Core(#[from] sluice_core::Error),
}

impl LakeError {
    /// An object store failure doing `op` on `path`.
    pub fn store(
        op: &'static str,
        path: impl std::fmt::Display,
        source: object_store::Error,
    ) -> Self {
        LakeError::Store {
            op,
            path: path.to_string(),
            source,
        }
    }
    /// A Parquet failure doing `op` on `path`.
    pub fn parquet(
        op: &'static str,
        path: impl std::fmt::Display,
        source: parquet::errors::ParquetError,
    ) -> Self {
        LakeError::Parquet {
            op,
            path: path.to_string(),
            source,
        }
    }
}

impl From<LakeError> for sluice_core::Error {
    fn from(e: LakeError) -> Self {
        match e {
            LakeError::Core(e) => e,
            LakeError::Config(m) => sluice_core::Error::config(m),
            LakeError::Conflict { .. } | LakeError::InUse { .. } => {
                sluice_core::Error::new(ErrorKind::Destination, e.to_string()).with_retryable(true)
            }
            other => sluice_core::Error::destination(other.to_string()),
        }
    }
}

/// `Result` with [`LakeError`].
pub type Result<T, E = LakeError> = std::result::Result<T, E>;
