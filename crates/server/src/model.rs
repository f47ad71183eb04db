//! The API's request and response bodies (their JSON schemas are derived into the OpenAPI
//! document).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Shortest schedule interval in minutes (Fivetran's shortest is 5 minutes).
pub const MIN_EVERY_MINUTES: u32 = 5;
/// Longest schedule interval in minutes (24 hours).
pub const MAX_EVERY_MINUTES: u32 = 1440;
/// Interval of a new connection unless the request sets one.
pub const DEFAULT_EVERY_MINUTES: u32 = 360;

/// When a connection syncs on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Schedule {
    /// Sync every this many minutes (5 to 1440).
    pub every_minutes: u32,
    /// A paused connection is not synced by the scheduler ("sync now" still works).
    pub paused: bool,
}

/// Changes to a schedule; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchedulePatch {
    /// Sync every this many minutes (5 to 1440).
    pub every_minutes: Option<u32>,
    /// Pause or resume the schedule.
    pub paused: Option<bool>,
}

/// A new connection.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConnection {
    /// A name for people (default: `<source> to <destination>`).
    pub name: Option<String>,
    /// Source plugin (`lever`).
    pub source: String,
    /// Sink plugin (`parquet`, `delta`).
    pub sink: String,
    /// Destination: a path, `file://…` or `s3://bucket/prefix`. Deleting the connection never
    /// deletes it.
    pub destination: String,
    /// The source's settings as in `[source]` of `sluice.toml`, without secrets (those are set
    /// through `PUT /v1/connections/{id}/credentials`).
    #[schema(value_type = Object)]
    pub source_settings: Option<serde_json::Map<String, serde_json::Value>>,
    /// The sink's settings as in `[sink]` of `sluice.toml`, without `dest`.
    #[schema(value_type = Object)]
    pub sink_settings: Option<serde_json::Map<String, serde_json::Value>>,
    /// The schedule (default: every 360 minutes, not paused).
    pub schedule: Option<SchedulePatch>,
}

/// Changes to a connection; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionPatch {
    /// A name for people.
    pub name: Option<String>,
    /// Destination (moving it starts a new lake; the old one is left as it is).
    pub destination: Option<String>,
    /// Replaces the source's settings.
    #[schema(value_type = Object)]
    pub source_settings: Option<serde_json::Map<String, serde_json::Value>>,
    /// Replaces the sink's settings.
    #[schema(value_type = Object)]
    pub sink_settings: Option<serde_json::Map<String, serde_json::Value>>,
    /// Changes the schedule.
    pub schedule: Option<SchedulePatch>,
}

/// Which credentials a connection has (never their values).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct CredentialStatus {
    /// An API key is set.
    pub api_key: bool,
    /// The OAuth app's client id, when OAuth is set up.
    pub oauth_client_id: Option<String>,
    /// The OAuth app's client secret is set.
    pub oauth_client_secret: bool,
    /// A refresh token from an authorization is stored.
    pub oauth_refresh_token: bool,
    /// A salt for column hashing is set.
    pub hash_salt: bool,
}

/// A connection as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Connection {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Source plugin.
    pub source: String,
    /// Sink plugin.
    pub sink: String,
    /// Destination path or URL.
    pub destination: String,
    /// The source's settings (no secrets).
    #[schema(value_type = Object)]
    pub source_settings: serde_json::Map<String, serde_json::Value>,
    /// The sink's settings.
    #[schema(value_type = Object)]
    pub sink_settings: serde_json::Map<String, serde_json::Value>,
    /// The schedule.
    pub schedule: Schedule,
    /// Which credentials are set.
    pub credentials: CredentialStatus,
    /// Whether the connection can authenticate: an API key, or OAuth with a refresh token.
    pub authorized: bool,
    /// A run is queued or running.
    pub running: bool,
    /// When the scheduler starts the next run (epoch ms), unless paused.
    pub next_run_at: Option<i64>,
    /// The newest run.
    pub last_run: Option<Run>,
    /// Created (epoch ms).
    pub created_at: i64,
    /// Last changed (epoch ms).
    pub updated_at: i64,
    /// What a change did besides what was asked (a `PATCH` that changed `base_url` drops
    /// the stored API key and OAuth authorization); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

/// Credentials to set; absent fields stay as they are, `null`... is not accepted: send a
/// new value to replace one.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialsInput {
    /// A Lever API key (replaces OAuth settings).
    pub api_key: Option<String>,
    /// OAuth app settings (replace an API key).
    pub oauth: Option<OAuthClientInput>,
    /// Salt for column hashing (`SLUICE_HASH_SALT` of the server wins when set).
    pub hash_salt: Option<String>,
}

/// An OAuth app.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuthClientInput {
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: String,
    /// Token endpoint (default `https://auth.lever.co/oauth/token`).
    pub token_url: Option<String>,
    /// Authorization page (default `https://auth.lever.co/authorize`).
    pub authorize_url: Option<String>,
    /// A refresh token obtained elsewhere (otherwise authorize through
    /// `POST /v1/connections/{id}/authorize`).
    pub refresh_token: Option<String>,
}

/// What `check` found.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckResult {
    /// The credentials work and the API is reachable.
    pub ok: bool,
    /// One line: what was reached, or why not.
    pub message: String,
    /// `config`, `auth`, `upstream`, `destination` or `internal` when not ok.
    pub error_kind: Option<String>,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting for a slot (`max_concurrent_runs`).
    Queued,
    /// Syncing.
    Running,
    /// Finished; everything committed.
    Succeeded,
    /// Stopped by an error at its last committed checkpoint.
    Failed,
    /// Stopped by a shutdown at its last committed checkpoint.
    Cancelled,
}

impl RunStatus {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the run has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

/// Why a run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// "Sync now".
    Manual,
    /// A re-sync request.
    Resync,
    /// The schedule.
    Schedule,
    /// A retry of a failed run.
    Retry,
}

impl Trigger {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Resync => "resync",
            Trigger::Schedule => "schedule",
            Trigger::Retry => "retry",
        }
    }
}

/// Rows a run changed in one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TableRows {
    /// Rows received from the source.
    pub received: u64,
    /// Keys that did not exist before.
    pub inserted: u64,
    /// Keys whose values changed.
    pub updated: u64,
    /// Keys deleted.
    pub deleted: u64,
}

/// One sync of a connection.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Run {
    /// Its id.
    pub id: String,
    /// The connection.
    pub connection_id: String,
    /// Where it is.
    pub status: RunStatus,
    /// Why it started.
    pub trigger: Trigger,
    /// Tables re-imported from scratch by this run.
    pub resync: Vec<String>,
    /// Queued (epoch ms).
    pub queued_at: i64,
    /// Started syncing (epoch ms).
    pub started_at: Option<i64>,
    /// Ended (epoch ms).
    pub ended_at: Option<i64>,
    /// Rows per table.
    pub tables: BTreeMap<String, TableRows>,
    /// HTTP requests made to the source.
    pub requests: u64,
    /// Requests by endpoint (or table).
    pub requests_by_endpoint: BTreeMap<String, u64>,
    /// Answers by endpoint, then by HTTP status (`error`: no answer came).
    #[serde(default)]
    pub responses_by_status: BTreeMap<String, BTreeMap<String, u64>>,
    /// Requests answered 429 (and waited out).
    pub throttled: u64,
    /// Bytes of data files written.
    pub bytes_written: u64,
    /// `config`, `auth`, `upstream`, `destination`, `internal` or `cancelled` when not
    /// succeeded.
    pub error_kind: Option<String>,
    /// One line.
    pub error_message: Option<String>,
}

/// A re-sync request.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResyncRequest {
    /// Only this table (default: every table).
    pub table: Option<String>,
}

/// An authorization request.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeRequest {
    /// Where Lever sends the browser back (default: this server's `/v1/oauth/callback`).
    pub redirect_uri: Option<String>,
}

/// Where to send the user to authorize the connection.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Authorization {
    /// Open this in a browser.
    pub authorization_url: String,
    /// The `state` parameter: single use, bound to this connection.
    pub state: String,
    /// The state expires then (epoch ms).
    pub expires_at: i64,
}

/// A column of a table and its settings.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SchemaColumn {
    /// Its name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: String,
    /// Part of the primary key (cannot be blocked or hashed).
    pub primary_key: bool,
    /// Marked as personal data by the table spec.
    pub sensitive: bool,
    /// Never written.
    pub blocked: bool,
    /// Written as a salted SHA-256.
    pub hashed: bool,
}

/// A table and its settings.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SchemaTable {
    /// Its name.
    pub name: String,
    /// What it holds.
    pub description: String,
    /// Synced (not blocked).
    pub enabled: bool,
    /// History mode in effect.
    pub history: bool,
    /// The table's history default.
    pub history_default: bool,
    /// Its columns.
    pub columns: Vec<SchemaColumn>,
}

/// A connection's tables.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Schema {
    /// Every table of the source.
    pub tables: Vec<SchemaTable>,
}

/// Settings of one table, as `[tables.<name>]` of `sluice.toml`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct TableSettingsDoc {
    /// `false` blocks the table.
    pub enabled: Option<bool>,
    /// Columns never written.
    pub blocked_columns: Option<Vec<String>>,
    /// Columns written as `hex(sha256(salt || value))`.
    pub hashed_columns: Option<Vec<String>>,
    /// Keep every version of a row.
    pub history: Option<bool>,
}

/// Changes to the schema settings: each listed table's settings are replaced (with the
/// defaults for absent keys); `null` resets a table to its defaults. Validated like
/// `sluice.toml`, with the same messages.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaPatch {
    /// Per-table settings.
    #[schema(value_type = BTreeMap<String, TableSettingsDoc>)]
    pub tables: BTreeMap<String, serde_json::Value>,
}

/// The committed state of a connection's destination (no secrets).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StateView {
    /// The state, or `null` when nothing was committed yet.
    #[schema(value_type = Object)]
    pub state: Option<serde_json::Value>,
}

/// A list of connections.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConnectionList {
    /// The connections, oldest first.
    pub connections: Vec<Connection>,
}

/// A list of runs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunList {
    /// The runs, newest first.
    pub runs: Vec<Run>,
}
