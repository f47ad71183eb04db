//! Developer tasks: `cargo xtask run|ci|docs|bench`.
//!
//! * `run <source> --sink <sink> [args]`: builds and runs the `sluice` CLI (`sluice run …`).
//! * `ci`: format check, clippy with warnings denied, the build without demo mode (the Lever
//!   emulator no normal dependency), the test suite (nextest + doctests) and the freshness
//!   check of the generated docs. This is what `.ci/run` calls.
//! * `docs [--check]`: regenerates `docs/tables/<source>.md` from the table specs.
//! * `bench`: release-build benchmarks (see `docs/benchmarks.md`).

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Parser)]
#[command(name = "xtask", about = "sluice developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Build and run `sluice run <source> …` (debug build; `--release` for a release build).
    Run {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
        /// Arguments for `sluice run`, e.g. `lever --sink parquet --dest ./lake`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
    /// Format check, clippy -D warnings, tests, doctests and docs freshness.
    Ci,
    /// Regenerate the table reference from the table specs.
    Docs {
        /// Fail if the checked-in reference is stale instead of rewriting it.
        #[arg(long)]
        check: bool,
    },
    /// Run the benchmarks (release build) and write JSON under target/bench/.
    Bench {
        /// Arguments for the bench runner (see `docs/benchmarks.md`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn status(mut c: Command, what: &str) -> Result<()> {
    eprintln!("xtask: {what}");
    let s = c.status().with_context(|| format!("starting {what}"))?;
    if !s.success() {
        bail!("{what} failed ({s})");
    }
    Ok(())
}

/// Sources whose table reference is generated.
const DOC_SOURCES: [&str; 1] = ["lever"];

fn docs(check: bool) -> Result<()> {
    for source in DOC_SOURCES {
        let out = cargo()
            .args([
                "run", "--quiet", "-p", "sluice", "--", "tables", source, "--format", "markdown",
            ])
            .output()
            .context("running sluice tables")?;
        if !out.status.success() {
            bail!(
                "sluice tables {source} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let path = root()
            .join("docs")
            .join("tables")
            .join(format!("{source}.md"));
        let current = std::fs::read(&path).unwrap_or_default();
        if current == out.stdout {
            eprintln!("xtask: {} is up to date", path.display());
            continue;
        }
        if check {
            bail!(
                "{} is stale: run `cargo xtask docs` and commit the result",
                path.display()
            );
        }
        std::fs::create_dir_all(path.parent().expect("has parent"))?;
        std::fs::write(&path, &out.stdout)?;
        eprintln!("xtask: wrote {}", path.display());
    }
    Ok(())
}

/// Whether `cargo xtask run` should add `--demo`: the Lever source, no `--demo` already, no
/// `LEVER_API_KEY` in the environment (an empty one is passed on, so that sluice refuses it),
/// and no configuration file that could hold credentials.
fn wants_demo(args: &[String]) -> bool {
    args.first().is_some_and(|s| s == "lever")
        && !args
            .iter()
            .any(|a| a == "--demo" || a == "--config" || a.starts_with("--config="))
        && std::env::var_os("LEVER_API_KEY").is_none()
        && std::env::var_os("LEVER_BASE_URL").is_none()
        && !root().join("sluice.toml").exists()
}

/// The build without demo mode, which the tests and the default build never see (they turn
/// the Lever source's `demo` feature on): the Lever source's library (clippy, warnings denied)
/// and the `sluice` binary build without it, and the emulator is then no normal dependency
/// of the Lever source.
fn without_demo() -> Result<()> {
    let mut lib = cargo();
    lib.args([
        "clippy",
        "-p",
        "sluice-source-lever",
        "--lib",
        "--",
        "-D",
        "warnings",
    ]);
    status(
        lib,
        "cargo clippy -p sluice-source-lever --lib (no demo feature)",
    )?;
    let mut bin = cargo();
    bin.args(["check", "-p", "sluice", "--no-default-features"]);
    status(bin, "cargo check -p sluice --no-default-features")?;
    // With the feature as the control: the check below can see the emulator when it is there.
    for demo in [false, true] {
        let mut tree = cargo();
        tree.args([
            "tree",
            "-p",
            "sluice-source-lever",
            "-e",
            "normal",
            "--prefix",
            "none",
        ]);
        if demo {
            tree.args(["--features", "demo"]);
        }
        let out = tree.output().context("running cargo tree")?;
        if !out.status.success() {
            bail!(
                "cargo tree -p sluice-source-lever failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if lists_emulator(&String::from_utf8_lossy(&out.stdout)) != demo {
            bail!(
                "sluice-lever-emulator {} a normal dependency of sluice-source-lever {} the demo feature",
                if demo { "is not" } else { "is" },
                if demo { "with" } else { "without" }
            );
        }
    }
    eprintln!("xtask: sluice-lever-emulator is a dependency only with the demo feature");
    Ok(())
}

/// Whether the output of `cargo tree --prefix none` lists the Lever emulator.
fn lists_emulator(tree: &str) -> bool {
    tree.lines()
        .any(|l| l.split_whitespace().next() == Some("sluice-lever-emulator"))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Task::Run { release, args } => {
            let mut c = cargo();
            c.args(["run", "--quiet", "-p", "sluice"]);
            if release {
                c.arg("--release");
            }
            c.args(["--", "run"]).args(&args);
            if wants_demo(&args) {
                eprintln!(
                    "xtask: no Lever credentials (LEVER_API_KEY unset, no --config or ./sluice.toml): running with --demo, demo data from the built-in Lever emulator"
                );
                c.arg("--demo");
            }
            let s = c.status().context("starting cargo run")?;
            std::process::exit(s.code().unwrap_or(1));
        }
        Task::Ci => {
            let mut fmt = cargo();
            fmt.args(["fmt", "--all", "--", "--check"]);
            status(fmt, "cargo fmt --check")?;
            let mut clippy = cargo();
            // --locked everywhere: a Cargo.lock that does not match the manifests fails CI as it
            // fails the image build (`cargo build --locked` in the Dockerfile).
            clippy.args([
                "clippy",
                "--locked",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]);
            status(clippy, "cargo clippy -D warnings")?;
            without_demo()?;
            let mut doc = cargo();
            doc.args(["test", "--locked", "--doc", "--workspace"]);
            status(doc, "cargo test --doc")?;
            docs(true)?;
            // The test suite runs last, so its summary closes the output.
            let mut test = cargo();
            test.args([
                "nextest",
                "run",
                "--locked",
                "--workspace",
                "--no-fail-fast",
            ]);
            status(test, "cargo nextest run --workspace")?;
            eprintln!("xtask: ci passed");
            Ok(())
        }
        Task::Docs { check } => docs(check),
        Task::Bench { args } => {
            // Release artifacts live in their own target dir so a long release build never
            // holds the lock of the dev/test build directory.
            let target = root().join("target").join("bench-build");
            let mut c = cargo();
            c.args([
                "run",
                "--quiet",
                "--release",
                "-p",
                "sluice-bench",
                "--target-dir",
            ])
            .arg(&target)
            .arg("--")
            .args(&args);
            status(c, "benchmarks")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lists_emulator;

    #[test]
    fn the_emulator_is_found_in_a_cargo_tree_listing() {
        let with = "sluice-source-lever v0.1.0 (/w/connectors/lever)\nsluice-lever-emulator v0.1.0 (/w/connectors/lever-emulator)\narrow v57.0.0\n";
        assert!(lists_emulator(with));
        let without = "sluice-source-lever v0.1.0 (/w/connectors/lever)\narrow v57.0.0\n";
        assert!(!lists_emulator(without));
    }
}
