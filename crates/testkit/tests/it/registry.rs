use sluice_core::{DynSource, ErrorKind, Registry, SinkPlugin, Source, SourcePlugin, TableSpec};
use sluice_testkit::TestSource;

fn good() -> Box<dyn DynSource> {
    Box::new(TestSource)
}

struct BadSource;

#[sluice_core::async_trait]
impl Source for BadSource {
    type Config = serde_json::Value;
    fn catalog(&self) -> Vec<TableSpec> {
        let mut t = TestSource::tables();
        t[0].primary_key.clear();
        t
    }
    async fn check(
        &self,
        _: &Self::Config,
        _: sluice_core::CheckContext,
    ) -> sluice_core::Result<String> {
        Ok(String::new())
    }
    async fn read(
        &self,
        _: &Self::Config,
        _: sluice_core::ReadContext,
        _: sluice_core::Emitter,
    ) -> sluice_core::Result<()> {
        Ok(())
    }
}

fn bad() -> Box<dyn DynSource> {
    Box::new(BadSource)
}

fn no_sink(_: &serde_json::Value) -> sluice_core::Result<Box<dyn sluice_core::Sink>> {
    Err(sluice_core::Error::config("test sink"))
}

static ZETA: SourcePlugin = SourcePlugin::new("zeta", "z", good);
static ALPHA: SourcePlugin = SourcePlugin::new("alpha", "a", good);
static ALPHA_AGAIN: SourcePlugin = SourcePlugin::new("alpha", "a2", good);
static BROKEN: SourcePlugin = SourcePlugin::new("broken", "b", bad);
static SINK: SinkPlugin = SinkPlugin::new("mem", "m", no_sink);

#[test]
fn registry_sorts_by_name() {
    let r = Registry::new(vec![&ZETA, &ALPHA], vec![&SINK]).unwrap();
    let names: Vec<_> = r.sources().iter().map(|p| p.name).collect();
    assert_eq!(names, ["alpha", "zeta"]);
    assert!(r.source("alpha").is_ok());
    let err = r.source("nope").err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("available: alpha, zeta"));
}

#[test]
fn registry_rejects_duplicates() {
    let err = Registry::new(vec![&ALPHA, &ALPHA_AGAIN], vec![])
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("two source plugins are registered as `alpha`"),
        "{err}"
    );
}

#[test]
fn registry_rejects_invalid_specs() {
    let err = Registry::new(vec![&BROKEN], vec![]).err().unwrap();
    assert!(err.to_string().contains("no primary key"), "{err}");
}
