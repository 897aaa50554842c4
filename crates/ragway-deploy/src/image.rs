//! What goes in the image, decided from the config: the binary and the shared libraries it
//! loads (so the image runs on `scratch`), every local model and FAISS store the config names,
//! and the config itself. Also the image's tag: a hash of all of that, so the same inputs
//! always have the same tag and a rerun finds the image already registered.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use ragway_core::config::{Config, EmbedderConfig, LlmConfig, VectorStoreConfig};
use ragway_image::{ImageFile, ImageSpec, LayerSpec};
use sha2::Digest as _;

use crate::error::DeployError;

/// Where things live inside the image.
pub const APP_DIR: &str = "/app";
pub const BINARY: &str = "/usr/local/bin/ragway";
pub const CONFIG: &str = "/app/ragway.toml";
/// The certificate authorities HTTPS clients trust (Debian's path, which rustls looks at).
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The image for `config`: layers ordered from least to most often changed, so registries
/// keep the big ones (libraries, models) when only the config or the binary moves.
pub fn spec(
    config: &Config,
    config_path: &Path,
    binary: &Path,
    port: u16,
) -> Result<ImageSpec, DeployError> {
    let mut libraries = ragway_image::shared_libraries(binary).map_err(|e| {
        DeployError::Image(format!(
            "cannot list the libraries {} needs: {e}",
            binary.display()
        ))
    })?;
    // HTTPS to OpenAI and AWS checks certificates against the system's roots; an empty base
    // has none, so the build machine's bundle goes in.
    if Path::new(CA_BUNDLE).is_file() {
        libraries.push(ImageFile {
            source: CA_BUNDLE.into(),
            target: CA_BUNDLE.into(),
            mode: 0o644,
        });
    }
    let mut models = Vec::new();
    let mut stores = Vec::new();
    for llm in &config.llm {
        if let LlmConfig::Local(c) = llm {
            models.push(app_file(
                &c.path,
                0o644,
                &format!("llm \"{}\" path", c.name),
            )?);
        }
    }
    for embedder in &config.embedder {
        if let EmbedderConfig::Local(c) = embedder {
            models.extend(folder(&c.path, &format!("embedder \"{}\" path", c.name))?);
        }
    }
    for store in &config.vector_store {
        if let VectorStoreConfig::Faiss(c) = store {
            // A store not yet ingested is made empty in the container on first ingest.
            if c.path.is_dir() {
                stores.extend(folder(
                    &c.path,
                    &format!("vector_store \"{}\" path", c.name),
                )?);
            }
        }
    }
    let mut config_files = vec![ImageFile {
        source: config_path.to_path_buf(),
        target: CONFIG.into(),
        mode: 0o644,
    }];
    if let Some(keys) = &config.server.auth.keys_file {
        config_files.push(app_file(keys, 0o644, "server.auth.keys_file")?);
    }
    let mut layers = vec![
        LayerSpec {
            name: "libraries".into(),
            files: libraries,
        },
        LayerSpec {
            name: "models".into(),
            files: models,
        },
        LayerSpec {
            name: "stores".into(),
            files: stores,
        },
        LayerSpec {
            name: "ragway".into(),
            files: vec![ImageFile {
                source: binary.to_path_buf(),
                target: BINARY.into(),
                mode: 0o755,
            }],
        },
        LayerSpec {
            name: "config".into(),
            files: config_files,
        },
    ];
    layers.retain(|layer| !layer.files.is_empty());
    Ok(ImageSpec {
        layers,
        entrypoint: vec![BINARY.into()],
        cmd: vec!["serve".into()],
        env: vec![
            format!("RAGWAY_CONFIG={CONFIG}"),
            // Read by both `serve` and `healthcheck`, so they agree on the port.
            format!("RAGWAY_BIND=0.0.0.0:{port}"),
            // OpenBLAS and llama.cpp threads sleep when idle instead of spinning.
            "OMP_WAIT_POLICY=PASSIVE".into(),
            "RUST_LOG=info".into(),
            format!("SSL_CERT_FILE={CA_BUNDLE}"),
        ],
        working_dir: APP_DIR.into(),
        // The same unprivileged user as the Dockerfile.
        user: "10001:10001".into(),
        exposed_ports: vec![port],
        labels: [
            (
                "org.opencontainers.image.title".to_owned(),
                "ragway".to_owned(),
            ),
            (
                "org.opencontainers.image.version".to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
            ),
        ]
        .into(),
    })
}

/// A path from the config as the image sees it: relative paths are relative to the working
/// directory, which is /app in the image.
fn target(path: &Path) -> String {
    if path.is_absolute() {
        path.display().to_string()
    } else {
        format!("{APP_DIR}/{}", path.display()).replace("/./", "/")
    }
}

fn app_file(path: &Path, mode: u32, what: &str) -> Result<ImageFile, DeployError> {
    if !path.is_file() {
        return Err(DeployError::Invalid(format!(
            "{what}: {} is not a file here, so it cannot go in the image (run \
             scripts/fetch-models.sh, or fix the path)",
            path.display()
        )));
    }
    Ok(ImageFile {
        source: path.to_path_buf(),
        target: target(path),
        mode,
    })
}

/// Every file under `dir`, sorted.
fn folder(dir: &Path, what: &str) -> Result<Vec<ImageFile>, DeployError> {
    if !dir.is_dir() {
        return Err(DeployError::Invalid(format!(
            "{what}: {} is not a folder here, so it cannot go in the image",
            dir.display()
        )));
    }
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current).map_err(|e| {
            DeployError::Invalid(format!("{what}: cannot read {}: {e}", current.display()))
        })?;
        for entry in entries {
            let entry = entry.map_err(|e| DeployError::Invalid(format!("{what}: {e}")))?;
            let path: PathBuf = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.is_file() {
                files.push(ImageFile {
                    target: target(&path),
                    source: path,
                    mode: 0o644,
                });
            }
        }
    }
    files.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(files)
}

/// The tag for these inputs: ragway's version and a hash of every file's place and content
/// and of the image settings. Reading the files costs a second or two for the models, far less
/// than building and pushing an image that is already registered.
pub fn content_tag(spec: &ImageSpec) -> Result<String, DeployError> {
    let mut hasher = sha2::Sha256::new();
    for layer in &spec.layers {
        hasher.update(layer.name.as_bytes());
        for file in &layer.files {
            hasher.update(file.target.as_bytes());
            hasher.update(file.mode.to_le_bytes());
            let mut reader = std::fs::File::open(&file.source).map_err(|e| {
                DeployError::Image(format!("cannot read {}: {e}", file.source.display()))
            })?;
            let mut buffer = vec![0u8; 1 << 20];
            loop {
                let read = reader.read(&mut buffer).map_err(|e| {
                    DeployError::Image(format!("cannot read {}: {e}", file.source.display()))
                })?;
                if read == 0 {
                    break;
                }
                hasher.update(&buffer[..read]);
            }
        }
    }
    let settings = serde_json::json!([
        spec.entrypoint,
        spec.cmd,
        spec.env,
        spec.working_dir,
        spec.user,
        spec.exposed_ports,
        spec.labels
    ]);
    hasher.update(settings.to_string().as_bytes());
    let digest = hasher.finalize();
    let short: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    Ok(format!("{}-{short}", env!("CARGO_PKG_VERSION")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_holds_the_binary_its_libraries_the_models_and_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model.gguf");
        std::fs::write(&model, b"gguf").unwrap();
        let config_path = dir.path().join("ragway.toml");
        let text = format!(
            "[[llm]]\nname = 'local'\ntype = 'local'\npath = '{}'\n",
            model.display()
        );
        std::fs::write(&config_path, &text).unwrap();
        let config = Config::parse(&text, "t").unwrap();
        let spec = spec(&config, &config_path, Path::new("/bin/ls"), 8000).unwrap();
        let targets: Vec<&str> = spec
            .layers
            .iter()
            .flat_map(|l| l.files.iter().map(|f| f.target.as_str()))
            .collect();
        assert!(targets.contains(&BINARY) && targets.contains(&CONFIG));
        assert!(targets.contains(&model.display().to_string().as_str()));
        assert!(targets.iter().any(|t| t.contains("libc.so")), "{targets:?}");
        if Path::new(CA_BUNDLE).is_file() {
            assert!(targets.contains(&CA_BUNDLE));
        }
        assert!(spec.env.contains(&"RAGWAY_BIND=0.0.0.0:8000".to_owned()));

        // The tag follows the content.
        let tag = content_tag(&spec).unwrap();
        assert_eq!(tag, content_tag(&spec).unwrap());
        std::fs::write(&model, b"gguf2").unwrap();
        assert_ne!(tag, content_tag(&spec).unwrap());
    }

    #[test]
    fn a_missing_model_is_named_with_the_fix() {
        let config = Config::parse(
            "[[llm]]\nname = 'local'\ntype = 'local'\npath = '/nonexistent/m.gguf'\n",
            "t",
        )
        .unwrap();
        let error = spec(
            &config,
            Path::new("/etc/hostname"),
            Path::new("/bin/ls"),
            8000,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("llm \"local\" path") && error.contains("/nonexistent/m.gguf"),
            "{error}"
        );
    }
}
