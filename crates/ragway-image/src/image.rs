//! What an image is made of (`ImageSpec`), what a build leaves on disk (`BuiltImage`), and
//! `build`, which writes the layers, the config and the manifest as an OCI image layout.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, Digest, HistoryBuilder,
    ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder, MediaType, Os,
    RootFsBuilder,
};
use serde::Serialize;

use crate::error::{ImageError, Result};
use crate::layer::{open_source, sha256_digest, write_layer};

/// Media type of the image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of the image config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of every layer.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// One file to put in the image: read from `source` (symlinks followed), written at `target`
/// (absolute path inside the image) with `mode` (permission bits; `0o755` for executables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    /// The file on disk. Symlinks are followed: the image gets the file's content.
    pub source: PathBuf,
    /// Absolute, clean path inside the image (`/usr/local/bin/ragway`).
    pub target: String,
    /// Permission bits (only the low 12 bits are kept).
    pub mode: u32,
}

/// A layer: a name for messages and its files (order in the tar is sorted by target, not by
/// this Vec). The layer's parent folders are added with mode 0755.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LayerSpec {
    /// Shown in errors and recorded in the config's `history` (`created_by`).
    pub name: String,
    /// The files; two files with one target, or a target that is another's folder, are refused.
    pub files: Vec<ImageFile>,
}

/// Everything an image is built from. The image is `linux/amd64`, has no base (`scratch`),
/// and its config carries no creation time, so that the same spec and the same file contents
/// always give the same manifest digest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageSpec {
    /// Layers, bottom first. Put what changes least (shared libraries, models) first, so a new
    /// binary only changes the last layer and the others are skipped on push.
    pub layers: Vec<LayerSpec>,
    /// `Entrypoint` of the config; empty means none.
    pub entrypoint: Vec<String>,
    /// `Cmd` of the config; empty means none.
    pub cmd: Vec<String>,
    /// `Env` of the config, `NAME=value` each; kept in this order.
    pub env: Vec<String>,
    /// `WorkingDir`; empty means none.
    pub working_dir: String,
    /// `User` (`name`, `uid` or `uid:gid`); empty means root.
    pub user: String,
    /// TCP ports, written as `ExposedPorts` (`8000/tcp`).
    pub exposed_ports: Vec<u16>,
    /// `Labels` of the config.
    pub labels: BTreeMap<String, String>,
}

/// A built image: blobs kept in a folder (not all in memory — a layer can be 100s of MB), with
/// digests. The folder is an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// The manifest's bytes exactly as pushed (canonical JSON).
    pub manifest: Vec<u8>,
    /// `sha256:<hex>` of `manifest`: the image's identity.
    pub manifest_digest: String,
    /// The image config blob.
    pub config: Blob,
    /// The layer blobs, bottom first, one per `ImageSpec::layers`.
    pub layers: Vec<Blob>,
}

/// A content-addressed file of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:<hex>` of the file's bytes.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// OCI media type.
    pub media_type: String,
    /// Where the bytes are (`<work_dir>/blobs/sha256/<hex>`).
    pub path: PathBuf,
    /// For a layer, `sha256:<hex>` of the uncompressed tar (the config's `rootfs.diff_ids`);
    /// for the config, its own digest.
    pub diff_id: String,
}

/// Builds the image described by `spec` into `work_dir` (created if missing; earlier builds'
/// blobs there are overwritten when they have the same digest, and otherwise left alone).
///
/// Every source is checked before anything is written, so a missing file fails fast. The
/// result is reproducible: the same spec and file contents give the same bytes and digests
/// (with the same build of this crate: the gzip stream depends on the deflate implementation).
pub fn build(spec: &ImageSpec, work_dir: &Path) -> Result<BuiltImage> {
    for layer in &spec.layers {
        for file in &layer.files {
            open_source(file)?;
        }
    }
    let blobs = work_dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs)
        .map_err(|e| ImageError::io("cannot create folder", &blobs, e))?;

    let mut layers = Vec::with_capacity(spec.layers.len());
    for layer in &spec.layers {
        let written = write_layer(layer, &blobs)?;
        layers.push(Blob {
            digest: written.digest,
            size: written.size,
            media_type: LAYER_MEDIA_TYPE.to_owned(),
            path: written.path,
            diff_id: written.diff_id,
        });
    }

    let config_json = canonical_json(&image_config(spec, &layers)?, "config")?;
    let config = write_blob(&blobs, &config_json, CONFIG_MEDIA_TYPE)?;

    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(&config, "manifest")?)
        .layers(
            layers
                .iter()
                .map(|layer| descriptor(layer, "manifest"))
                .collect::<Result<Vec<_>>>()?,
        )
        .build()
        .map_err(|e| assemble("manifest", e))?;
    let manifest_json = canonical_json(&manifest, "manifest")?;
    let manifest_blob = write_blob(&blobs, &manifest_json, MANIFEST_MEDIA_TYPE)?;
    write_layout(work_dir, &manifest_blob)?;

    Ok(BuiltImage {
        manifest: manifest_json,
        manifest_digest: manifest_blob.digest,
        config,
        layers,
    })
}

/// The image config: run settings, `rootfs.diff_ids`, one `history` entry per layer, no dates.
fn image_config(spec: &ImageSpec, layers: &[Blob]) -> Result<oci_spec::image::ImageConfiguration> {
    let mut run = ConfigBuilder::default();
    if !spec.user.is_empty() {
        run = run.user(spec.user.clone());
    }
    if !spec.exposed_ports.is_empty() {
        let ports: BTreeSet<u16> = spec.exposed_ports.iter().copied().collect();
        run = run.exposed_ports(
            ports
                .iter()
                .map(|port| format!("{port}/tcp"))
                .collect::<Vec<_>>(),
        );
    }
    if !spec.env.is_empty() {
        run = run.env(spec.env.clone());
    }
    if !spec.entrypoint.is_empty() {
        run = run.entrypoint(spec.entrypoint.clone());
    }
    if !spec.cmd.is_empty() {
        run = run.cmd(spec.cmd.clone());
    }
    if !spec.working_dir.is_empty() {
        run = run.working_dir(spec.working_dir.clone());
    }
    if !spec.labels.is_empty() {
        // oci-spec wants a HashMap; canonical JSON sorts the keys again when it is written.
        run = run.labels(
            spec.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        );
    }
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(
            layers
                .iter()
                .map(|layer| layer.diff_id.clone())
                .collect::<Vec<_>>(),
        )
        .build()
        .map_err(|e| assemble("config", e))?;
    let history = spec
        .layers
        .iter()
        .map(|layer| {
            HistoryBuilder::default()
                .created_by(format!("ragway-image: {}", layer.name))
                .build()
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| assemble("config", e))?;
    ImageConfigurationBuilder::default()
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .config(run.build().map_err(|e| assemble("config", e))?)
        .rootfs(rootfs)
        .history(history)
        .build()
        .map_err(|e| assemble("config", e))
}

fn descriptor(blob: &Blob, what: &'static str) -> Result<Descriptor> {
    let digest = Digest::from_str(&blob.digest).map_err(|e| assemble(what, e))?;
    Ok(Descriptor::new(
        MediaType::from(blob.media_type.as_str()),
        blob.size,
        digest,
    ))
}

/// Writes `oci-layout` and `index.json`, so that the folder is an OCI image layout that
/// other tools (skopeo, crane, podman) can read.
fn write_layout(work_dir: &Path, manifest: &Blob) -> Result<()> {
    let layout_path = work_dir.join("oci-layout");
    std::fs::write(&layout_path, br#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(|e| ImageError::io("cannot write", &layout_path, e))?;
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![
            DescriptorBuilder::default()
                .media_type(MediaType::ImageManifest)
                .size(manifest.size)
                .digest(Digest::from_str(&manifest.digest).map_err(|e| assemble("index", e))?)
                .build()
                .map_err(|e| assemble("index", e))?,
        ])
        .build()
        .map_err(|e| assemble("index", e))?;
    let index_path = work_dir.join("index.json");
    std::fs::write(&index_path, canonical_json(&index, "index")?)
        .map_err(|e| ImageError::io("cannot write", &index_path, e))
}

/// Writes a small blob (config, manifest) under its digest.
fn write_blob(blobs: &Path, bytes: &[u8], media_type: &str) -> Result<Blob> {
    let digest = sha256_digest(bytes);
    let path = blobs.join(digest.trim_start_matches("sha256:"));
    std::fs::write(&path, bytes).map_err(|e| ImageError::io("cannot write", &path, e))?;
    Ok(Blob {
        diff_id: digest.clone(),
        digest,
        size: bytes.len() as u64,
        media_type: media_type.to_owned(),
        path,
    })
}

/// Canonical JSON (sorted keys, no spaces): the same value always gives the same bytes.
fn canonical_json(value: &impl Serialize, what: &'static str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut serializer =
        serde_json::Serializer::with_formatter(&mut out, olpc_cjson::CanonicalFormatter::new());
    value
        .serialize(&mut serializer)
        .map_err(|e| assemble(what, e))?;
    Ok(out)
}

fn assemble(what: &'static str, error: impl std::fmt::Display) -> ImageError {
    ImageError::Assemble {
        what,
        message: error.to_string(),
    }
}
