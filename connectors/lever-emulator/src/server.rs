//! HTTP routes of the Lever Data API v1 (`/v1/...`), the OAuth token route and the shared
//! request pipeline (auth → rate limit → latency → fault injection → handler → counters).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::Inner;
use crate::auth::Credential;
use crate::data::{self, OppRec};
use crate::limits::Fault;
use crate::respond::{error, json_response};
use crate::rng::{hash, hash_str};
use crate::state::{Conf, Expand, ListOrder, State as Data};

/// Child endpoints of `/opportunities/:id/...`.
pub(crate) const CHILD_KINDS: [&str; 10] = [
    "applications",
    "feedback",
    "notes",
    "offers",
    "interviews",
    "panels",
    "forms",
    "files",
    "resumes",
    "referrals",
];

/// A rejected request: Lever's error body with a status. Small, so `Result`s stay cheap.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: u16,
    code: &'static str,
    message: String,
}

impl From<ApiError> for Response {
    fn from(e: ApiError) -> Self {
        error(e.status, e.code, e.message)
    }
}

pub(crate) fn not_found_body(what: &str) -> ApiError {
    ApiError {
        status: 404,
        code: "ResourceNotFound",
        message: format!("{what} not found"),
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError {
        status: 400,
        code: "BadRequestError",
        message: message.into(),
    }
}

fn forbidden_confidential() -> ApiError {
    ApiError {
        status: 403,
        code: "ForbiddenError",
        message: "This API key does not have access to confidential data".into(),
    }
}

/// All routes.
pub(crate) fn router(inner: Arc<Inner>) -> Router {
    let mut v1 = Router::new()
        .route("/opportunities", get(list_opportunities))
        .route("/opportunities/deleted", get(list_deleted))
        .route("/opportunities/{id}", get(get_opportunity))
        .route("/postings", get(list_postings))
        .route("/postings/{id}", get(get_posting))
        .route("/postings/{id}/apply", get(posting_apply))
        .route("/users", get(list_users))
        .route("/users/{id}", get(get_user))
        .route("/stages", get(|s, c, q| simple_list(s, c, q, "stages")))
        .route(
            "/archive_reasons",
            get(|s, c, q| simple_list(s, c, q, "archive_reasons")),
        )
        .route("/sources", get(|s, c, q| simple_list(s, c, q, "sources")))
        .route("/tags", get(|s, c, q| simple_list(s, c, q, "tags")))
        .route("/requisitions", get(list_requisitions))
        .route(
            "/requisition_fields",
            get(|s, c, q| simple_list(s, c, q, "requisition_fields")),
        )
        .route(
            "/feedback_templates",
            get(|s, c, q| simple_list(s, c, q, "feedback_templates")),
        )
        .route(
            "/form_templates",
            get(|s, c, q| simple_list(s, c, q, "form_templates")),
        );
    for kind in CHILD_KINDS {
        v1 = v1.route(
            &format!("/opportunities/{{id}}/{kind}"),
            get(move |s, c, p, q| list_child(s, c, p, q, kind)),
        );
    }
    let v1 = v1
        .route_layer(from_fn_with_state(inner.clone(), pipeline))
        .with_state(inner.clone());
    Router::new()
        .nest("/v1", v1)
        .route("/oauth/token", post(oauth_token))
        .route("/oauth/authorize", get(oauth_authorize))
        .nest("/admin", crate::admin::router(inner.clone()))
        .fallback(unmatched)
        .with_state(inner)
}

async fn unmatched(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let key = format!("{} {}", req.method(), "UNMATCHED");
    lock(&inner.counters).record(&key, 404, false, false);
    error(
        404,
        "ResourceNotFound",
        format!("Unknown route {} {}", req.method(), req.uri().path()),
    )
}

pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read(inner: &Inner) -> std::sync::RwLockReadGuard<'_, Data> {
    inner
        .state
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The request pipeline of every data route; every answer carries the logical clock as its
/// `Date` header (as Lever's answers carry its clock).
async fn pipeline(State(inner): State<Arc<Inner>>, req: Request, next: Next) -> Response {
    let mut resp = serve_data(inner.clone(), req, next).await;
    let now_ms = read(&inner).clock;
    if let Ok(v) = HeaderValue::from_str(&http_date(now_ms)) {
        resp.headers_mut().insert(header::DATE, v);
    }
    resp
}

/// Formats epoch milliseconds as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub(crate) fn http_date(ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = ms.div_euclid(1000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Counts a request as in flight (inside its added latency) while it lives, and records the
/// peak in the counters.
struct InFlight<'a>(&'a Inner);

impl<'a> InFlight<'a> {
    fn enter(inner: &'a Inner) -> InFlight<'a> {
        let now = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let mut c = lock(&inner.counters);
        c.max_in_flight = c.max_in_flight.max(now);
        InFlight(inner)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Authentication, rate limit, latency and fault injection, then the handler.
async fn serve_data(inner: Arc<Inner>, req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_string(), |m| m.as_str().to_string());
    let endpoint = format!(
        "{} {}",
        req.method(),
        path.trim_start_matches("/v1").replace("{id}", ":id")
    );
    let now = Instant::now();
    let auth_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let cred = match lock(&inner.auth).authenticate(auth_header.as_deref(), now) {
        Ok(c) => c,
        Err(f) => {
            lock(&inner.counters).record(&endpoint, 401, false, false);
            return error(401, "UnauthorizedError", f.message());
        }
    };
    let (rate, latency, faults) = {
        let rt = lock(&inner.runtime);
        (rt.rate_limit, rt.latency, rt.faults)
    };
    if let Some(rl) = rate
        && !lock(&inner.limiter).allow(&cred.bucket, &rl, now)
    {
        lock(&inner.counters).record(&endpoint, 429, false, false);
        return error(
            429,
            "TooManyRequests",
            "Rate limit exceeded, retry later with exponential backoff",
        );
    }
    if !latency.is_zero() {
        let _in_flight = InFlight::enter(&inner);
        tokio::time::sleep(latency).await;
    }
    let seq = inner.fault_seq.fetch_add(1, Ordering::Relaxed);
    let fault = faults.decide(seq);
    if let Some(Fault::Status(code)) = fault {
        lock(&inner.counters).record(&endpoint, code, true, false);
        return if code == 503 {
            error(
                503,
                "ServiceUnavailable",
                "Lever is down for maintenance (injected)",
            )
        } else {
            error(
                500,
                "InternalServerError",
                "Internal server error (injected)",
            )
        };
    }
    let mut req = req;
    req.extensions_mut().insert(cred);
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    if fault == Some(Fault::Drop) {
        lock(&inner.counters).record(&endpoint, status, true, true);
        return truncate(resp).await;
    }
    lock(&inner.counters).record(&endpoint, status, false, false);
    resp
}

/// Sends the first half of the body, then fails the stream so the connection is cut.
async fn truncate(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let half = bytes.slice(0..bytes.len() / 2);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(half),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "injected connection drop",
        )),
    ];
    Response::from_parts(parts, Body::from_stream(futures::stream::iter(chunks)))
}

// ---------------------------------------------------------------------------------------------
// query parameters and offset tokens

/// Parsed query string (repeated keys kept; `key[]` treated as `key`).
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(q: Option<&str>) -> Self {
        Self(
            url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.trim_end_matches("[]").to_string(), v.into_owned()))
                .collect(),
        )
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
    fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    fn fingerprint(&self, route: &str) -> u64 {
        let mut pairs: Vec<_> = self.0.iter().filter(|(k, _)| k != "offset").collect();
        pairs.sort();
        let text = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        hash(&[hash_str(route), hash_str(&text)])
    }
    fn limit(&self) -> Result<usize, ApiError> {
        match self.get("limit") {
            None => Ok(100),
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => Ok(n),
                _ => Err(bad_request(format!(
                    "Invalid value for limit: {s:?} (must be an integer between 1 and 100)"
                ))),
            },
        }
    }
    fn ts(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(s) => s.parse::<i64>().map(Some).map_err(|_| {
                bad_request(format!(
                    "Invalid value for {k}: {s:?} (expected epoch milliseconds)"
                ))
            }),
        }
    }
    fn window(&self, prefix: &str) -> Result<(Option<i64>, Option<i64>), ApiError> {
        Ok((
            self.ts(&format!("{prefix}_start"))?,
            self.ts(&format!("{prefix}_end"))?,
        ))
    }
    fn bool(&self, k: &str) -> Result<Option<bool>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(s) => Err(bad_request(format!(
                "Invalid value for {k}: {s:?} (expected true or false)"
            ))),
        }
    }
    fn conf(&self, cred: &Credential) -> Result<Conf, ApiError> {
        let c = match self.get("confidentiality") {
            None | Some("non-confidential") => Conf::NonConfidential,
            Some("confidential") => Conf::Confidential,
            Some("all") => Conf::All,
            Some(s) => {
                return Err(bad_request(format!(
                    "Invalid value for confidentiality: {s:?}"
                )));
            }
        };
        if c != Conf::NonConfidential && !cred.confidential {
            return Err(forbidden_confidential());
        }
        Ok(c)
    }
}

fn in_window(v: Option<i64>, w: (Option<i64>, Option<i64>)) -> bool {
    if w.0.is_none() && w.1.is_none() {
        return true;
    }
    match v {
        None => false,
        Some(t) => w.0.is_none_or(|s| t >= s) && w.1.is_none_or(|e| t <= e),
    }
}

const TOKEN_MAGIC: u64 = 0x000F_F5E7;

fn encode_token(inner: &Inner, fingerprint: u64, pos: usize) -> String {
    let epoch = inner.token_epoch.load(Ordering::SeqCst);
    let issued = inner.started.elapsed().as_millis() as u64;
    let payload = format!("{epoch}.{issued}.{pos}.{fingerprint:x}");
    let mac = hash(&[inner.seed, TOKEN_MAGIC, hash_str(&payload)]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{payload}.{mac:x}"))
}

fn decode_token(inner: &Inner, token: &str, fingerprint: u64) -> Result<usize, ApiError> {
    let invalid = || bad_request("Invalid offset token");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid())?;
    let text = String::from_utf8(raw).map_err(|_| invalid())?;
    let (payload, mac) = text.rsplit_once('.').ok_or_else(invalid)?;
    if format!("{:x}", hash(&[inner.seed, TOKEN_MAGIC, hash_str(payload)])) != mac {
        return Err(invalid());
    }
    let parts: Vec<&str> = payload.split('.').collect();
    let [epoch, issued, pos, fp] = parts[..] else {
        return Err(invalid());
    };
    let epoch: u64 = epoch.parse().map_err(|_| invalid())?;
    let issued: u64 = issued.parse().map_err(|_| invalid())?;
    let pos: usize = pos.parse().map_err(|_| invalid())?;
    if fp != format!("{fingerprint:x}") {
        return Err(bad_request(
            "Invalid offset token: it was issued for different query parameters",
        ));
    }
    let ttl = lock(&inner.runtime).offset_token_ttl.as_millis() as u64;
    let age = (inner.started.elapsed().as_millis() as u64).saturating_sub(issued);
    if epoch != inner.token_epoch.load(Ordering::SeqCst) || age > ttl {
        return Err(bad_request(
            "Invalid offset token: the token has expired, restart the listing without offset",
        ));
    }
    Ok(pos)
}

fn start_pos(inner: &Inner, p: &Params, fp: u64) -> Result<usize, ApiError> {
    match p.get("offset") {
        None | Some("") => Ok(0),
        Some(t) => decode_token(inner, t, fp),
    }
}

fn envelope(inner: &Inner, data: Vec<Value>, next: Option<usize>, fp: u64) -> Response {
    let mut body = json!({"data": data, "hasNext": next.is_some()});
    if let Some(pos) = next {
        body["next"] = json!(encode_token(inner, fp, pos));
    }
    json_response(200, &body)
}

/// Pages an in-memory list.
fn page_list(inner: &Inner, p: &Params, route: &str, items: Vec<Value>) -> Response {
    let fp = p.fingerprint(route);
    let (limit, pos) = match (p.limit(), start_pos(inner, p, fp)) {
        (Ok(l), Ok(s)) => (l, s),
        (Err(e), _) | (_, Err(e)) => return e.into(),
    };
    let end = (pos + limit).min(items.len());
    let page = items.get(pos.min(items.len())..end).unwrap_or(&[]).to_vec();
    envelope(inner, page, (end < items.len()).then_some(end), fp)
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Response::from(e),
        }
    };
}

// ---------------------------------------------------------------------------------------------
// handlers

type S = State<Arc<Inner>>;
type C = Extension<Credential>;
type Q = RawQuery;

fn expand_of(p: &Params) -> Expand {
    let mut e = Expand::default();
    for v in p.all("expand") {
        for v in v.split(',') {
            match v.trim() {
                "applications" => e.applications = true,
                "stage" => e.stage = true,
                "owner" => e.owner = true,
                "followers" => e.followers = true,
                "sourcedBy" => e.sourced_by = true,
                "contact" => e.contact = true,
                _ => {}
            }
        }
    }
    e
}

/// Filters of `/opportunities`.
pub(crate) struct OppFilter {
    pub(crate) updated: (Option<i64>, Option<i64>),
    pub(crate) created: (Option<i64>, Option<i64>),
    pub(crate) archived: Option<bool>,
    pub(crate) conf: Conf,
}

impl OppFilter {
    pub(crate) fn admits(&self, r: &OppRec) -> bool {
        r.deleted.is_none()
            && self.conf.admits(r.confidential())
            && in_window(r.updated_at, self.updated)
            && in_window(Some(r.created_at), self.created)
            && self.archived.is_none_or(|a| a == r.archived.is_some())
    }
}

/// Renders one page of `/opportunities` (also used by the benchmark).
pub(crate) fn opportunity_page(
    st: &Data,
    f: &OppFilter,
    expand: Expand,
    order: ListOrder,
    pos: usize,
    limit: usize,
) -> (Vec<Value>, Option<usize>) {
    let mut out = Vec::with_capacity(limit);
    let mut i = pos;
    while let Some(rec) = st.rec_at(order, i)
        && out.len() < limit
    {
        if f.admits(rec) {
            out.push(st.opportunity_json(rec, expand));
        }
        i += 1;
    }
    let more = (i..st.recs.len()).any(|p| st.rec_at(order, p).is_some_and(|r| f.admits(r)));
    (out, more.then_some(i))
}

async fn list_opportunities(State(inner): S, Extension(cred): C, RawQuery(q): Q) -> Response {
    let p = Params::parse(q.as_deref());
    let fp = p.fingerprint("opportunities");
    let limit = tri!(p.limit());
    let pos = tri!(start_pos(&inner, &p, fp));
    let f = OppFilter {
        updated: tri!(p.window("updated_at")),
        created: tri!(p.window("created_at")),
        archived: tri!(p.bool("archived")),
        conf: tri!(p.conf(&cred)),
    };
    let emu = crate::Emulator {
        inner: inner.clone(),
    };
    emu.run_list_hook();
    let order = lock(&inner.runtime).list_order;
    let (page, next) = opportunity_page(&read(&inner), &f, expand_of(&p), order, pos, limit);
    envelope(&inner, page, next, fp)
}

async fn list_deleted(State(inner): S, Extension(_cred): C, RawQuery(q): Q) -> Response {
    let p = Params::parse(q.as_deref());
    let w = tri!(p.window("deleted_at"));
    let items = deleted_rows(&read(&inner))
        .into_iter()
        .filter(|v| in_window(v["deletedAt"].as_i64(), w))
        .collect();
    page_list(&inner, &p, "opportunities/deleted", items)
}

/// Rows of `/opportunities/deleted`.
pub(crate) fn deleted_rows(st: &Data) -> Vec<Value> {
    st.recs
        .iter()
        .filter(|r| !st.vanished.contains(&r.index))
        .filter_map(|r| {
            r.deleted.map(|(at, by)| json!({"id": data::opp_id(st.seed, r.index), "deletedAt": at, "deletedBy": st.lk.user_id(by as usize)}))
        })
        .collect()
}

fn visible_opp<'a>(st: &'a Data, id: &str, cred: &Credential) -> Result<&'a OppRec, ApiError> {
    let rec = st.opp(id).ok_or_else(|| not_found_body("Opportunity"))?;
    if rec.confidential() && !cred.confidential {
        return Err(forbidden_confidential());
    }
    Ok(rec)
}

async fn get_opportunity(
    State(inner): S,
    Extension(cred): C,
    Path(id): Path<String>,
    RawQuery(q): Q,
) -> Response {
    let p = Params::parse(q.as_deref());
    let st = read(&inner);
    let rec = tri!(visible_opp(&st, &id, &cred));
    json_response(
        200,
        &json!({"data": st.opportunity_json(rec, expand_of(&p))}),
    )
}

/// The list served by `/opportunities/:id/<kind>` for a live opportunity.
pub(crate) fn child_list(st: &Data, rec: &OppRec, kind: &str) -> Vec<Value> {
    if kind == "applications" {
        return st.applications(rec);
    }
    let ch = st.children(rec);
    match kind {
        "feedback" => ch.feedback,
        "notes" => ch.notes,
        "offers" => ch.offers,
        "interviews" => ch.interviews,
        "panels" => ch.panels,
        "forms" => ch.forms,
        "files" => ch.files,
        "resumes" => ch.resumes,
        _ => ch.referrals,
    }
}

async fn list_child(
    State(inner): S,
    Extension(cred): C,
    Path(id): Path<String>,
    RawQuery(q): Q,
    kind: &'static str,
) -> Response {
    let p = Params::parse(q.as_deref());
    let items = {
        let st = read(&inner);
        let rec = tri!(visible_opp(&st, &id, &cred));
        let mut items = child_list(&st, rec, kind);
        if matches!(kind, "files" | "resumes") {
            let w = tri!(p.window("uploaded_at"));
            items.retain(|v| {
                let t = v["uploadedAt"]
                    .as_i64()
                    .or_else(|| v["file"]["uploadedAt"].as_i64())
                    .or_else(|| v["createdAt"].as_i64());
                in_window(t, w)
            });
        }
        items
    };
    page_list(&inner, &p, &format!("opportunities/{id}/{kind}"), items)
}

fn live(items: &[data::Item]) -> impl Iterator<Item = &Value> {
    items.iter().filter(|i| !i.deleted).map(|i| &i.value)
}

async fn list_postings(State(inner): S, Extension(cred): C, RawQuery(q): Q) -> Response {
    let p = Params::parse(q.as_deref());
    let conf = tri!(p.conf(&cred));
    let states = p.all("state");
    let updated = tri!(p.window("updated_at"));
    let items = live(&read(&inner).lk.postings)
        .filter(|v| conf.admits(v["confidentiality"] == "confidential"))
        .filter(|v| states.is_empty() || states.iter().any(|s| v["state"] == *s))
        .filter(|v| in_window(v["updatedAt"].as_i64(), updated))
        .cloned()
        .collect();
    page_list(&inner, &p, "postings", items)
}

fn find_posting(st: &Data, id: &str, cred: &Credential) -> Result<usize, ApiError> {
    let i = st
        .lk
        .postings
        .iter()
        .position(|x| !x.deleted && x.id() == id)
        .ok_or_else(|| not_found_body("Posting"))?;
    if st.lk.posting_confidential(i) && !cred.confidential {
        return Err(forbidden_confidential());
    }
    Ok(i)
}

async fn get_posting(State(inner): S, Extension(cred): C, Path(id): Path<String>) -> Response {
    let st = read(&inner);
    let i = tri!(find_posting(&st, &id, &cred));
    json_response(200, &json!({"data": st.lk.postings[i].value}))
}

async fn posting_apply(State(inner): S, Extension(cred): C, Path(id): Path<String>) -> Response {
    let st = read(&inner);
    let i = tri!(find_posting(&st, &id, &cred));
    json_response(200, &json!({"data": data::apply_form(&st.lk, i)}))
}

async fn list_users(State(inner): S, Extension(_cred): C, RawQuery(q): Q) -> Response {
    let p = Params::parse(q.as_deref());
    let include_deactivated = tri!(p.bool("includeDeactivated")).unwrap_or(false);
    let email = p.get("email").map(str::to_lowercase);
    let items = live(&read(&inner).lk.users)
        .filter(|u| include_deactivated || u["deactivatedAt"].is_null())
        .filter(|u| email.as_deref().is_none_or(|e| u["email"] == e))
        .cloned()
        .collect();
    page_list(&inner, &p, "users", items)
}

async fn get_user(State(inner): S, Extension(_cred): C, Path(id): Path<String>) -> Response {
    let st = read(&inner);
    match live(&st.lk.users).find(|u| u["id"] == id.as_str()) {
        Some(u) => json_response(200, &json!({"data": u})),
        None => not_found_body("User").into(),
    }
}

async fn list_requisitions(State(inner): S, Extension(cred): C, RawQuery(q): Q) -> Response {
    let p = Params::parse(q.as_deref());
    let conf = tri!(p.conf(&cred));
    let created = tri!(p.window("created_at"));
    let status = p.get("status").map(str::to_string);
    let code = p.get("requisition_code").map(str::to_string);
    let items = live(&read(&inner).lk.requisitions)
        .filter(|v| conf.admits(v["confidentiality"] == "confidential"))
        .filter(|v| in_window(v["createdAt"].as_i64(), created))
        .filter(|v| status.as_deref().is_none_or(|s| v["status"] == s))
        .filter(|v| code.as_deref().is_none_or(|s| v["requisitionCode"] == s))
        .cloned()
        .collect();
    page_list(&inner, &p, "requisitions", items)
}

/// The content of a small lookup list as served.
pub(crate) fn lookup_list(st: &Data, kind: &str) -> Vec<Value> {
    let lk = &st.lk;
    match kind {
        "stages" => live(&lk.stages).cloned().collect(),
        "archive_reasons" => live(&lk.archive_reasons).cloned().collect(),
        "sources" => st.text_counts(false),
        "tags" => st.text_counts(true),
        "requisition_fields" => live(&lk.requisition_fields).cloned().collect(),
        "feedback_templates" => live(&lk.feedback_templates).cloned().collect(),
        _ => live(&lk.form_templates).cloned().collect(),
    }
}

async fn simple_list(
    State(inner): S,
    Extension(_cred): C,
    RawQuery(q): Q,
    kind: &'static str,
) -> Response {
    let p = Params::parse(q.as_deref());
    let mut items = lookup_list(&read(&inner), kind);
    if kind == "archive_reasons"
        && let Some(t) = p.get("type")
    {
        items.retain(|v| v["type"] == t);
    }
    page_list(&inner, &p, kind, items)
}

async fn oauth_token(State(inner): S, Form(form): Form<HashMap<String, String>>) -> Response {
    let ttl = inner.access_token_ttl;
    let result = lock(&inner.auth).token(&form, ttl, Instant::now());
    let resp = match result {
        Ok(t) => json_response(200, &serde_json::to_value(t).unwrap_or_default()),
        Err((status, err, desc)) => {
            json_response(status, &json!({"error": err, "error_description": desc}))
        }
    };
    lock(&inner.counters).record("POST /oauth/token", resp.status().as_u16(), false, false);
    resp
}

/// `GET /oauth/authorize`: Lever's consent page, approved at once (the account's admin always
/// says yes): redirects to `redirect_uri` with a one-time `code` and the caller's `state`, for
/// the `authorization_code` grant. The code carries confidential access when the scope asks
/// for `confidential:access:admin`.
async fn oauth_authorize(State(inner): S, RawQuery(q): RawQuery) -> Response {
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    let resp = if get("response_type") != "code" {
        json_response(
            400,
            &json!({"error": "unsupported_response_type", "error_description": "response_type must be code"}),
        )
    } else if let Ok(mut redirect) = url::Url::parse(get("redirect_uri")) {
        let confidential = get("scope")
            .split(' ')
            .any(|s| s == "confidential:access:admin");
        match lock(&inner.auth).issue_code(get("client_id"), confidential) {
            Some(code) => {
                redirect
                    .query_pairs_mut()
                    .append_pair("code", &code)
                    .append_pair("state", get("state"));
                let mut r = Response::new(Body::empty());
                *r.status_mut() = StatusCode::FOUND;
                if let Ok(v) = HeaderValue::from_str(redirect.as_str()) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                r
            }
            None => json_response(
                400,
                &json!({"error": "invalid_client", "error_description": "Unknown client_id"}),
            ),
        }
    } else {
        json_response(
            400,
            &json!({"error": "invalid_request", "error_description": "redirect_uri is not a URL"}),
        )
    };
    lock(&inner.counters).record("GET /oauth/authorize", resp.status().as_u16(), false, false);
    resp
}
