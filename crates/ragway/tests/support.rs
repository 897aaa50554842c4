//! Test support: the `ragway` binary started as a real server on a free port, with the fakes'
//! addresses in its config, and small helpers to call it.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const OPENAI_KEY: &str = "sk-test-ragway-secret-123";
pub const KENDRA_INDEX: &str = "0123abcd-kendra-index";

/// The `ragway` binary under test: cargo's, unless `RAGWAY_TEST_BIN` names another. Cargo
/// copies every worktree's build to the same `target/debug/ragway` when worktrees share one
/// `CARGO_TARGET_DIR`, so a run there can point this at its own `target/debug/deps/ragway-HASH`.
pub fn ragway_bin() -> std::path::PathBuf {
    std::env::var_os("RAGWAY_TEST_BIN")
        .map_or_else(|| env!("CARGO_BIN_EXE_ragway").into(), Into::into)
}

/// The environment every server under test gets: fake AWS credentials (the fakes do not check
/// signatures), no instance-metadata lookups, and the secrets the configs refer to.
pub fn test_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("TEST_OPENAI_KEY", OPENAI_KEY.into()),
        ("KENDRA_INDEX_ID", KENDRA_INDEX.into()),
        // The key `[server.auth]` configs refer to (guard_rails.rs).
        ("RAGWAY_TEST_API_KEY", "rk-test-team-a-0c81".into()),
        ("RUST_LOG", "info".into()),
    ]
}

/// A running `ragway serve`, killed when dropped.
pub struct Server {
    pub url: String,
    child: Child,
    _dir: tempfile::TempDir,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    /// The task copying the server's stderr into `stderr`; it ends at the pipe's end.
    stderr_reader: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub async fn start(config: &str) -> Server {
        Self::start_with(config, |_| {}).await
    }

    /// Starts with `adjust` applied to the command after the test environment (to change it).
    pub async fn start_with(config: &str, adjust: impl FnOnce(&mut Command)) -> Server {
        Self::start_under(&[], config, adjust).await
    }

    /// Starts the server through `wrapper` (a program and its arguments, which then run
    /// `ragway serve ...`), e.g. `setpriv` to take a capability away.
    pub async fn start_under(
        wrapper: &[&str],
        config: &str,
        adjust: impl FnOnce(&mut Command),
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ragway.toml");
        std::fs::write(&path, config).unwrap();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(ragway_bin());
                command
            }
            None => Command::new(ragway_bin()),
        };
        command
            .args(["serve", "--bind", "127.0.0.1:0", "--config"])
            .arg(&path)
            .envs(test_env())
            .env_remove("RAGWAY_CONFIG");
        adjust(&mut command);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err_lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = stderr.clone();
        let stderr_reader = tokio::spawn(async move {
            while let Ok(Some(line)) = err_lines.next_line().await {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("server did not start: {}", stderr.lock().unwrap()))
            .unwrap()
            .unwrap_or_else(|| panic!("server exited: {}", stderr.lock().unwrap()));
        let url = line
            .strip_prefix("ragway listening on ")
            .expect("listening line")
            .to_owned();
        Server {
            url,
            child,
            _dir: dir,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the server has already exited")
    }

    /// The address the server listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.url.trim_start_matches("http://").parse().unwrap()
    }

    /// Sends SIGTERM, as `docker stop` and ECS do (through kill(1): the tests use no unsafe).
    pub fn terminate(&self) {
        let pid = self.child.id().expect("the server has already exited");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM {pid} failed: {status}");
    }

    /// Waits for the process to exit, at most `within`, and for its log to be read to the end.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let status = match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!(
                "the server did not exit within {within:?}; its log:\n{}",
                self.logs()
            ),
        };
        if let Some(reader) = self.stderr_reader.take() {
            tokio::time::timeout(Duration::from_secs(5), reader)
                .await
                .expect("the server's log pipe stayed open after it exited")
                .unwrap();
        }
        status
    }

    /// What the server logged so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// What the server logged, once it contains `needle` or `within` has passed (then the
    /// caller's assertion shows the log). A line is written as an answer goes out, so it can
    /// reach the pipe after the client has the answer.
    pub async fn logs_once_they_contain(&self, needle: &str, within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let logs = self.logs();
            if logs.contains(needle) || tokio::time::Instant::now() >= deadline {
                return logs;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let response = client()
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let json =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
        (status, headers, json)
    }

    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, String) {
        let response = client()
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// `/metrics` as Prometheus text.
    pub async fn metrics(&self) -> String {
        client()
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let response = client()
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// Posts and reads a server-sent event stream to its end: (event name, data) pairs.
    pub async fn post_sse(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, Vec<(String, serde_json::Value)>) {
        let response = client()
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, parse_sse(&text))
    }
}

/// Runs a check that drives the server as a client would (a Python or node script) for at most
/// 5 minutes; fails the test, with everything the check printed, unless it exits 0 and prints
/// `passed`. Returns its standard output. scripts/install-deps.sh installs what checks run on.
pub async fn run_check(mut command: Command, passed: &str) -> String {
    let std = command.as_std();
    let described = std::iter::once(std.get_program())
        .chain(std.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let run = command.kill_on_drop(true).output();
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .unwrap_or_else(|_| panic!("`{described}` did not finish within 5 minutes"))
        .unwrap_or_else(|err| {
            panic!("cannot run `{described}` ({err}): see scripts/install-deps.sh")
        });
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(passed),
        "`{described}` did not pass: it must exit 0 and print {passed:?}; it ended with {}\n\
         --- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    stdout
}

/// Runs a browser check of tests/ui (`name`.mjs, in chromium through playwright-core) with
/// `env`, saving its screenshot as `name`.png under the test target's temporary folder; fails
/// the test unless the check prints "`name` check passed". Returns what it printed.
pub async fn browser_check(name: &str, env: &[(&str, String)]) -> String {
    let script = format!("{}/../../tests/ui/{name}.mjs", env!("CARGO_MANIFEST_DIR"));
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.png"));
    let mut node = Command::new("node");
    node.arg(&script)
        .envs(env.iter().map(|(key, value)| (key, value)))
        .env("SCREENSHOT", &screenshot);
    let stdout = run_check(node, &format!("{name} check passed")).await;
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );
    println!("{name} screenshot (CI artifact): {}", screenshot.display());
    stdout
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Splits an SSE body into (event, JSON data) pairs; keep-alive comments are skipped.
pub fn parse_sse(text: &str) -> Vec<(String, serde_json::Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut name = String::from("message");
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            (!data.is_empty()).then(|| {
                (
                    name,
                    serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data)),
                )
            })
        })
        .collect()
}

/// A config with one model of each provider and a Kendra store, all pointed at the fakes.
pub fn config(openai: &str, bedrock: &str, kendra: &str) -> String {
    format!(
        r#"
[[llm]]
name = "claude-3-opus"
type = "bedrock"
model_id = "us.anthropic.claude-3-opus-20240229-v1:0"
region = "us-west-2"
endpoint_url = "{bedrock}"
max_attempts = 1

[[llm]]
name = "titan"
type = "bedrock"
model_id = "amazon.titan-text-express-v1"
endpoint_url = "{bedrock}"
max_attempts = 1

[[llm]]
name = "gpt-4o"
type = "openai"
model = "gpt-4o"
base_url = "{openai}/v1"
api_key = "env::TEST_OPENAI_KEY"
# One call each, so every scripted failure reaches the client; faults.rs tests the retries.
retry = {{ attempts = 1 }}

[[llm]]
name = "slow"
type = "openai"
model = "gpt-4o"
base_url = "{openai}/v1"
timeout_secs = 1

[[llm]]
name = "down"
type = "openai"
model = "gpt-4o"
base_url = "http://127.0.0.1:9/v1"
connect_timeout_secs = 2

[[vector_store]]
name = "kendra"
type = "kendra"
index_id = "env::KENDRA_INDEX_ID"
region = "us-west-2"
endpoint_url = "{kendra}"
max_attempts = 1

[[vector_store]]
name = "kendra-confident"
type = "kendra"
index_id = "other-index"
region = "us-west-2"
endpoint_url = "{kendra}"
max_attempts = 1
min_score_confidence = "HIGH"
attribute_filter = {{ _language_code = "en" }}
"#
    )
}

/// The three fakes and a server configured over them.
pub struct Stack {
    pub openai: ragway_testkit::Fake,
    pub bedrock: ragway_testkit::Fake,
    pub kendra: ragway_testkit::Fake,
    pub server: Server,
}

impl Stack {
    pub async fn start() -> Stack {
        let openai = ragway_testkit::openai::start().await.unwrap();
        let bedrock = ragway_testkit::bedrock::start().await.unwrap();
        let kendra = ragway_testkit::kendra::start().await.unwrap();
        let server = Server::start(&config(&openai.url(), &bedrock.url(), &kendra.url())).await;
        Stack {
            openai,
            bedrock,
            kendra,
            server,
        }
    }
}
