//! `shared_libraries` on real binaries, and a `scratch` image of `/bin/ls` run under chroot.

use std::path::Path;
use std::process::Command;

use ragway_image::{ImageError, ImageFile, ImageSpec, LayerSpec, build, shared_libraries};

use crate::support::{run, write_file};

fn check_libraries(binary: &Path) -> Vec<ImageFile> {
    let files = shared_libraries(binary).unwrap();
    let targets: Vec<&str> = files.iter().map(|f| f.target.as_str()).collect();
    assert!(
        targets.iter().any(|t| t.ends_with("/ld-linux-x86-64.so.2")),
        "no dynamic loader: {targets:?}"
    );
    assert!(
        targets.iter().any(|t| t.ends_with("/libc.so.6")),
        "no libc: {targets:?}"
    );
    assert!(
        !targets.iter().any(|t| t.contains("vdso")),
        "the vDSO is not a file: {targets:?}"
    );
    let mut sorted = targets.clone();
    sorted.sort();
    assert_eq!(targets, sorted);
    for file in &files {
        assert!(
            file.source.is_file(),
            "{} does not exist",
            file.source.display()
        );
        assert!(file.target.starts_with('/'));
        assert_eq!(
            file.source,
            Path::new(&file.target),
            "the path ldd printed is kept"
        );
    }
    files
}

#[test]
fn ls_and_this_test_need_the_loader_and_libc() {
    check_libraries(Path::new("/bin/ls"));
    check_libraries(&std::env::current_exe().unwrap());
}

#[test]
fn a_script_has_no_shared_libraries_and_a_missing_binary_is_named() {
    let temp = tempfile::tempdir().unwrap();
    let script = temp.path().join("script.sh");
    write_file(&script, b"#!/bin/sh\nexit 0\n", 0o755);
    assert_eq!(shared_libraries(&script).unwrap(), vec![]);

    let missing = temp.path().join("no-such-binary");
    let error = shared_libraries(&missing).unwrap_err();
    assert!(
        matches!(error, ImageError::SourceMissing { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("no-such-binary"), "{error}");
}

/// The real check: an image of `/bin/ls` and its libraries on nothing else, unpacked into an
/// empty folder, runs there under chroot (skipped when this user may not chroot).
#[test]
fn a_scratch_image_of_ls_runs_under_chroot() {
    let temp = tempfile::tempdir().unwrap();
    let spec = ImageSpec {
        layers: vec![
            LayerSpec {
                name: "libraries".into(),
                files: check_libraries(Path::new("/bin/ls")),
            },
            LayerSpec {
                name: "binary".into(),
                files: vec![ImageFile {
                    source: "/bin/ls".into(),
                    target: "/bin/ls".into(),
                    mode: 0o755,
                }],
            },
        ],
        entrypoint: vec!["/bin/ls".into()],
        ..Default::default()
    };
    let image = build(&spec, &temp.path().join("out")).unwrap();
    let root = temp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    for layer in &image.layers {
        run(Command::new("tar")
            .arg("-xzf")
            .arg(&layer.path)
            .arg("-C")
            .arg(&root));
    }
    let output = Command::new("chroot")
        .arg(&root)
        .args(["/bin/ls", "/"])
        .output()
        .unwrap();
    if !output.status.success()
        && String::from_utf8_lossy(&output.stderr).contains("Operation not permitted")
    {
        eprintln!("skipped: chroot is not permitted here");
        return;
    }
    assert!(
        output.status.success(),
        "ls failed in the image: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listing = String::from_utf8(output.stdout).unwrap();
    assert!(
        listing.lines().any(|l| l == "bin") && listing.lines().any(|l| l == "lib"),
        "{listing}"
    );
}
