//! What a power loss or a failed step can leave behind, and the manifest format gate: a torn
//! newest manifest falls back to the one before it, anything else unreadable fails clearly,
//! a newer format is refused, and the Delta sink keeps the files its published log names.

use crate::common::*;
use crate::hooks::{HookStore, PutHook, injected};
use futures::FutureExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use sluice_core::{ErrorKind, Sink};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

both!(
    a_manifest_of_a_newer_format_is_refused,
    superseded_files_stay_while_the_delta_log_is_unpublished,
);

/// Records the messages of warnings and errors (a minimal `tracing` subscriber).
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl tracing::Subscriber for Warnings {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Commits states 1..=n, one row each.
async fn commits(lake: &Lake, n: i64) {
    for i in 1..=n {
        let mut s = lake.sink();
        s.open(&specs()).await.unwrap();
        let id = format!("k{i}");
        s.write(stamp(opp_rows("opp", &[(id.as_str(), "K", i)]), T1 + i))
            .await
            .unwrap();
        s.commit(&state(i)).await.unwrap();
        s.close().await.unwrap();
    }
}

/// Turns a manifest's bytes into what a power loss left of them.
type Tear = fn(Vec<u8>) -> Vec<u8>;

/// Manifest versions and the bytes to overwrite each with.
type Damage = &'static [(u64, &'static [u8])];

fn manifest_file(lake: &Lake, version: u64) -> std::path::PathBuf {
    let root = lake.tmp.as_ref().unwrap().path().join("lake");
    root.join(format!("_sluice/manifest/{version:020}.json"))
}

/// A newest manifest cut short by a power loss (truncated, empty, zero-filled) is set aside
/// with a warning: the destination opens at the version before it, and the next commit
/// takes the torn one's version number.
#[tokio::test]
async fn a_torn_newest_manifest_falls_back_to_the_previous_one() {
    let warnings = Warnings::default();
    let _guard = tracing::subscriber::set_default(warnings.clone());
    let tear: [(&str, Tear); 3] = [
        ("truncated", |b| b[..b.len() / 2].to_vec()),
        ("empty", |_| Vec::new()),
        ("zero-filled", |b| vec![0; b.len()]),
    ];
    for (i, (how, tear)) in tear.into_iter().enumerate() {
        let lake = Lake::local();
        commits(&lake, 3).await;
        let newest = manifest_file(&lake, 3);
        std::fs::write(&newest, tear(std::fs::read(&newest).unwrap())).unwrap();
        warnings.0.lock().unwrap().clear();

        let r = lake.sink();
        assert_eq!(r.read_state().await.unwrap(), Some(state(2)), "{how}");
        let mut s = lake.sink();
        let st = s
            .open(&specs())
            .await
            .unwrap_or_else(|e| panic!("{how}: {e}"));
        assert_eq!(st, Some(state(2)), "{how}");
        let logged = warnings.0.lock().unwrap().join("\n");
        assert!(
            logged.contains("the newest manifest is cut short")
                && logged.contains("00000000000000000003.json"),
            "{how}: warning naming the manifest: {logged}"
        );
        assert_eq!(scan(&s, &opp()).await.len(), 2, "{how}");
        s.write(stamp(opp_rows("opp", &[("again", "A", 9)]), T2))
            .await
            .unwrap();
        s.commit(&state(30 + i as i64)).await.unwrap();
        s.close().await.unwrap();
        assert_eq!(
            lake.sink().read_state().await.unwrap(),
            Some(state(30 + i as i64)),
            "{how}: the next commit is version 3"
        );
        assert!(newest.exists(), "{how}");
        assert!(
            newest.with_extension("json.torn").exists(),
            "{how}: kept aside"
        );
        lake.assert_no_orphans(&["opp"]).await;
    }
}

/// Unreadable manifests that are not the shape of a torn write, or with nothing to fall back
/// to, fail clearly (a one-line destination error naming the manifest) and change nothing.
#[tokio::test]
async fn unreadable_manifests_without_a_safe_fallback_fail_clearly() {
    let cases: [(&str, u64, Damage); 4] = [
        (
            "the only manifest, torn",
            1,
            &[(1, b"{\"format\": 1, \"ver")],
        ),
        (
            "complete but garbage",
            3,
            &[(3, b"{\"format\": 1} trailing garbage")],
        ),
        (
            "complete but wrong fields",
            3,
            &[(3, b"{\"format\": 1, \"version\": \"x\"}")],
        ),
        (
            "torn, and the one before garbage",
            3,
            &[(3, b""), (2, b"garbage")],
        ),
    ];
    for (what, n, damage) in cases {
        let lake = Lake::local();
        commits(&lake, n as i64).await;
        for (version, bytes) in damage {
            std::fs::write(manifest_file(&lake, *version), bytes).unwrap();
        }
        let mut s = lake.sink();
        let err = s.open(&specs()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Destination, "{what}: {err}");
        let msg = err.to_string();
        assert!(!msg.contains('\n'), "{what}: {msg}");
        assert!(
            msg.contains(&format!("{n:020}.json")),
            "{what}: names the manifest: {msg}"
        );
        assert!(lake.sink().read_state().await.is_err(), "{what}");
        for (version, bytes) in damage {
            assert_eq!(
                &std::fs::read(manifest_file(&lake, *version)).unwrap(),
                bytes,
                "{what}"
            );
        }
    }
}

/// A destination whose newest manifest has a newer format than this build reads is refused
/// with a one-line destination error saying to upgrade; a manifest this build writes has the
/// lowest format that holds it (1 without Delta fields, 4 for a Delta table whose log names
/// its format, which builds reading only format 3 refuse).
async fn a_manifest_of_a_newer_format_is_refused(mut lake: Lake) {
    let format_of = |v: &serde_json::Value| v["format"].as_u64().unwrap();
    commits(&lake, 1).await;
    let dest = lake.dest();
    let path = |v: u64| {
        dest.root
            .clone()
            .join("_sluice")
            .join("manifest")
            .join(format!("{v:020}.json"))
    };
    let read = |p: Path| {
        let store = Arc::clone(&dest.store);
        async move {
            let bytes = store.get(&p).await.unwrap().bytes().await.unwrap();
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
        }
    };
    let mut m = read(path(1)).await;
    assert_eq!(format_of(&m), 1, "plain Parquet tables: format 1");
    m["format"] = 6.into();
    m["version"] = 2.into();
    let body = PutPayload::from(serde_json::to_vec(&m).unwrap());
    dest.store.put(&path(2), body).await.unwrap();
    let mut s = lake.sink();
    let err = s.open(&specs()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Destination);
    let msg = err.to_string();
    assert!(
        msg.contains("newer sluice") && msg.contains("upgrade sluice") && !msg.contains('\n'),
        "{msg}"
    );
    assert!(lake.sink().read_state().await.is_err());
    dest.store.delete(&path(2)).await.unwrap();

    lake = lake.delta();
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    s.write(stamp(opp_rows("opp", &[("k1", "changed", 5)]), T2))
        .await
        .unwrap();
    s.commit(&state(2)).await.unwrap();
    s.close().await.unwrap();
    let m = read(path(2)).await;
    assert_eq!(
        format_of(&m),
        4,
        "a Delta log naming its format, deletion vectors and file statistics: format 4"
    );
}

/// The paths of the live files of `table` according to its published Delta log.
async fn delta_log_files(lake: &Lake, table: &str) -> BTreeSet<String> {
    let dest = lake.dest();
    let mut live = BTreeSet::new();
    let logs: Vec<String> = lake
        .objects(table)
        .await
        .into_iter()
        .filter(|o| o.contains("/_delta_log/") && o.ends_with(".json"))
        .collect();
    for log in logs {
        let bytes = dest
            .store
            .get(&Path::from(log.as_str()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        for line in std::str::from_utf8(&bytes).unwrap().lines() {
            let action: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(p) = action["remove"]["path"].as_str() {
                live.remove(p);
            }
            if let Some(p) = action["add"]["path"].as_str() {
                live.insert(p.to_owned());
            }
        }
    }
    let dir = dest.root.clone().join(table);
    live.into_iter()
        .map(|p| dir.clone().join(p.as_str()).to_string())
        .collect()
}

/// A Delta commit whose log version cannot be published (the manifest committed, then the
/// `_delta_log` put failed) deletes none of the files it superseded: Delta readers still
/// read the last published version, which names them. The next open publishes the version
/// and only then removes them.
async fn superseded_files_stay_while_the_delta_log_is_unpublished(mut lake: Lake) {
    lake = lake.delta();
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    s.write(stamp(opp_rows("opp", &[("a", "A", 1), ("b", "B", 1)]), T1))
        .await
        .unwrap();
    s.commit(&state(1)).await.unwrap();
    s.close().await.unwrap();
    let first: BTreeSet<String> = lake
        .objects("opp")
        .await
        .into_iter()
        .filter(|o| o.ends_with(".parquet"))
        .collect();
    assert_eq!(first.len(), 1);

    let failing = Arc::new(AtomicBool::new(true));
    let failing2 = Arc::clone(&failing);
    let hook: PutHook = Arc::new(move |path: Path, mode| {
        let fail = path.as_ref().contains("/_delta_log/") && failing2.load(Ordering::SeqCst);
        async move { if fail { Err(injected()) } else { Ok(mode) } }.boxed()
    });
    let mut s = lake.sink_on(move |st| Arc::new(HookStore::new(st, hook)));
    s.open(&specs()).await.unwrap();
    // Half the file's rows change: the file is folded into the new one (superseded).
    s.write(stamp(opp_rows("opp", &[("a", "A2", 2)]), T2))
        .await
        .unwrap();
    s.commit(&state(2))
        .await
        .expect("committed; publishing is retried later");
    s.close().await.unwrap();
    assert_eq!(lake.sink().read_state().await.unwrap(), Some(state(2)));
    let published = delta_log_files(&lake, "opp").await;
    assert_eq!(
        published, first,
        "the published log still names the first file"
    );
    let present: BTreeSet<String> = lake.objects("opp").await.into_iter().collect();
    assert!(
        published.is_subset(&present),
        "{}: every file of the published Delta log exists: {published:?} in {present:?}",
        lake.kind
    );

    failing.store(false, Ordering::SeqCst);
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    s.close().await.unwrap();
    let published = delta_log_files(&lake, "opp").await;
    assert!(published.is_disjoint(&first), "version 2 published");
    let present: BTreeSet<String> = lake.objects("opp").await.into_iter().collect();
    assert!(published.is_subset(&present));
    lake.assert_no_orphans(&["opp"]).await;
    let rows = scan(&lake.sink(), &opp()).await;
    assert_eq!(rows["a"]["name"], "A2");
}
