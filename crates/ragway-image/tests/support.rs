//! Test support: Debian's `docker-registry` on a free loopback port, and image fixtures on disk.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ragway_image::{ImageFile, ImageSpec, LayerSpec, Target};

/// bcrypt (cost 5) of "secret" for user "ragway", made with
/// `perl -e 'print crypt("secret", "\$2b\$05\$abcdefghijklmnopqrstuu")'`.
pub const HTPASSWD: &str = "ragway:$2b$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a\n";

/// How the test registry is configured.
#[derive(Default, Clone, Copy)]
pub struct RegistryOptions {
    /// Every write is refused (storage maintenance read-only mode).
    pub read_only: bool,
    /// Basic auth with [`HTPASSWD`] (user `ragway`, password `secret`).
    pub htpasswd: bool,
}

/// A running `docker-registry serve`, killed when dropped.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
    dir: tempfile::TempDir,
}

impl Registry {
    pub async fn start() -> Registry {
        Self::start_with(RegistryOptions::default()).await
    }

    pub async fn start_with(options: RegistryOptions) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  maintenance:\n    uploadpurging:\n      enabled: false\n",
            dir.path().join("storage").display()
        );
        if options.read_only {
            config.push_str("    readonly:\n      enabled: true\n");
        }
        config.push_str(&format!("http:\n  addr: {address}\n"));
        if options.htpasswd {
            let htpasswd = dir.path().join("htpasswd");
            fs::write(&htpasswd, HTPASSWD).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: ragway-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).unwrap();
        let log = fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("docker-registry is not installed (apt-get install docker-registry)");
        let mut registry = Registry {
            child,
            address,
            dir,
        };
        registry.wait_ready().await;
        registry
    }

    async fn wait_ready(&mut self) {
        let url = format!("http://{}/v2/", self.address);
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        loop {
            if let Ok(response) = client.get(&url).send().await {
                // 200 when open, 401 when it asks for credentials: either way it answers.
                if response.status().is_success() || response.status().as_u16() == 401 {
                    return;
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "docker-registry exited ({status}) before answering:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer within 30 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    pub fn target(&self, repository: &str, tag: &str) -> Target {
        Target {
            registry: self.address.clone(),
            repository: repository.into(),
            tag: tag.into(),
            auth: None,
            insecure: true,
        }
    }

    /// Status of `HEAD /v2/<repository>/blobs/<digest>`.
    pub async fn blob_status(&self, repository: &str, digest: &str) -> u16 {
        let url = format!("http://{}/v2/{repository}/blobs/{digest}", self.address);
        reqwest::Client::new()
            .head(url)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// `GET /v2/<repository>/manifests/<reference>`: the digest header and the body.
    pub async fn manifest(&self, repository: &str, reference: &str) -> (String, Vec<u8>) {
        let url = format!(
            "http://{}/v2/{repository}/manifests/{reference}",
            self.address
        );
        let response = reqwest::Client::new()
            .get(url)
            .header("Accept", ragway_image::MANIFEST_MEDIA_TYPE)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let digest = response.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_owned();
        (digest, response.bytes().await.unwrap().to_vec())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Source files of a small image: an "app" binary, a 3 MB "model", a config reached
/// through a symlink; written to `dir`.
pub struct Fixture {
    pub dir: PathBuf,
}

impl Fixture {
    pub fn new(dir: &Path) -> Fixture {
        fs::create_dir_all(dir.join("data")).unwrap();
        write_file(&dir.join("app"), b"#!/bin/sh\necho ragway\n", 0o700);
        // Pseudo-random so that gzip cannot shrink it to nothing: the layer is a real stream.
        let mut model = Vec::with_capacity(3 << 20);
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        while model.len() < 3 << 20 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            model.extend_from_slice(&state.to_le_bytes());
        }
        write_file(&dir.join("data/model.bin"), &model, 0o600);
        write_file(
            &dir.join("data/real-settings.toml"),
            b"[server]\nbind = \"0.0.0.0:8000\"\n",
            0o600,
        );
        let link = dir.join("settings.toml");
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(dir.join("data/real-settings.toml"), &link).unwrap();
        Fixture {
            dir: dir.to_owned(),
        }
    }

    pub fn spec(&self) -> ImageSpec {
        let file = |source: &str, target: &str, mode| ImageFile {
            source: self.dir.join(source),
            target: target.into(),
            mode,
        };
        ImageSpec {
            layers: vec![
                LayerSpec {
                    name: "models".into(),
                    files: vec![
                        file("settings.toml", "/etc/ragway/ragway.toml", 0o644),
                        file("data/model.bin", "/opt/ragway/models/model.bin", 0o644),
                    ],
                },
                LayerSpec {
                    name: "binary".into(),
                    files: vec![file("app", "/usr/local/bin/ragway", 0o755)],
                },
            ],
            entrypoint: vec!["/usr/local/bin/ragway".into()],
            cmd: vec!["serve".into()],
            env: vec![
                "RAGWAY_CONFIG=/etc/ragway/ragway.toml".into(),
                "RUST_LOG=info".into(),
            ],
            working_dir: "/opt/ragway".into(),
            user: "10001:10001".into(),
            exposed_ports: vec![8000],
            labels: [
                ("org.opencontainers.image.title", "ragway"),
                ("org.opencontainers.image.version", "0.1.0"),
                ("a", "b"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        }
    }
}

pub fn write_file(path: &Path, bytes: &[u8], mode: u32) {
    let mut file = fs::File::create(path).unwrap();
    file.write_all(bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Runs a command and returns its stdout, failing the test with its stderr otherwise.
pub fn run(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}
