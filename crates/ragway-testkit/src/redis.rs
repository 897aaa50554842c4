//! A real `redis-server` (Debian's package) on a free loopback port, for the tests of the
//! limits replicas share: started by the test, nothing saved to disk, killed when dropped. It
//! can be stopped and started again on the same port to play a Redis outage, and can also
//! listen with TLS on a second port, under a self-signed certificate made with `openssl`.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// How long a starting `redis-server` may take to answer PING (it takes milliseconds; the
/// rest is room for a machine busy compiling).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `redis-server`, killed when dropped.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    tls: Option<Tls>,
}

/// The TLS port and the folder of its certificate and key.
struct Tls {
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback port and waits until it answers PING. Fails
    /// with a message naming `scripts/install-deps.sh` when it is not installed.
    pub fn start() -> anyhow::Result<Self> {
        let mut server = Self {
            port: free_port()?,
            child: None,
            tls: None,
        };
        server.resume()?;
        Ok(server)
    }

    /// [`Self::start`], and TLS on a second port ([`Self::tls_url`]) under a self-signed
    /// certificate for 127.0.0.1, which no client trusts unless told to.
    pub fn start_tls() -> anyhow::Result<Self> {
        let port = free_port()?;
        let dir =
            std::env::temp_dir().join(format!("ragway-redis-tls-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let made = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("cannot run openssl to make a certificate (Debian's openssl package)")?;
        if !made.success() {
            bail!("openssl could not make a certificate: {made}");
        }
        let mut server = Self {
            port: free_port()?,
            child: None,
            tls: Some(Tls { port, dir }),
        };
        server.resume()?;
        Ok(server)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `rediss://127.0.0.1:PORT`, for a server started with [`Self::start_tls`].
    pub fn tls_url(&self) -> Option<String> {
        self.tls
            .as_ref()
            .map(|tls| format!("rediss://127.0.0.1:{}", tls.port))
    }

    /// Kills the server (SIGKILL: an outage, not a shutdown) and waits until it is gone. Its
    /// data goes with it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty, and waits until it answers PING.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.stop();
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no"]);
        if let Some(tls) = &self.tls {
            command
                .args(["--tls-port", &tls.port.to_string()])
                .arg("--tls-cert-file")
                .arg(tls.dir.join("cert.pem"))
                .arg("--tls-key-file")
                .arg(tls.dir.join("key.pem"))
                .args(["--tls-auth-clients", "no"]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| {
                if error.kind() == std::io::ErrorKind::NotFound {
                    anyhow::anyhow!(
                        "redis-server is not installed: run scripts/install-deps.sh (it installs \
                         Debian's redis-server)"
                    )
                } else {
                    anyhow::anyhow!("cannot start redis-server: {error}")
                }
            })?;
        self.child = Some(child);
        self.wait_for_pong()
    }

    /// Sends one command in Redis' inline form and returns the raw reply (for tests that look
    /// at what ragway wrote: `KEYS *`, `HGETALL key`).
    pub fn command(&self, inline: &str) -> anyhow::Result<String> {
        let mut stream = TcpStream::connect(self.addr())?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(format!("{inline}\r\n").as_bytes())?;
        // Replies in these tests are small; read what arrives within a short pause.
        let mut reply = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let read = stream.read(&mut buffer)?;
            reply.extend_from_slice(&buffer[..read]);
            if read < buffer.len() {
                break;
            }
        }
        String::from_utf8(reply).context("a reply that is not UTF-8")
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    fn wait_for_pong(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Ok(reply) = self.command("PING")
                && reply.starts_with("+PONG")
            {
                return Ok(());
            }
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "redis-server exited at start with {status} (is port {} taken?)",
                    self.port
                );
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "redis-server did not answer PING on port {} within {START_TIMEOUT:?}",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(tls) = &self.tls {
            let _ = std::fs::remove_dir_all(&tls.dir);
        }
    }
}

/// A loopback port free now (another process taking it before redis-server binds it makes the
/// start fail clearly, not hang).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}
