//! The command line: `config check` on every example and on a broken file, `models`, `ask`,
//! and a start-up that fails clearly when a secret is missing.

use std::process::Command;

use crate::support::{config, test_env};

fn ragway(args: &[&str]) -> std::process::Output {
    Command::new(crate::support::ragway_bin())
        .args(args)
        .envs(test_env())
        .env_remove("RAGWAY_CONFIG")
        .output()
        .unwrap()
}

fn examples() -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_config_passes_config_check() {
    let files = examples();
    assert!(files.len() >= 2, "{files:?}");
    for file in files {
        let out = ragway(&["config", "check", "--config", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok:"));
    }
}

#[test]
fn a_broken_config_lists_all_its_errors_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(
        &path,
        r#"
[[llm]]
name = "a"
type = "openai"
model = "m"
api_key = "sk-literal"

[[llm]]
name = "b"
type = "bedrock"

[[llm]]
name = "a"
type = "openai"
model = "m"

[[vector_store]]
name = "k"
type = "kendro"
"#,
    )
    .unwrap();
    let out = ragway(&["config", "check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "llm[0].api_key: secrets must be references",
        "llm[1].model_id: missing field",
        "vector_store[0].type: unknown type \"kendro\"; expected one of faiss, kendra",
        "llm[2].name: duplicate name \"a\" (also llm[0])",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert!(!stderr.contains("sk-literal"));
}

#[test]
fn duplicate_names_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dup.toml");
    std::fs::write(&path, "[[llm]]\nname='a'\ntype='openai'\nmodel='m'\n[[llm]]\nname='a'\ntype='openai'\nmodel='n'\n")
        .unwrap();
    let out = ragway(&["config", "check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("llm[1].name: duplicate name \"a\" (also llm[0])")
    );
}

#[test]
fn serving_without_a_needed_secret_fails_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[[llm]]\nname='a'\ntype='openai'\nmodel='m'\napi_key='env::RAGWAY_TEST_NEVER_SET'\n",
    )
    .unwrap();
    let out = ragway(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--config",
        path.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("llm \"a\" api_key: environment variable RAGWAY_TEST_NEVER_SET is not set"),
        "{stderr}"
    );
}

#[test]
fn no_config_means_the_offline_default() {
    let out = ragway(&["models"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    for expected in ["smollm2", "local", "faiss", "minilm"] {
        assert!(listing.contains(expected), "{listing}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn models_and_ask_work_from_the_terminal() {
    let openai = ragway_testkit::openai::start().await.unwrap();
    let bedrock = ragway_testkit::bedrock::start().await.unwrap();
    let kendra = ragway_testkit::kendra::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config(&openai.url(), &bedrock.url(), &kendra.url())).unwrap();
    let path = path.to_str().unwrap().to_owned();

    let out = tokio::task::spawn_blocking({
        let path = path.clone();
        move || ragway(&["models", "--config", &path])
    })
    .await
    .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("claude-3-opus")
            && listing.contains("bedrock")
            && listing.contains("kendra"),
        "{listing}"
    );

    let out = tokio::task::spawn_blocking(move || {
        ragway(&[
            "ask",
            "--config",
            &path,
            "--llm",
            "claude-3-opus",
            "--store",
            "kendra",
            "Explain",
            "quantum",
            "computing",
        ])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.starts_with("ragway fake answer from us.anthropic.claude-3-opus-20240229-v1:0."),
        "{printed}"
    );
    assert!(printed.contains("Sources:\n  [1] "), "{printed}");
    let sent = &bedrock.requests()[0];
    assert!(sent.path.ends_with("/converse-stream"), "ask streams");
}
