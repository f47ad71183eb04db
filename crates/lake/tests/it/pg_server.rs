//! Starts a PostgreSQL server (Debian's binaries, `/usr/lib/postgresql/<version>/bin`) on a
//! free 127.0.0.1 port for one test, with a new cluster in a temporary folder, and stops it
//! (by PID) on drop. As root (CI), `initdb` and `postgres` run as the `postgres` system user.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The cluster's superuser and its password (scram-sha-256 over TCP).
pub const PG_USER: &str = "sluice";
pub const PG_PASSWORD: &str = "catalog-pw-7Hq2";

/// A running PostgreSQL server.
pub struct PgServer {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb` and `postgres`.
fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("postgres").exists()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// Whether this process runs as root (PostgreSQL refuses to).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program` as a command run by the `postgres` user when this process is root (`setpriv`
/// execs it, so the child's PID is the program's).
fn command(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--reset-env",
        ])
        .arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl PgServer {
    /// Starts a server, or returns `None` (said on stderr) when PostgreSQL is not installed,
    /// unless `CI=true` (then it panics).
    pub fn start() -> Option<PgServer> {
        let Some(bin) = bin_dir() else {
            let why = "PostgreSQL's server binaries are not in /usr/lib/postgresql/<version>/bin \
                       (apt-get install postgresql)";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true: {why}");
            }
            eprintln!("skipped: {why}");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PG_PASSWORD).unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(ok.success(), "chown of {} failed", dir.path().display());
        }
        let out = command(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                PG_USER,
                "--auth=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = command(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-F", "-k"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        let server = PgServer { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "postgres did not listen on {port} within 60 s: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The URL of the `postgres` database with `password`, under `scheme`
    /// (`postgresql`, or `postgresql+psycopg2` for SQLAlchemy).
    pub fn url(&self, scheme: &str, password: &str) -> String {
        format!(
            "{scheme}://{PG_USER}:{password}@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }
}

impl PgServer {
    /// A client of the `postgres` database (its connection runs on the test's runtime).
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgresql", PG_PASSWORD), tokio_postgres::NoTls)
                .await
                .expect("connect to the test's postgres");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's fast shutdown (ends the backends, then the postmaster).
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
