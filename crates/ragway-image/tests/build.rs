//! `build`: reproducible digests, one layer changing alone, and the layer tar and config
//! checked by other tools (GNU tar, Python's tarfile, gzip, sha256sum).

use std::fs;
use std::process::Command;

use ragway_image::{ImageError, ImageFile, LayerSpec, build};

use crate::support::{Fixture, run, write_file};

#[test]
fn the_same_inputs_give_the_same_digest() {
    let temp = tempfile::tempdir().unwrap();
    let first = Fixture::new(&temp.path().join("src1"));
    let image1 = build(&first.spec(), &temp.path().join("out1")).unwrap();
    // Same contents elsewhere, written later (other mtimes, other source modes, other inode).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = Fixture::new(&temp.path().join("src2"));
    fs::set_permissions(
        second.dir.join("app"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let image2 = build(&second.spec(), &temp.path().join("out2")).unwrap();

    assert_eq!(image1.manifest_digest, image2.manifest_digest);
    assert_eq!(image1.manifest, image2.manifest);
    assert_eq!(image1.config.digest, image2.config.digest);
    for (a, b) in image1.layers.iter().zip(&image2.layers) {
        assert_eq!(
            (&a.digest, a.size, &a.diff_id),
            (&b.digest, b.size, &b.diff_id)
        );
        assert_eq!(fs::read(&a.path).unwrap(), fs::read(&b.path).unwrap());
    }
    // Building again into the same folder gives the same image too.
    let again = build(&first.spec(), &temp.path().join("out1")).unwrap();
    assert_eq!(again, image1);
}

#[test]
fn changing_one_file_changes_only_its_layer() {
    let temp = tempfile::tempdir().unwrap();
    let fixture = Fixture::new(temp.path());
    let before = build(&fixture.spec(), &temp.path().join("out")).unwrap();
    write_file(
        &fixture.dir.join("app"),
        b"#!/bin/sh\necho ragway v2\n",
        0o755,
    );
    let after = build(&fixture.spec(), &temp.path().join("out")).unwrap();

    assert_eq!(
        before.layers[0].digest, after.layers[0].digest,
        "the models layer must not change"
    );
    assert_ne!(
        before.layers[1].digest, after.layers[1].digest,
        "the binary layer must change"
    );
    assert_ne!(before.layers[1].diff_id, after.layers[1].diff_id);
    assert_ne!(before.config.digest, after.config.digest);
    assert_ne!(before.manifest_digest, after.manifest_digest);
    // Both builds' blobs stay in the folder (content-addressed).
    assert!(before.layers[1].path.exists() && after.layers[1].path.exists());
}

#[test]
fn digests_match_the_bytes_on_disk() {
    let temp = tempfile::tempdir().unwrap();
    let fixture = Fixture::new(temp.path());
    let image = build(&fixture.spec(), &temp.path().join("out")).unwrap();
    let sha256 = |args: &str| {
        run(Command::new("sh")
            .arg("-c")
            .arg(format!("{args} | sha256sum")))[..64]
            .to_owned()
    };

    for blob in image.layers.iter().chain([&image.config]) {
        let hex = blob.digest.strip_prefix("sha256:").unwrap();
        assert_eq!(sha256(&format!("cat '{}'", blob.path.display())), hex);
        assert_eq!(fs::metadata(&blob.path).unwrap().len(), blob.size);
        assert!(blob.path.ends_with(format!("blobs/sha256/{hex}")));
    }
    for layer in &image.layers {
        // diff_id is the digest of the uncompressed tar, as gzip itself decompresses it.
        let uncompressed = sha256(&format!("gzip -dc '{}'", layer.path.display()));
        assert_eq!(format!("sha256:{uncompressed}"), layer.diff_id);
        assert_eq!(
            layer.media_type,
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }
    let manifest_file = temp
        .path()
        .join("out/blobs/sha256")
        .join(image.manifest_digest.strip_prefix("sha256:").unwrap());
    assert_eq!(fs::read(manifest_file).unwrap(), image.manifest);

    // The folder is an OCI image layout pointing at the manifest.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(temp.path().join("out/index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        image.manifest_digest.as_str()
    );
    assert!(temp.path().join("out/oci-layout").exists());
}

#[test]
fn manifest_and_config_follow_the_oci_image_spec() {
    let temp = tempfile::tempdir().unwrap();
    let fixture = Fixture::new(temp.path());
    let image = build(&fixture.spec(), &temp.path().join("out")).unwrap();

    let manifest: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(manifest["config"]["digest"], image.config.digest.as_str());
    assert_eq!(manifest["config"]["size"], image.config.size);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    for (descriptor, blob) in layers.iter().zip(&image.layers) {
        assert_eq!(
            descriptor["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(descriptor["digest"], blob.digest.as_str());
        assert_eq!(descriptor["size"], blob.size);
    }

    let config_bytes = fs::read(&image.config.path).unwrap();
    let config: serde_json::Value = serde_json::from_slice(&config_bytes).unwrap();
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    assert!(
        config.get("created").is_none(),
        "no creation time: {config}"
    );
    assert_eq!(config["rootfs"]["type"], "layers");
    let diff_ids: Vec<&str> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(
        diff_ids,
        image
            .layers
            .iter()
            .map(|l| l.diff_id.as_str())
            .collect::<Vec<_>>()
    );
    let run = &config["config"];
    assert_eq!(
        run["Entrypoint"],
        serde_json::json!(["/usr/local/bin/ragway"])
    );
    assert_eq!(run["Cmd"], serde_json::json!(["serve"]));
    assert_eq!(
        run["Env"],
        serde_json::json!(["RAGWAY_CONFIG=/etc/ragway/ragway.toml", "RUST_LOG=info"])
    );
    assert_eq!(run["WorkingDir"], "/opt/ragway");
    assert_eq!(run["User"], "10001:10001");
    assert_eq!(run["ExposedPorts"], serde_json::json!({"8000/tcp": {}}));
    assert_eq!(run["Labels"]["org.opencontainers.image.title"], "ragway");
    assert_eq!(config["history"].as_array().unwrap().len(), 2);
    // Canonical JSON: keys sorted at every level, so HashMap order can never leak in.
    let text = String::from_utf8(config_bytes).unwrap();
    assert!(
        text.find("\"a\":\"b\"").unwrap() < text.find("org.opencontainers.image.title").unwrap()
    );
    assert!(text.find("\"architecture\"").unwrap() < text.find("\"config\"").unwrap());
}

#[test]
fn layer_tar_is_sorted_with_parents_owned_by_root_at_time_zero() {
    let temp = tempfile::tempdir().unwrap();
    let fixture = Fixture::new(temp.path());
    let image = build(&fixture.spec(), &temp.path().join("out")).unwrap();
    let layer = &image.layers[0];

    // GNU tar's view.
    let listing = run(Command::new("tar")
        .args(["--numeric-owner", "--full-time", "-tzvf"])
        .arg(&layer.path));
    let lines: Vec<Vec<&str>> = listing
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let names: Vec<&str> = lines.iter().map(|l| *l.last().unwrap()).collect();
    assert_eq!(
        names,
        [
            "etc/",
            "etc/ragway/",
            "etc/ragway/ragway.toml",
            "opt/",
            "opt/ragway/",
            "opt/ragway/models/",
            "opt/ragway/models/model.bin"
        ]
    );
    for line in &lines {
        assert_eq!(line[1], "0/0", "{line:?}");
        assert_eq!(line[3], "1970-01-01", "{line:?}");
        assert_eq!(line[4], "00:00:00", "{line:?}");
        let expected = if line[0].starts_with('d') {
            "drwxr-xr-x"
        } else {
            "-rw-r--r--"
        };
        assert_eq!(line[0], expected, "{line:?}");
    }
    // The symlinked source went in as a regular file with its target's content.
    let content = run(Command::new("tar")
        .args(["-xzOf"])
        .arg(&layer.path)
        .arg("etc/ragway/ragway.toml"));
    assert_eq!(content, "[server]\nbind = \"0.0.0.0:8000\"\n");

    // Python's tarfile: empty owner names, mtime 0, sizes.
    let script = r#"
import sys, tarfile
with tarfile.open(sys.argv[1], "r:gz") as tar:
    for m in tar.getmembers():
        print(m.name, m.type.decode(), oct(m.mode), m.uid, m.gid, repr(m.uname), repr(m.gname), m.mtime, m.size)
"#;
    let listing = run(Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&layer.path));
    for line in listing.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(&fields[3..8], ["0", "0", "''", "''", "0"], "{line}");
    }
    assert!(
        listing.contains(&format!(
            "opt/ragway/models/model.bin 0 0o644 0 0 '' '' 0 {}",
            3 << 20
        )),
        "{listing}"
    );
    let binary = run(Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&image.layers[1].path));
    assert!(binary.contains("usr/local/bin/ragway 0 0o755"), "{binary}");

    // The gzip header: no mtime (bytes 4..8), no file name flag (byte 3).
    let bytes = fs::read(&layer.path).unwrap();
    assert_eq!(&bytes[..3], [0x1f, 0x8b, 8]);
    assert_eq!(bytes[3], 0, "no FNAME/FCOMMENT/FEXTRA flags");
    assert_eq!(&bytes[4..8], [0, 0, 0, 0], "mtime 0");
}

#[test]
fn a_missing_source_is_named_and_nothing_is_written() {
    let temp = tempfile::tempdir().unwrap();
    let fixture = Fixture::new(temp.path());
    let mut spec = fixture.spec();
    let missing = fixture.dir.join("no-such-model.gguf");
    spec.layers[1].files.push(ImageFile {
        source: missing.clone(),
        target: "/opt/ragway/model.gguf".into(),
        mode: 0o644,
    });
    let error = build(&spec, &temp.path().join("out")).unwrap_err();
    assert!(
        matches!(&error, ImageError::SourceMissing { path, .. } if *path == missing),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("no-such-model.gguf") && message.contains("/opt/ragway/model.gguf"),
        "{message}"
    );
    assert!(
        !temp.path().join("out").exists(),
        "checked before writing anything"
    );
}

#[test]
fn bad_targets_and_conflicts_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    let fixture = Fixture::new(temp.path());
    let layer = |targets: &[&str]| LayerSpec {
        name: "bad".into(),
        files: targets
            .iter()
            .map(|t| ImageFile {
                source: fixture.dir.join("app"),
                target: (*t).into(),
                mode: 0o755,
            })
            .collect(),
    };
    let mut spec = fixture.spec();
    spec.layers.push(layer(&["usr/bin/x"]));
    let error = build(&spec, &temp.path().join("out")).unwrap_err();
    assert!(
        matches!(error, ImageError::InvalidTarget { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("absolute"), "{error}");

    spec.layers.pop();
    spec.layers.push(layer(&["/usr/bin", "/usr/bin/x"]));
    let error = build(&spec, &temp.path().join("out")).unwrap_err();
    assert!(
        matches!(error, ImageError::TargetConflict { .. }),
        "{error:?}"
    );

    // A folder as a source is not a file.
    spec.layers.pop();
    spec.layers.push(LayerSpec {
        name: "dir".into(),
        files: vec![ImageFile {
            source: fixture.dir.join("data"),
            target: "/data".into(),
            mode: 0o644,
        }],
    });
    let error = build(&spec, &temp.path().join("out")).unwrap_err();
    assert!(
        matches!(error, ImageError::SourceNotFile { .. }),
        "{error:?}"
    );
}

#[test]
fn an_empty_layer_and_an_empty_spec_build() {
    let temp = tempfile::tempdir().unwrap();
    let image = build(&Default::default(), temp.path()).unwrap();
    assert!(image.layers.is_empty());
    let mut spec = ragway_image::ImageSpec::default();
    spec.layers.push(LayerSpec {
        name: "empty".into(),
        files: vec![],
    });
    let image = build(&spec, temp.path()).unwrap();
    let listing = run(Command::new("tar").arg("-tzf").arg(&image.layers[0].path));
    assert_eq!(listing, "");
}
