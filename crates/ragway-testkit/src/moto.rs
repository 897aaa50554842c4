//! A real `moto_server` (PyPI's `moto[server]`) on a free loopback port, standing in for the AWS
//! services ragway calls that have no fake of their own here (S3, ECR, ECS, IAM, ELBv2, EC2,
//! CloudWatch Logs). It records every request it serves to a file of its own, so that a test
//! can say which calls were made; it is killed when dropped.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// How long a starting moto_server may take to answer (about a second; the rest is room for
/// a machine busy compiling).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `moto_server`, killed when dropped.
pub struct MotoServer {
    child: Child,
    url: String,
    /// Holds the request recording.
    dir: tempfile::TempDir,
}

/// One request moto served.
#[derive(Clone, Debug)]
pub struct MotoRequest {
    pub method: String,
    /// The path and query, as sent.
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
}

impl MotoRequest {
    /// A header's value, by name in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

impl MotoServer {
    /// Starts moto_server with `env` added to its environment (moto's own `MOTO_*` settings)
    /// and waits until it answers.
    pub fn start(env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let port = crate::postgres::free_port()?;
        let dir = tempfile::tempdir()?;
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ENABLE_RECORDING", "true")
            .env("MOTO_RECORDER_FILEPATH", dir.path().join("requests.jsonl"))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start moto_server (scripts/install-deps.sh installs moto[server])")?;
        let server = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let started = Instant::now();
        while http_status(&format!("{}/moto-api/", server.url)).is_err() {
            if started.elapsed() > START_TIMEOUT {
                bail!("moto_server did not answer on port {port} within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every request served so far, in order.
    pub fn requests(&self) -> Vec<MotoRequest> {
        let text =
            std::fs::read_to_string(self.dir.path().join("requests.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .map(|entry| {
                let url = entry["url"].as_str().unwrap_or_default();
                let path = url
                    .split_once("://")
                    .and_then(|(_, rest)| rest.find('/').map(|at| rest[at..].to_owned()))
                    .unwrap_or_default();
                let headers = entry["headers"]
                    .as_object()
                    .map(|headers| {
                        headers
                            .iter()
                            .map(|(name, value)| {
                                let value = value.as_str().unwrap_or_default().to_owned();
                                (name.to_ascii_lowercase(), value)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                MotoRequest {
                    method: entry["method"].as_str().unwrap_or_default().to_owned(),
                    path,
                    headers,
                }
            })
            .collect()
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status of a plain `GET http://HOST:PORT/PATH`, without an async runtime (for waiting on
/// a server a test starts before its own runtime work).
pub fn http_status(url: &str) -> std::io::Result<u16> {
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = TcpStream::connect(host)?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut answer = String::new();
    stream.take(64).read_to_string(&mut answer).ok();
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))
}
