//! `sluice`: ELT from SaaS APIs into Parquet data lakes.
//!
//! Exit codes: 0 ok, 2 config or usage, 3 auth, 4 upstream API, 5 destination, 1 internal,
//! 130 stopped by Ctrl-C (SIGINT), 143 stopped by SIGTERM.

mod commands;
mod config;
mod env_config;
mod logging;
mod progress;
mod run_summary;
mod signals;
mod summary;
mod tables_doc;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Moves data from SaaS APIs into Parquet on local disk or S3, incrementally.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, long_about = None)]
struct Cli {
    /// Log line format on stderr (filter with RUST_LOG, default `info`); `text` by default,
    /// `json` for `serve`.
    #[arg(long, value_enum, global = true, env = "SLUICE_LOG_FORMAT")]
    log_format: Option<logging::LogFormat>,
    /// Never draw progress bars (they are already hidden when stderr is not a terminal).
    #[arg(long, global = true)]
    no_progress: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct Dest {
    /// Destination: a path, file://…, or s3://bucket/prefix (overrides `sink.dest`).
    #[arg(long)]
    dest: Option<String>,
    /// Configuration file (default: ./sluice.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Flags that change the source's settings.
#[derive(Debug, Clone, Copy, clap::Args)]
struct SourceFlags {
    /// Read demo data from the source's built-in emulator instead of an account (sets
    /// `demo = true` in `[source]`). Never implied by missing credentials.
    #[arg(long)]
    demo: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sync a source into a sink.
    Run {
        /// Source plugin (see `sluice plugins`).
        source: String,
        /// Sink plugin.
        #[arg(long)]
        sink: String,
        #[command(flatten)]
        dest: Dest,
        #[command(flatten)]
        source_flags: SourceFlags,
        /// Accept a source that reads from another endpoint than the one the destination's
        /// data came from (a new base URL or proxy of the same account) and record it.
        #[arg(long)]
        allow_origin_change: bool,
        /// Write the run's outcome as JSON to this file (`-`: standard output, the text
        /// summary then goes to standard error), also when the run fails.
        #[arg(long, value_name = "PATH", env = "SLUICE_SUMMARY_JSON")]
        summary_json: Option<PathBuf>,
    },
    /// Inspect the effective configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Verify credentials and reachability of a source with one request. An OAuth refresh
    /// token rotated by the check is saved in the destination, where `run` finds it.
    Check {
        /// Source plugin.
        source: String,
        /// Sink plugin holding the destination.
        #[arg(long, default_value = "parquet")]
        sink: String,
        #[command(flatten)]
        dest: Dest,
        #[command(flatten)]
        source_flags: SourceFlags,
    },
    /// List a source's tables and columns.
    Tables {
        /// Source plugin.
        source: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: tables_doc::Format,
    },
    /// List the registered plugins.
    Plugins,
    /// Inspect the sync state stored in a destination.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Serve the management API, the scheduler, metrics and the status page (see
    /// docs/api.md). Secrets are encrypted with SLUICE_MASTER_KEY or <data-dir>/master.key;
    /// the API token is SLUICE_API_TOKEN, or one generated on first start and printed once.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7878", env = "SLUICE_LISTEN")]
        listen: std::net::SocketAddr,
        /// Where connections, run history and encrypted secrets live.
        #[arg(long, default_value = "./sluice-data", env = "SLUICE_DATA_DIR")]
        data_dir: PathBuf,
        /// At most this many syncs at once.
        #[arg(long, default_value_t = 4, env = "SLUICE_MAX_CONCURRENT_RUNS")]
        max_concurrent_runs: usize,
        /// The server's URL as browsers reach it (for the OAuth redirect URI); default
        /// `http://<listen>`.
        #[arg(long, env = "SLUICE_PUBLIC_URL")]
        public_url: Option<String>,
    },
    /// Make the next run re-import a table (or every table) from scratch.
    Resync {
        /// Source plugin.
        source: String,
        /// Only this table.
        #[arg(long)]
        table: Option<String>,
        /// Sink plugin holding the destination.
        #[arg(long, default_value = "parquet")]
        sink: String,
        #[command(flatten)]
        dest: Dest,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (the defaults, the file, the SLUICE_* environment and
    /// `--dest`), secrets redacted, with where each value came from.
    Show {
        /// Configuration file (default: ./sluice.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Source plugin whose defaults fill `[source]`.
        #[arg(long, default_value = "lever")]
        source: String,
        /// Sink plugin whose defaults fill `[sink]`.
        #[arg(long, default_value = "parquet")]
        sink: String,
        /// Destination, as `sluice run --dest` would set it.
        #[arg(long)]
        dest: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum StateCommand {
    /// Print the committed state (secrets redacted).
    Show {
        /// Sink plugin holding the destination.
        #[arg(long, default_value = "parquet")]
        sink: String,
        #[command(flatten)]
        dest: Dest,
    },
}

/// mimalloc instead of the system allocator: syncs allocate and free many small objects
/// (JSON DOM nodes, Arrow builders, key indexes) on several threads, where glibc malloc spent
/// ~20 % of the process's CPU in the throughput benchmark (see docs/decisions.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let bars = progress::bars(!cli.no_progress);
    let log_format = cli.log_format.unwrap_or(match cli.command {
        Command::Serve { .. } => logging::LogFormat::Json,
        _ => logging::LogFormat::Text,
    });
    logging::init(log_format, &bars);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("internal error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(commands::dispatch(cli.command, bars));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e}");
            let code = match e.kind() {
                sluice_core::ErrorKind::Cancelled => signals::cancelled_exit_code(),
                _ => e.exit_code(),
            };
            ExitCode::from(code as u8)
        }
    }
}
