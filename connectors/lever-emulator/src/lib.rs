#![doc = include_str!("../README.md")]

mod admin;
mod auth;
mod data;
pub mod expected;
mod limits;
mod respond;
mod rng;
mod server;
mod state;
mod truth;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::serve::ListenerExt as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use auth::RotationPolicy;
pub use limits::{Counters, EndpointCounters, FaultConfig, RateLimit};
pub use state::{EmulatorError, ListOrder, MutationSummary};
pub use truth::{OpportunityChildren, Truth};

use server::lock;

/// Configuration of an [`Emulator`].
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Seed of all generated data.
    pub seed: u64,
    /// Number of generated opportunities.
    pub opportunities: usize,
    /// Per-credential token bucket; `None` disables rate limiting.
    pub rate_limit: Option<RateLimit>,
    /// Added latency per data request (async sleep).
    pub latency: Duration,
    /// Fault injection on data requests.
    pub faults: FaultConfig,
    /// Lifetime of OAuth access tokens (real time).
    pub access_token_ttl: Duration,
    /// What happens to a rotated OAuth refresh token (grace period, reuse detection).
    pub oauth_rotation: RotationPolicy,
    /// Lifetime of pagination offset tokens (real time); older tokens answer 400.
    pub offset_token_ttl: Duration,
    /// The order `/opportunities` lists opportunities in.
    pub list_order: ListOrder,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            opportunities: 200,
            rate_limit: Some(RateLimit::default()),
            latency: Duration::ZERO,
            faults: FaultConfig::default(),
            access_token_ttl: Duration::from_secs(3600),
            oauth_rotation: RotationPolicy::default(),
            offset_token_ttl: Duration::from_secs(3600),
            list_order: ListOrder::default(),
        }
    }
}

/// Settings that can change while the server runs.
#[derive(Debug, Clone)]
pub(crate) struct Runtime {
    pub(crate) rate_limit: Option<RateLimit>,
    pub(crate) latency: Duration,
    pub(crate) faults: FaultConfig,
    pub(crate) offset_token_ttl: Duration,
    pub(crate) list_order: ListOrder,
}

/// Called before each `/opportunities` list request is answered, with the 1-based number of
/// such requests so far: lets a test change the data in the middle of a walk, at an exact
/// point of it.
pub type ListHook = Arc<dyn Fn(&Emulator, u64) + Send + Sync>;

/// The installed [`ListHook`], if any.
#[derive(Default)]
pub(crate) struct HookSlot(Mutex<Option<ListHook>>);

impl std::fmt::Debug for HookSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = lock(&self.0).is_some();
        f.debug_struct("HookSlot").field("set", &set).finish()
    }
}

/// Shared state behind an [`Emulator`] handle.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) seed: u64,
    pub(crate) access_token_ttl: Duration,
    pub(crate) state: RwLock<state::State>,
    pub(crate) auth: Mutex<auth::AuthState>,
    pub(crate) runtime: Mutex<Runtime>,
    pub(crate) limiter: Mutex<limits::Limiter>,
    pub(crate) counters: Mutex<Counters>,
    pub(crate) fault_seq: AtomicU64,
    pub(crate) token_epoch: AtomicU64,
    pub(crate) started: Instant,
    pub(crate) list_hook: HookSlot,
    pub(crate) list_requests: AtomicU64,
    /// Data requests inside their added latency right now.
    pub(crate) in_flight: AtomicU64,
}

/// A deterministic, mutable Lever Data API v1. Cheap to clone (an `Arc` inside); every clone
/// sees the same data.
#[derive(Debug, Clone)]
pub struct Emulator {
    pub(crate) inner: Arc<Inner>,
}

/// A running HTTP server. Shut down with [`ServerHandle::shutdown`] or by dropping it.
#[derive(Debug)]
pub struct ServerHandle {
    /// The bound address (always on 127.0.0.1).
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// Data API base URL, e.g. `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.root_url())
    }

    /// Server root (`http://127.0.0.1:PORT`): `/oauth/token` and `/admin/...` live here.
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections and waits (up to 5 s) for open ones to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

macro_rules! must {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => panic!("lever-emulator: {e}"),
        }
    };
}

impl Emulator {
    /// Generates the dataset (lazily: only compact records are kept in memory).
    pub fn new(config: EmulatorConfig) -> Self {
        let st = state::State::new(config.seed, config.opportunities);
        Self {
            inner: Arc::new(Inner {
                seed: config.seed,
                access_token_ttl: config.access_token_ttl,
                state: RwLock::new(st),
                auth: Mutex::new({
                    let mut a = auth::AuthState::new(config.seed);
                    a.policy = config.oauth_rotation;
                    a
                }),
                runtime: Mutex::new(Runtime {
                    rate_limit: config.rate_limit,
                    latency: config.latency,
                    faults: config.faults,
                    offset_token_ttl: config.offset_token_ttl,
                    list_order: config.list_order,
                }),
                limiter: Mutex::new(limits::Limiter::default()),
                counters: Mutex::new(Counters::default()),
                fault_seq: AtomicU64::new(0),
                token_epoch: AtomicU64::new(0),
                started: Instant::now(),
                list_hook: HookSlot::default(),
                list_requests: AtomicU64::new(0),
                in_flight: AtomicU64::new(0),
            }),
        }
    }

    /// A small reference scenario: default data (seed 42, 200 opportunities), no rate limit,
    /// and one of each kind of mutation already applied (a note and feedback added and deleted,
    /// a stage change, an update, a created and a deleted opportunity, a deactivated and a
    /// deleted user, a deleted posting, stage, archive reason and requisition, and a new
    /// requisition custom field).
    pub fn reference_scenario() -> Self {
        let emu = Self::new(EmulatorConfig {
            rate_limit: None,
            ..EmulatorConfig::default()
        });
        let t = emu.truth();
        let ids: Vec<String> = t
            .opportunities
            .iter()
            .take(6)
            .map(|o| o["id"].as_str().unwrap_or_default().to_string())
            .collect();
        emu.add_note(&ids[0]);
        emu.add_feedback(&ids[1]);
        emu.change_stage(&ids[2]);
        emu.update_opportunity(&ids[3]);
        if let Some(n) = t.children[&ids[4]].notes.first() {
            emu.delete_note(&ids[4], n["id"].as_str().unwrap_or_default());
        }
        if let Some((o, f)) = t.children.iter().find_map(|(o, c)| {
            c.feedback
                .first()
                .map(|f| (o.clone(), f["id"].as_str().unwrap_or_default().to_string()))
        }) {
            emu.delete_feedback(&o, &f);
        }
        emu.delete_opportunity(&ids[5]);
        emu.create_opportunity();
        let users: Vec<&str> = t
            .users
            .iter()
            .filter(|u| u["deactivatedAt"].is_null())
            .filter_map(|u| u["id"].as_str())
            .collect();
        emu.deactivate_user(users[users.len() - 1]);
        emu.delete_user(users[users.len() - 2]);
        emu.delete_posting(
            t.postings[t.postings.len() - 1]["id"]
                .as_str()
                .unwrap_or_default(),
        );
        emu.delete_stage(
            t.stages[t.stages.len() - 1]["id"]
                .as_str()
                .unwrap_or_default(),
        );
        emu.delete_archive_reason(
            t.archive_reasons[t.archive_reasons.len() - 1]["id"]
                .as_str()
                .unwrap_or_default(),
        );
        emu.delete_requisition(
            t.requisitions[t.requisitions.len() - 1]["id"]
                .as_str()
                .unwrap_or_default(),
        );
        emu.add_requisition_field("employee_referral_bonus", "number");
        emu
    }

    /// Serves on `127.0.0.1:0` (a free port).
    pub async fn start(&self) -> std::io::Result<ServerHandle> {
        self.start_on(0).await
    }

    /// Serves on `127.0.0.1:port`.
    pub async fn start_on(&self, port: u16) -> std::io::Result<ServerHandle> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!("lever-emulator: cannot set TCP_NODELAY: {e}");
            }
        });
        let app = server::router(self.inner.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::error!("lever-emulator: server error: {e}");
            }
        });
        Ok(ServerHandle {
            addr,
            stop: Some(tx),
            task: Some(task),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, state::State> {
        self.inner
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, state::State> {
        self.inner
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The default API key (HTTP Basic user name); it has confidential access.
    pub fn api_key(&self) -> String {
        lock(&self.inner.auth).default_key.clone()
    }

    /// Creates an API key, with or without confidential access.
    pub fn create_api_key(&self, confidential: bool) -> String {
        lock(&self.inner.auth).create_api_key(confidential)
    }

    /// Registers an OAuth client: `(client_id, client_secret)`.
    pub fn register_oauth_client(&self) -> (String, String) {
        lock(&self.inner.auth).register_client()
    }

    /// Issues a one-time authorization code (as the authorize redirect would), for the
    /// `authorization_code` grant. `None` if the client is unknown.
    pub fn issue_authorization_code(&self, client_id: &str, confidential: bool) -> Option<String> {
        lock(&self.inner.auth).issue_code(client_id, confidential)
    }

    /// Issues a refresh token directly (as if the authorization-code flow had happened).
    ///
    /// # Panics
    /// If `client_id` was not registered.
    pub fn issue_refresh_token(&self, client_id: &str, confidential: bool) -> String {
        self.try_issue_refresh_token(client_id, confidential)
            .unwrap_or_else(|| panic!("lever-emulator: unknown OAuth client {client_id}"))
    }

    /// Like [`Emulator::issue_refresh_token`], `None` for an unknown client.
    pub fn try_issue_refresh_token(&self, client_id: &str, confidential: bool) -> Option<String> {
        lock(&self.inner.auth).issue_refresh(client_id, confidential)
    }

    /// Current logical time (epoch ms). Starts at 2026-01-01T00:00:00Z.
    pub fn now_ms(&self) -> i64 {
        self.read().clock
    }

    /// Advances the logical clock by `ms` (negative values are ignored).
    pub fn advance_clock(&self, ms: i64) {
        self.write().clock += ms.max(0);
    }

    /// The full current content (see [`Truth`]).
    pub fn truth(&self) -> Truth {
        truth::build(&self.read())
    }

    /// Request counters.
    pub fn counters(&self) -> Counters {
        lock(&self.inner.counters).clone()
    }

    /// Resets request counters.
    pub fn reset_counters(&self) {
        *lock(&self.inner.counters) = Counters::default();
    }

    /// Changes fault injection.
    pub fn set_faults(&self, f: FaultConfig) {
        lock(&self.inner.runtime).faults = f;
    }

    /// Changes (or disables) rate limiting; buckets restart full.
    pub fn set_rate_limit(&self, r: Option<RateLimit>) {
        lock(&self.inner.runtime).rate_limit = r;
        lock(&self.inner.limiter).reset();
    }

    /// Changes the added latency per data request.
    pub fn set_latency(&self, d: Duration) {
        lock(&self.inner.runtime).latency = d;
    }

    /// Changes the lifetime of offset tokens.
    pub fn set_offset_token_ttl(&self, d: Duration) {
        lock(&self.inner.runtime).offset_token_ttl = d;
    }

    /// Changes the order `/opportunities` lists opportunities in (offset tokens issued under
    /// the other order then point at other positions: switch between walks).
    pub fn set_list_order(&self, order: ListOrder) {
        lock(&self.inner.runtime).list_order = order;
    }

    /// The order `/opportunities` lists opportunities in.
    pub fn list_order(&self) -> ListOrder {
        lock(&self.inner.runtime).list_order
    }

    /// Installs (or with `None` removes) the hook called before each `/opportunities` list
    /// request is answered; the request count restarts at 1.
    pub fn set_list_hook(&self, hook: Option<ListHook>) {
        *lock(&self.inner.list_hook.0) = hook;
        self.inner.list_requests.store(0, Ordering::SeqCst);
    }

    /// Runs the list hook for the next `/opportunities` request.
    pub(crate) fn run_list_hook(&self) {
        let n = self.inner.list_requests.fetch_add(1, Ordering::SeqCst) + 1;
        let hook = lock(&self.inner.list_hook.0).clone();
        if let Some(h) = hook {
            h(self, n);
        }
    }

    /// Ids of the live opportunities (every confidentiality) in the order `/opportunities`
    /// lists them.
    pub fn opportunity_ids_in_list_order(&self) -> Vec<String> {
        let order = self.list_order();
        self.read().ids_in_list_order(order)
    }

    /// Makes every offset token issued so far stale (400 "Invalid offset token").
    pub fn expire_offset_tokens(&self) {
        self.inner.token_epoch.fetch_add(1, Ordering::SeqCst);
    }

    // --- mutations -------------------------------------------------------------------------

    /// Adds a note to an opportunity; returns the note id. Bumps `updatedAt`/`lastInteractionAt`.
    ///
    /// # Panics
    /// If the opportunity does not exist (see [`Emulator::try_add_note`]).
    pub fn add_note(&self, opportunity_id: &str) -> String {
        must!(self.try_add_note(opportunity_id))
    }
    /// Fallible [`Emulator::add_note`].
    pub fn try_add_note(&self, opportunity_id: &str) -> Result<String, EmulatorError> {
        self.write().add_note(opportunity_id)
    }

    /// Adds a (manual) feedback form; returns its id. Bumps `updatedAt`/`lastInteractionAt`.
    ///
    /// # Panics
    /// If the opportunity does not exist.
    pub fn add_feedback(&self, opportunity_id: &str) -> String {
        must!(self.try_add_feedback(opportunity_id))
    }
    /// Fallible [`Emulator::add_feedback`].
    pub fn try_add_feedback(&self, opportunity_id: &str) -> Result<String, EmulatorError> {
        self.write().add_feedback(opportunity_id)
    }

    /// Moves the opportunity to the next (live) stage, appending to `stageChanges`.
    ///
    /// # Panics
    /// If the opportunity does not exist.
    pub fn change_stage(&self, opportunity_id: &str) {
        must!(self.try_change_stage(opportunity_id));
    }
    /// Fallible [`Emulator::change_stage`].
    pub fn try_change_stage(&self, opportunity_id: &str) -> Result<(), EmulatorError> {
        self.write().change_stage(opportunity_id)
    }

    /// Updates opportunity fields (new version: tags, owner and followers change).
    ///
    /// # Panics
    /// If the opportunity does not exist.
    pub fn update_opportunity(&self, opportunity_id: &str) {
        must!(self.try_update_opportunity(opportunity_id));
    }
    /// Fallible [`Emulator::update_opportunity`].
    pub fn try_update_opportunity(&self, opportunity_id: &str) -> Result<(), EmulatorError> {
        self.write().update_opportunity(opportunity_id)
    }

    /// Creates an opportunity (created and updated now); returns its id.
    pub fn create_opportunity(&self) -> String {
        self.write().create_opportunity()
    }

    /// Hard-deletes an opportunity (listed in `/opportunities/deleted`).
    ///
    /// # Panics
    /// If the opportunity does not exist.
    pub fn delete_opportunity(&self, id: &str) {
        must!(self.try_delete_opportunity(id));
    }
    /// Fallible [`Emulator::delete_opportunity`].
    pub fn try_delete_opportunity(&self, id: &str) -> Result<(), EmulatorError> {
        self.write().delete_opportunity(id)
    }

    /// Makes an opportunity vanish from every endpoint **without** a row in
    /// `/opportunities/deleted` (as if Lever lost track of the deletion): only a full re-read
    /// of the list can notice. Logged in `truth().deleted["opportunities"]`.
    ///
    /// # Panics
    /// If the opportunity does not exist.
    pub fn vanish_opportunity(&self, id: &str) {
        must!(self.try_vanish_opportunity(id));
    }
    /// Fallible [`Emulator::vanish_opportunity`].
    pub fn try_vanish_opportunity(&self, id: &str) -> Result<(), EmulatorError> {
        self.write().vanish_opportunity(id)
    }

    /// Hard-removes a note; bumps the parent's `updatedAt`.
    ///
    /// # Panics
    /// If the opportunity or note does not exist.
    pub fn delete_note(&self, opportunity_id: &str, note_id: &str) {
        must!(self.try_delete_note(opportunity_id, note_id));
    }
    /// Fallible [`Emulator::delete_note`].
    pub fn try_delete_note(
        &self,
        opportunity_id: &str,
        note_id: &str,
    ) -> Result<(), EmulatorError> {
        self.write().delete_note(opportunity_id, note_id)
    }

    /// Hard-removes a feedback form (also from `interview.feedbackForms`); bumps the parent's
    /// `updatedAt`.
    ///
    /// # Panics
    /// If the opportunity or feedback does not exist.
    pub fn delete_feedback(&self, opportunity_id: &str, feedback_id: &str) {
        must!(self.try_delete_feedback(opportunity_id, feedback_id));
    }
    /// Fallible [`Emulator::delete_feedback`].
    pub fn try_delete_feedback(
        &self,
        opportunity_id: &str,
        feedback_id: &str,
    ) -> Result<(), EmulatorError> {
        self.write().delete_feedback(opportunity_id, feedback_id)
    }

    /// Hard-removes a child of an opportunity (a note, feedback form, profile form,
    /// interview, offer, file, resume, referral or panel) **without** bumping the
    /// opportunity's `updatedAt`: only a re-read of its children notices.
    ///
    /// # Panics
    /// If the opportunity or the child does not exist.
    pub fn delete_child_silently(&self, opportunity_id: &str, child_id: &str) {
        must!(self.try_delete_child_silently(opportunity_id, child_id));
    }
    /// Fallible [`Emulator::delete_child_silently`].
    pub fn try_delete_child_silently(
        &self,
        opportunity_id: &str,
        child_id: &str,
    ) -> Result<(), EmulatorError> {
        self.write().delete_child_silently(opportunity_id, child_id)
    }

    /// A realistic spread of `updatedAt`: moves the clock forward by `days` days while
    /// updating a `share` (0–1) of the opportunities, picked evenly over the list order's
    /// permutation by a fixed stride, at instants concentrated towards the end (age =
    /// `days` × u², u uniform: about 14 % of them in the last week of a year). Returns the
    /// ids updated, oldest update first.
    pub fn spread_recent_activity(&self, share: f64, days: i64) -> Vec<String> {
        const DAY: i64 = 86_400_000;
        let ids = self.opportunity_ids_in_list_order();
        let n = ids.len();
        let m = ((n as f64) * share.clamp(0.0, 1.0)).round() as usize;
        if n == 0 || m == 0 {
            return Vec::new();
        }
        // A stride coprime with n visits distinct opportunities spread over the list.
        let stride = (1..)
            .map(|k| 7_919 * k + 1)
            .find(|s| gcd(*s, n) == 1)
            .unwrap_or(1);
        let end = self.now_ms() + days * DAY;
        let mut touched = Vec::with_capacity(m);
        for i in (0..m).rev() {
            let u = (i as f64 + 0.5) / m as f64;
            let at = end - (days as f64 * DAY as f64 * u * u) as i64;
            self.advance_clock(at - self.now_ms());
            let id = &ids[(i * stride) % n];
            self.update_opportunity(id);
            touched.push(id.clone());
        }
        self.advance_clock(end - self.now_ms());
        touched
    }

    /// Sets a user's `deactivatedAt` to now.
    ///
    /// # Panics
    /// If the user does not exist.
    pub fn deactivate_user(&self, id: &str) {
        must!(self.try_deactivate_user(id));
    }
    /// Fallible [`Emulator::deactivate_user`].
    pub fn try_deactivate_user(&self, id: &str) -> Result<(), EmulatorError> {
        self.write().deactivate_user(id)
    }

    /// Removes a lookup object: `kind` is `users`, `postings`, `stages`, `archive_reasons` or
    /// `requisitions`.
    pub fn try_delete_lookup(&self, kind: &'static str, id: &str) -> Result<(), EmulatorError> {
        self.write().delete_lookup(kind, id)
    }

    /// Removes a user from `/users` (even with `includeDeactivated=true`).
    ///
    /// # Panics
    /// If the user does not exist.
    pub fn delete_user(&self, id: &str) {
        must!(self.try_delete_lookup("users", id));
    }
    /// Removes a posting. # Panics if unknown.
    pub fn delete_posting(&self, id: &str) {
        must!(self.try_delete_lookup("postings", id));
    }
    /// Removes a stage. # Panics if unknown.
    pub fn delete_stage(&self, id: &str) {
        must!(self.try_delete_lookup("stages", id));
    }
    /// Removes an archive reason. # Panics if unknown.
    pub fn delete_archive_reason(&self, id: &str) {
        must!(self.try_delete_lookup("archive_reasons", id));
    }
    /// Removes a requisition. # Panics if unknown.
    pub fn delete_requisition(&self, id: &str) {
        must!(self.try_delete_lookup("requisitions", id));
    }

    /// Adds a requisition custom field (`field_type`: text, number, date, dropdown, object)
    /// with id `key`, and gives most live requisitions a value for it (bumping their
    /// `updatedAt`). Returns the field id.
    ///
    /// # Panics
    /// On an invalid key/type or an existing key.
    pub fn add_requisition_field(&self, key: &str, field_type: &str) -> String {
        must!(self.try_add_requisition_field(key, field_type))
    }
    /// Fallible [`Emulator::add_requisition_field`].
    pub fn try_add_requisition_field(
        &self,
        key: &str,
        field_type: &str,
    ) -> Result<String, EmulatorError> {
        self.write().add_requisition_field(key, field_type)
    }

    /// Changes `fraction` of the live opportunities (about 10 % of them deleted, the rest get a
    /// note, feedback, stage change or field update) and creates `ceil(10 %)` as many new ones.
    /// Deterministic for a given `seed` and state.
    pub fn mutate_fraction(&self, fraction: f64, seed: u64) -> MutationSummary {
        self.write().mutate_fraction(fraction, seed)
    }

    /// Renders one `/opportunities?expand=applications&confidentiality=all` page of `limit`
    /// items starting at record `pos` without HTTP (benchmarks). Returns the number of items
    /// and of serialized bytes.
    pub fn render_page(&self, pos: usize, limit: usize) -> (usize, usize) {
        let f = server::OppFilter {
            updated: (None, None),
            created: (None, None),
            archived: None,
            conf: state::Conf::All,
        };
        let expand = state::Expand {
            applications: true,
            ..state::Expand::default()
        };
        let (page, _) =
            server::opportunity_page(&self.read(), &f, expand, ListOrder::Insertion, pos, limit);
        let bytes = serde_json::to_vec(&page).map_or(0, |b| b.len());
        (page.len(), bytes)
    }
}

/// Greatest common divisor.
fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}
