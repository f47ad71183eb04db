//! The subcommands.

use crate::config;
use crate::summary;
use crate::tables_doc;
use crate::{Command, Dest, SourceFlags, StateCommand};
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
        } => {
            let how = RunFlags {
                source: source_flags,
                allow_origin_change,
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
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunFlags {
    source: SourceFlags,
    allow_origin_change: bool,
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
    let cfg = config::load(dest.config.as_deref())?;
    let source_config = source_json(&cfg, flags.source);
    let source_plugin = registry.source(source_name)?;
    let sink_plugin = registry.sink(sink_name)?;
    let source = (source_plugin.build)();
    let mut sink = (sink_plugin.build)(&cfg.sink_json(dest.dest.as_deref()))?;
    let options = cfg.run_settings(flags.allow_origin_change).sync_options();

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
    let report = result?;
    print!("{}", summary::render(&report));
    Ok(())
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
    let Some(mut state) = sink.open(&[]).await? else {
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
