//! The status page at `/`: server-rendered HTML, no script, no build step. It lists the
//! connections with their schedule, last run and rows per table, with a "Sync now" button.
//!
//! Browsers cannot send a bearer header, so the page takes the API token once as `?token=`
//! and keeps it in an `HttpOnly`, `SameSite=Strict` cookie (which also keeps other sites from
//! pressing the button).

use crate::api::AppState;
use crate::model::{Connection, Run, Trigger};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use std::fmt::Write;

const COOKIE: &str = "sluice_token";

/// The page's routes.
pub fn router(_: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(index).post(login_post))
        .route("/ui/connections/{id}/sync", post(sync_now))
}

/// Query of the page.
#[derive(Debug, serde::Deserialize)]
struct PageQuery {
    token: Option<String>,
}

fn authenticated(state: &AppState, headers: &HeaderMap) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_some_and(|t| state.token_ok(t.trim())) {
        return true;
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .any(|(k, v)| k == COOKIE && state.token_ok(v))
}

async fn index(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    if let Some(token) = q.token {
        if !state.token_ok(&token) {
            return login(StatusCode::UNAUTHORIZED, "That is not the API token.");
        }
        return sign_in(&state, &token);
    }
    if !authenticated(&state, &headers) {
        return login(StatusCode::UNAUTHORIZED, "Enter the API token.");
    }
    let connections = match state
        .store
        .connections()
        .map_err(crate::error::ApiError::from)
        .and_then(|cs| {
            cs.iter()
                .map(|c| {
                    let view = state.view(c)?;
                    let finished = match &view.last_run {
                        Some(r) if r.status.is_final() => Some(r.clone()),
                        _ => state
                            .store
                            .runs(&c.id, 20)?
                            .into_iter()
                            .find(|r| r.status.is_final()),
                    };
                    Ok((view, finished))
                })
                .collect::<Result<Vec<_>, crate::error::ApiError>>()
        }) {
        Ok(c) => c,
        Err(e) => return (e.status(), Html(escape(e.message()))).into_response(),
    };
    Html(render(&connections)).into_response()
}

async fn sync_now(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !authenticated(&state, &headers) {
        return login(StatusCode::UNAUTHORIZED, "Enter the API token.");
    }
    match state.runner.start(&id, Trigger::Manual, Vec::new()) {
        Ok(_) => Redirect::to("/").into_response(),
        Err(e) => (
            e.status(),
            Html(shell(&format!(
                "<p class=\"error\">{}</p><p><a href=\"/\">Back</a></p>",
                escape(e.message())
            ))),
        )
            .into_response(),
    }
}

/// The login form's post: the token travels in the body, never in a URL.
async fn login_post(
    State(state): State<AppState>,
    axum::Form(q): axum::Form<PageQuery>,
) -> Response {
    match q.token {
        Some(token) => sign_in(&state, &token),
        None => login(StatusCode::UNAUTHORIZED, "Enter the API token."),
    }
}

/// Checks the token and keeps it in the page's cookie (`Secure` when the public URL is
/// https).
fn sign_in(state: &AppState, token: &str) -> Response {
    if !state.token_ok(token) {
        return login(StatusCode::UNAUTHORIZED, "That is not the API token.");
    }
    let secure = if state.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/{secure}");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

fn login(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<p>{}</p><form method=\"post\" action=\"/\"><input type=\"password\" name=\"token\" aria-label=\"API token\"> <button type=\"submit\">Open</button></form>",
        escape(message)
    );
    (status, Html(shell(&body))).into_response()
}

fn shell(body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"10\"><title>sluice</title>\
<style>body{{font:14px system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}\
.succeeded{{color:#070}}.failed,.error{{color:#b00}}.running,.queued{{color:#05a}}small{{color:#666}}</style></head>\
<body><h1>sluice</h1>\n{body}\n</body></html>\n"
    )
}

/// The page body for `connections`, each with its newest finished run (whose rows per table
/// the page shows while a newer run is queued or running).
pub fn render(connections: &[(Connection, Option<Run>)]) -> String {
    let mut out = String::new();
    if connections.is_empty() {
        out.push_str("<p>No connections yet: create one with <code>POST /v1/connections</code> (see docs/api.md).</p>");
        return shell(&out);
    }
    out.push_str("<table id=\"connections\"><thead><tr><th>Connection</th><th>Schedule</th><th>Last run</th><th>Rows of the last finished run</th><th></th></tr></thead><tbody>\n");
    for (c, finished) in connections {
        let schedule = if c.schedule.paused {
            format!("every {} min, <b>paused</b>", c.schedule.every_minutes)
        } else {
            format!(
                "every {} min<br><small>next {}</small>",
                c.schedule.every_minutes,
                c.next_run_at.map(time).unwrap_or_default()
            )
        };
        let mut rows = String::new();
        for (t, n) in finished.iter().flat_map(|r| &r.tables) {
            if n.inserted + n.updated + n.deleted > 0 {
                let _ = write!(
                    rows,
                    "{}: +{} ~{} -{}<br>",
                    escape(t),
                    n.inserted,
                    n.updated,
                    n.deleted
                );
            }
        }
        let last = match &c.last_run {
            None => "never".to_owned(),
            Some(r) => {
                let when = r.ended_at.or(r.started_at).unwrap_or(r.queued_at);
                let mut last = format!(
                    "<span class=\"status {0}\">{0}</span><br><small>{1}</small>",
                    r.status.as_str(),
                    time(when)
                );
                if let Some(m) = &r.error_message {
                    let _ = write!(last, "<br><small class=\"error\">{}</small>", escape(m));
                }
                last
            }
        };
        let _ = writeln!(
            out,
            "<tr data-connection=\"{id}\"><td><b>{name}</b><br><small>{id}<br>{source} → {sink} {dest}</small></td><td>{schedule}</td><td>{last}</td><td><small>{rows}</small></td>\
<td><form method=\"post\" action=\"/ui/connections/{id}/sync\"><button type=\"submit\"{disabled}>Sync now</button></form></td></tr>",
            id = escape(&c.id),
            name = escape(&c.name),
            source = escape(&c.source),
            sink = escape(&c.sink),
            dest = escape(&c.destination),
            disabled = if c.running { " disabled" } else { "" },
        );
    }
    out.push_str("</tbody></table>");
    shell(&out)
}

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Epoch ms as `YYYY-MM-DD HH:MM:SS UTC`.
fn time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_escaping() {
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(1_700_000_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(
            escape("<a href='x'>&</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    fn run(status: &str, inserted: u64) -> Run {
        serde_json::from_value(serde_json::json!({
            "id": format!("run_{status}"), "connection_id": "conn_a", "status": status,
            "trigger": "schedule", "resync": [], "queued_at": 0, "started_at": null,
            "ended_at": null, "requests": 0, "requests_by_endpoint": {},
            "responses_by_status": {}, "throttled": 0, "bytes_written": 0,
            "error_kind": null, "error_message": null,
            "tables": {"opportunity": {"received": inserted, "inserted": inserted,
                                       "updated": 0, "deleted": 0}},
        }))
        .unwrap()
    }

    #[test]
    fn rows_come_from_the_newest_finished_run_while_another_runs() {
        let c = Connection {
            id: "conn_a".into(),
            name: "a".into(),
            source: "lever".into(),
            sink: "parquet".into(),
            destination: "/lake".into(),
            source_settings: Default::default(),
            sink_settings: Default::default(),
            schedule: crate::model::Schedule {
                every_minutes: 5,
                paused: false,
            },
            credentials: Default::default(),
            authorized: true,
            running: true,
            next_run_at: None,
            last_run: Some(run("running", 0)),
            created_at: 0,
            updated_at: 0,
            notice: None,
        };
        let page = render(&[(c, Some(run("succeeded", 7)))]);
        assert!(page.contains("opportunity: +7 ~0 -0"), "{page}");
        assert!(page.contains(">running<"), "{page}");
    }
}
