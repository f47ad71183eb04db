//! Shared helpers.

use serde_json::Value;
use sluice_lever_emulator::{Emulator, EmulatorConfig, ServerHandle};

pub(crate) struct Env {
    pub(crate) emu: Emulator,
    pub(crate) server: ServerHandle,
    pub(crate) client: reqwest::Client,
    pub(crate) key: String,
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub(crate) async fn env(config: EmulatorConfig) -> Env {
    let emu = Emulator::new(config);
    let server = emu.start().await.unwrap();
    let key = emu.api_key();
    Env {
        emu,
        server,
        client: client(),
        key,
    }
}

/// Small dataset, no rate limit.
pub(crate) async fn small() -> Env {
    env(EmulatorConfig {
        opportunities: 60,
        rate_limit: None,
        ..EmulatorConfig::default()
    })
    .await
}

impl Env {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base_url())
    }

    /// GET with a given API key (`None`: no auth); returns status and body.
    pub(crate) async fn get_as(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut req = self.client.get(self.url(path));
        if let Some(k) = key {
            req = req.basic_auth(k, Some(""));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let key = self.key.clone();
        self.get_as(path, Some(&key)).await
    }

    /// Follows `next` until `hasNext` is false; returns all items and the number of pages.
    pub(crate) async fn walk_as(&self, path: &str, key: &str) -> (Vec<Value>, usize) {
        let mut items = Vec::new();
        let mut offset: Option<String> = None;
        let mut pages = 0;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let p = match &offset {
                Some(o) => format!("{path}{sep}offset={o}"),
                None => path.to_string(),
            };
            let (status, body) = self.get_as(&p, Some(key)).await;
            assert_eq!(status, 200, "{p}: {body}");
            pages += 1;
            items.extend(body["data"].as_array().unwrap().iter().cloned());
            if body["hasNext"] == true {
                offset = Some(body["next"].as_str().unwrap().to_string());
            } else {
                assert!(body.get("next").is_none());
                break;
            }
            assert!(pages < 10_000);
        }
        (items, pages)
    }

    pub(crate) async fn walk(&self, path: &str) -> Vec<Value> {
        let key = self.key.clone();
        self.walk_as(path, &key).await.0
    }

    pub(crate) async fn stop(self) {
        self.server.shutdown().await;
    }
}

pub(crate) fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|v| v["id"].as_str().unwrap_or_default().to_string())
        .collect()
}
