//! The subcommands.

use crate::config;
use crate::summary;
use crate::tables_doc;
use crate::{Command, ConfigCommand, Dest, SourceFlags, StateCommand};
use indicatif::MultiProgress;
use sluice_core::{CheckContext, Error, Registry, Result, Sink};
use std::collections::BTreeSet;
use tokio_util::sync::CancellationToken;

pub(crate) async fn dispatch(command: Command, bars: MultiProgress) -> Result<()> {
    let registry = sluice_plugins::registry()?;
    match command {
        Command::Run {
            source,
            sink,
            dest,
            source_flags,
            allow_origin_change,
            summary_json,
        } => {
            let how = RunFlags {
                source: source_flags,
                allow_origin_change,
                summary_json,
            };
            run(&registry, &source, &sink, &dest, how, bars).await
        }
        Command::Check {
            source,
            sink,
            dest,
            source_flags,
        } => {
            let cfg = config::load(dest.config.as_deref())?;
            let plugin = registry.source(&source)?;
            let sink = (registry.sink(&sink)?.build)(&cfg.sink_json(dest.dest.as_deref()))?;
            let ctx = CheckContext::new(sink.secret_store());
            let line = (plugin.build)()
                .check(&source_json(&cfg, source_flags), ctx)
                .await?;
            println!("ok: {line}");
            Ok(())
        }
        Command::Config {
            command:
                ConfigCommand::Show {
                    config,
                    source,
                    sink,
                    dest,
                },
        } => {
            let defaults = ConfigDefaults {
                source: registry.source(&source)?.defaults,
                sink: registry.sink(&sink)?.defaults,
            };
            print!(
                "{}",
                config_show(config.as_deref(), &defaults, dest.as_deref())?
            );
            Ok(())
        }
        Command::Tables { source, format } => {
            let plugin = registry.source(&source)?;
            print!(
                "{}",
                tables_doc::render(plugin, &(plugin.build)().catalog(), format)
            );
            Ok(())
        }
        Command::Plugins => {
            println!("sources:");
            for p in registry.sources() {
                println!("  {:<12} {}", p.name, p.description);
            }
            println!("sinks:");
            for p in registry.sinks() {
                println!("  {:<12} {}", p.name, p.description);
            }
            Ok(())
        }
        Command::State {
            command: StateCommand::Show { sink, dest },
        } => {
            let sink = open_sink(&registry, &sink, &dest)?;
            match sink.read_state().await? {
                Some(state) => println!("{}", state.to_redacted_json()),
                None => println!("no state: nothing has been committed to this destination yet"),
            }
            Ok(())
        }
        Command::Resync {
            source,
            table,
            sink,
            dest,
        } => resync(&registry, &source, table.as_deref(), &sink, &dest).await,
        Command::Serve {
            listen,
            data_dir,
            max_concurrent_runs,
            public_url,
        } => {
            let mut options = sluice_server::ServeOptions::new(listen, data_dir);
            options.api_token = std::env::var(sluice_server::API_TOKEN_ENV).ok();
            options.master_key = std::env::var(sluice_server::crypto::MASTER_KEY_ENV).ok();
            options.max_concurrent_runs = max_concurrent_runs.max(1);
            options.public_url = public_url;
            serve(registry, options).await
        }
    }
}

/// `sluice serve`: runs until SIGINT or SIGTERM, which stop every sync at its last
/// committed checkpoint.
async fn serve(registry: Registry, options: sluice_server::ServeOptions) -> Result<()> {
    let server = sluice_server::Server::start(options, registry).await?;
    if let Some(token) = server.generated_token() {
        println!(
            "API token (shown once, only its hash is kept; set SLUICE_API_TOKEN to choose one): {token}"
        );
    }
    println!("sluice serve: listening on http://{}", server.addr());
    crate::signals::stop_on_signals(server.stopper());
    server.wait().await
}

/// How `sluice run` was asked to run.
#[derive(Debug, Clone)]
pub(crate) struct RunFlags {
    source: SourceFlags,
    allow_origin_change: bool,
    summary_json: Option<std::path::PathBuf>,
}

/// The top-level settings' defaults, as TOML (the engine's: see `RunSettings`).
const TOP_LEVEL_DEFAULTS: &str = "commit_interval_secs = 30\ncommit_max_rows = 250000\n";

/// The plugins' defaults shown by `sluice config show`.
struct ConfigDefaults {
    source: &'static [&'static str],
    sink: &'static [&'static str],
}

/// The defaults as one TOML table: top-level keys, `[source]` and `[sink]`.
fn defaults_table(defaults: &ConfigDefaults) -> Result<toml::Table> {
    let parse = |parts: &[&str]| -> Result<toml::Table> {
        parts
            .concat()
            .parse::<toml::Table>()
            .map_err(|e| Error::internal("a plugin's defaults").with_source(e))
    };
    let mut table = parse(&[TOP_LEVEL_DEFAULTS])?;
    table.insert("source".into(), toml::Value::Table(parse(defaults.source)?));
    table.insert("sink".into(), toml::Value::Table(parse(defaults.sink)?));
    Ok(table)
}

/// Sets every leaf of `over` into `base` (tables merge, other values replace).
fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// `sluice config show`: the effective configuration as TOML, secrets redacted, each value
/// followed by where it came from (`# default`, `# from <file>`, `# from environment <VAR>`,
/// `# from flag --dest`).
fn config_show(
    explicit: Option<&std::path::Path>,
    defaults: &ConfigDefaults,
    dest: Option<&str>,
) -> Result<String> {
    let effective = config::load_effective(explicit)?;
    let mut table = defaults_table(defaults)?;
    let mut origins = crate::env_config::Origins::new();
    crate::env_config::record_origins(&table, "", "default", &mut origins);
    merge(&mut table, &effective.table);
    origins.extend(
        effective
            .origins
            .iter()
            .map(|(k, v)| (k.clone(), format!("from {v}"))),
    );
    if let Some(dest) = dest {
        let mut sink = toml::Table::new();
        sink.insert("dest".into(), toml::Value::String(dest.to_owned()));
        merge(
            &mut table,
            &toml::Table::from_iter([("sink".to_owned(), toml::Value::Table(sink))]),
        );
        origins.insert("sink.dest".into(), "from flag --dest".into());
    }
    let mut out = String::from(
        "# effective configuration (secrets redacted); keys not shown are unset (S3 keys then come from the AWS_* environment)\n",
    );
    let text = toml::to_string(&crate::env_config::redacted(&table))
        .map_err(|e| Error::internal("rendering the configuration").with_source(e))?;
    let mut section = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            out.push_str(line);
        } else if let Some((key, _)) = trimmed.split_once(" = ") {
            let path = if section.is_empty() {
                key.trim().to_owned()
            } else {
                format!("{section}.{}", key.trim())
            };
            out.push_str(line);
            let origin = origins.get(&path).or_else(|| {
                // A key under a table that one variable set as a whole.
                origins
                    .iter()
                    .filter(|(k, _)| path.starts_with(&format!("{k}.")))
                    .map(|(_, v)| v)
                    .next_back()
            });
            if let Some(origin) = origin {
                out.push_str(&format!("  # {origin}"));
            }
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    for (name, what) in [
        ("LEVER_API_KEY", "the Lever API key"),
        ("LEVER_BASE_URL", "the Lever base URL"),
        ("SLUICE_HASH_SALT", "the hashing salt"),
    ] {
        if std::env::var_os(name).is_some() {
            out.push_str(&format!("# {name} is set ({what})\n"));
        }
    }
    Ok(out)
}

/// The `[source]` section with the command line's source flags applied.
fn source_json(cfg: &config::ConfigFile, flags: SourceFlags) -> serde_json::Value {
    let mut json = cfg.source_json();
    if flags.demo {
        json["demo"] = serde_json::Value::Bool(true);
    }
    json
}

fn open_sink(registry: &Registry, name: &str, dest: &Dest) -> Result<Box<dyn Sink>> {
    let cfg = config::load(dest.config.as_deref())?;
    let plugin = registry.sink(name)?;
    (plugin.build)(&cfg.sink_json(dest.dest.as_deref()))
}

async fn run(
    registry: &Registry,
    source_name: &str,
    sink_name: &str,
    dest: &Dest,
    flags: RunFlags,
    bars: MultiProgress,
) -> Result<()> {
    let started = std::time::SystemTime::now();
    let metrics = sluice_core::Metrics::new();
    // The sink once built, so that the summary can read what the destination holds.
    let mut sink: Option<Box<dyn Sink>> = None;
    let result = sync(
        registry,
        source_name,
        sink_name,
        dest,
        flags.clone(),
        bars,
        &metrics,
        &mut sink,
    )
    .await;
    if let Some(path) = &flags.summary_json {
        let exit_code = match &result {
            Ok(_) => 0,
            Err(e) if e.kind() == sluice_core::ErrorKind::Cancelled => {
                crate::signals::cancelled_exit_code()
            }
            Err(e) => e.exit_code(),
        };
        let state = match &sink {
            Some(sink) => sink.read_state().await.ok().flatten(),
            None => None,
        };
        let summary = crate::run_summary::RunSummary::new(crate::run_summary::Outcome {
            source: source_name,
            sink: sink_name,
            started,
            result: &result,
            exit_code,
            metrics: &metrics,
            state,
        });
        if let Err(e) = summary.write(path) {
            tracing::error!(error = %e, "writing the run summary failed");
            if result.is_ok() {
                return Err(e);
            }
        }
    }
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            // How far the data is complete matters most when the run stopped part-way.
            if let Some(status) = metrics.status() {
                eprintln!("{status}");
            }
            return Err(e);
        }
    };
    let text = summary::render(&report);
    if flags.summary_json.as_deref() == Some(std::path::Path::new("-")) {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    Ok(())
}

/// The body of `sluice run`, from loading the configuration to the end of the sync; the sink
/// is left in `sink_slot` once built. Counters go to `metrics`.
#[allow(clippy::too_many_arguments)]
async fn sync(
    registry: &Registry,
    source_name: &str,
    sink_name: &str,
    dest: &Dest,
    flags: RunFlags,
    bars: MultiProgress,
    metrics: &sluice_core::Metrics,
    sink_slot: &mut Option<Box<dyn Sink>>,
) -> Result<sluice_core::SyncReport> {
    let cfg = config::load(dest.config.as_deref())?;
    let source_config = source_json(&cfg, flags.source);
    let source_plugin = registry.source(source_name)?;
    let sink_plugin = registry.sink(sink_name)?;
    let source = (source_plugin.build)();
    let sink = sink_slot.insert((sink_plugin.build)(&cfg.sink_json(dest.dest.as_deref()))?);
    let mut options = cfg.run_settings(flags.allow_origin_change).sync_options();
    options.metrics = metrics.clone();

    crate::signals::stop_on_signals(options.cancel.clone());
    let stop_bars = CancellationToken::new();
    let bars_task = tokio::spawn(crate::progress::drive(
        bars,
        options.metrics.clone(),
        stop_bars.clone(),
    ));
    tracing::info!(source = source_name, sink = sink_name, "sync starting");
    let result = sluice_core::run_sync(
        source_name,
        source.as_ref(),
        &source_config,
        sink.as_mut(),
        options,
    )
    .await;
    stop_bars.cancel();
    let _ = bars_task.await;
    result
}

async fn resync(
    registry: &Registry,
    source_name: &str,
    table: Option<&str>,
    sink_name: &str,
    dest: &Dest,
) -> Result<()> {
    let catalog = (registry.source(source_name)?.build)().catalog();
    let tables: BTreeSet<String> = match table {
        Some(t) if catalog.iter().any(|s| s.name == t) => [t.to_owned()].into(),
        Some(t) => {
            return Err(Error::config(format!(
                "--table: unknown table `{t}` of source `{source_name}` (see `sluice tables {source_name}`)"
            )));
        }
        None => catalog.iter().map(|s| s.name.clone()).collect(),
    };
    let mut sink = open_sink(registry, sink_name, dest)?;
    // SIGTERM and Ctrl-C stop it like a run: before the commit, nothing changes and the lease
    // is released; a commit under way completes.
    let stop = CancellationToken::new();
    crate::signals::stop_on_signals(stop.clone());
    let opened = tokio::select! {
        opened = sink.open(&[]) => Some(opened),
        () = stop.cancelled() => None,
    };
    let Some(opened) = opened else {
        let _ = sink.abort().await;
        return Err(Error::cancelled());
    };
    let Some(mut state) = opened? else {
        sink.close().await?;
        println!("nothing to do: the destination has no state, so the next run is a full sync");
        return Ok(());
    };
    if state.source != source_name {
        sink.abort().await?;
        return Err(Error::config(format!(
            "the destination holds data of source `{}`, not `{source_name}`",
            state.source
        )));
    }
    if stop.is_cancelled() {
        sink.abort().await?;
        return Err(Error::cancelled());
    }
    for t in &tables {
        state.table_mut(t).resync_requested = true;
    }
    state.committed_at_ms = sluice_core::now_ms();
    if let Err(e) = sink.commit(&state).await {
        let _ = sink.abort().await;
        return Err(e);
    }
    sink.close().await?;
    match table {
        Some(t) => println!("the next run re-imports `{t}` from scratch"),
        None => println!("the next run re-imports every table from scratch"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listed_top_level_defaults_are_the_engines() {
        let listed: toml::Table = TOP_LEVEL_DEFAULTS.parse().unwrap();
        let o = sluice_core::RunSettings::default().sync_options();
        assert_eq!(
            listed["commit_interval_secs"].as_integer(),
            Some(o.commit_interval.as_secs() as i64)
        );
        assert_eq!(
            listed["commit_max_rows"].as_integer(),
            Some(o.commit_max_rows as i64)
        );
        assert_eq!(listed.len(), 2);
    }

    #[test]
    fn every_plugin_lists_defaults_that_parse() {
        let registry = sluice_plugins::registry().unwrap();
        for source in registry.sources() {
            let d = ConfigDefaults {
                source: source.defaults,
                sink: &[],
            };
            assert!(!source.defaults.is_empty(), "{}", source.name);
            defaults_table(&d).unwrap();
        }
        for sink in registry.sinks() {
            let d = ConfigDefaults {
                source: &[],
                sink: sink.defaults,
            };
            assert!(!sink.defaults.is_empty(), "{}", sink.name);
            assert_eq!(
                defaults_table(&d).unwrap()["sink"]["dest"].as_str(),
                Some("./lake")
            );
        }
    }
}
