//! The Dockerfile cannot be built here (no Docker engine), so this checks what it relies on:
//! base images pinned by digest, every file it copies from the context exists (or is fetched by
//! scripts/fetch-models.sh) and is not excluded by .dockerignore, the port it exposes is the
//! one it serves on, and its health check, stop signal, user and command.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined.
fn instructions() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (keyword, rest) = line.trim().split_once(' ').unwrap_or((&line, ""));
            (keyword.to_uppercase(), rest.trim().to_owned())
        })
        .collect()
}

fn args_of(instructions: &[(String, String)], keyword: &str) -> Vec<String> {
    instructions
        .iter()
        .filter(|(k, _)| k == keyword)
        .map(|(_, rest)| rest.clone())
        .collect()
}

/// The last value of a single-valued instruction, as Docker uses it.
fn last(instructions: &[(String, String)], keyword: &str) -> String {
    args_of(instructions, keyword)
        .pop()
        .unwrap_or_else(|| panic!("the Dockerfile has no {keyword}"))
}

/// Whether .dockerignore keeps `path` out of the build context: its rules in order, the last
/// match winning; `*` within one path segment, `**/` at any depth, a folder covering its files.
fn ignored(path: &str) -> bool {
    let rules = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    let mut ignored = false;
    for rule in rules
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (keep, pattern) = match rule.strip_prefix('!') {
            Some(pattern) => (true, pattern),
            None => (false, rule),
        };
        let pattern = pattern.trim_end_matches('/');
        let matches = |candidate: &str| glob(pattern, candidate);
        let mut prefixes = path
            .match_indices('/')
            .map(|(at, _)| &path[..at])
            .chain([path]);
        if prefixes.any(matches) {
            ignored = !keep;
        }
    }
    ignored
}

fn glob(pattern: &str, path: &str) -> bool {
    if let Some(rest) = pattern.strip_prefix("**/") {
        return glob(rest, path)
            || path
                .split_once('/')
                .is_some_and(|(_, tail)| glob(pattern, tail));
    }
    let (pattern, path): (Vec<_>, Vec<_>) =
        (pattern.split('/').collect(), path.split('/').collect());
    pattern.len() == path.len()
        && pattern
            .iter()
            .zip(&path)
            .all(|(p, s)| match p.split_once('*') {
                None => p == s,
                Some((head, tail)) => {
                    s.len() >= head.len() + tail.len() && s.starts_with(head) && s.ends_with(tail)
                }
            })
}

#[test]
fn the_ignore_matcher_reads_rules_as_docker_does() {
    assert!(glob("models/*.gguf", "models/a.gguf"));
    assert!(!glob("models/*.gguf", "models/sub/a.gguf"));
    assert!(glob("**/node_modules", "tests/ui/node_modules"));
    assert!(ignored("target/release/ragway"));
    assert!(ignored("models/gemma-3-270m-Q4_K_M.gguf"));
    assert!(!ignored("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert!(!ignored("crates/ragway/src/main.rs"));
}

/// Whether `image` names a tag and an image digest (`name:tag@sha256:<64 hex>`): the digest
/// fixes the bytes, the tag says which release it is for whoever refreshes it.
fn pinned_by_digest(image: &str) -> bool {
    let Some((name, digest)) = image.split_once("@sha256:") else {
        return false;
    };
    let tag = name
        .rsplit_once(':')
        .map(|(_, tag)| tag)
        .filter(|tag| !tag.contains('/'));
    digest.len() == 64
        && digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && tag.is_some_and(|tag| !tag.is_empty() && tag != "latest")
}

#[test]
fn the_digest_check_refuses_tags_alone_and_malformed_digests() {
    let digest = "6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1";
    assert!(pinned_by_digest(&format!(
        "rust:1.95-bookworm@sha256:{digest}"
    )));
    assert!(pinned_by_digest(&format!(
        "localhost:5000/rust:1.95@sha256:{digest}"
    )));
    for image in [
        "rust:1.95-bookworm".to_owned(),
        "debian:bookworm-slim@sha256:".to_owned(),
        format!("rust:1.95-bookworm@sha256:{}", &digest[1..]),
        format!("rust:1.95-bookworm@sha256:{}", digest.to_uppercase()),
        format!("rust@sha256:{digest}"),
        format!("rust:latest@sha256:{digest}"),
        format!("localhost:5000/rust@sha256:{digest}"),
    ] {
        assert!(!pinned_by_digest(&image), "{image}");
    }
}

#[test]
fn base_images_and_the_frontend_are_pinned_by_digest() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let frontend = text
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("# syntax="))
        .expect("the first line names the Dockerfile frontend");
    assert!(
        pinned_by_digest(frontend),
        "# syntax={frontend} is not pinned by digest"
    );

    let instructions = instructions();
    let defaults: HashMap<String, String> = args_of(&instructions, "ARG")
        .iter()
        .filter_map(|arg| arg.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let mut stages = Vec::new();
    let mut bases = 0;
    for from in args_of(&instructions, "FROM") {
        let mut words = from.split_whitespace().filter(|w| !w.starts_with("--"));
        let image = words.next().unwrap();
        let image = match image.strip_prefix("${").and_then(|i| i.strip_suffix('}')) {
            Some(arg) => defaults
                .get(arg)
                .unwrap_or_else(|| panic!("FROM {image}: no default for {arg}")),
            None => image,
        };
        if !stages.iter().any(|stage| stage == image) {
            bases += 1;
            assert!(
                pinned_by_digest(image),
                "FROM {image} is not pinned by digest (name:tag@sha256:...)"
            );
        }
        if let (Some("AS" | "as"), Some(stage)) = (words.next(), words.next()) {
            stages.push(stage.to_owned());
        }
    }
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    assert!(bases >= 3, "{bases} FROMs of a base image");
}

#[test]
fn every_file_it_copies_is_in_the_repository_or_fetched_and_not_ignored() {
    let fetch = std::fs::read_to_string(root().join("scripts/fetch-models.sh")).unwrap();
    let mut copied = 0;
    for copy in args_of(&instructions(), "COPY") {
        let words: Vec<&str> = copy.split_whitespace().collect();
        if words.iter().any(|w| w.starts_with("--from=")) {
            continue;
        }
        let sources: Vec<&str> = words
            .iter()
            .copied()
            .filter(|w| !w.starts_with("--"))
            .collect();
        let (_, sources) = sources.split_last().unwrap();
        for source in sources {
            copied += 1;
            let source = source.trim_end_matches('/');
            assert!(!ignored(source), "COPY {source}: excluded by .dockerignore");
            if let Some(model) = source.strip_prefix("models/") {
                // models/ is git-ignored: the setup script fetches what the image takes.
                assert!(
                    fetch.contains(model),
                    "COPY {source}: scripts/fetch-models.sh does not fetch {model}"
                );
            } else {
                assert!(
                    root().join(source).exists(),
                    "COPY {source}: not in the repository"
                );
            }
        }
    }
    assert!(copied >= 5, "{copied} sources");
}

#[test]
fn it_serves_on_the_exposed_port_with_a_health_check_and_a_non_root_user() {
    let instructions = instructions();
    let env: HashMap<String, String> = args_of(&instructions, "ENV")
        .iter()
        .flat_map(|env| {
            env.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter_map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect();
    let bind = env.get("RAGWAY_BIND").expect("ENV RAGWAY_BIND");
    let bind: std::net::SocketAddr = bind.parse().unwrap();
    assert!(
        bind.ip().is_unspecified(),
        "{bind}: unreachable from outside the container"
    );
    assert_eq!(last(&instructions, "EXPOSE"), bind.port().to_string());
    assert_eq!(
        env.get("OMP_WAIT_POLICY").map(String::as_str),
        Some("PASSIVE")
    );

    let healthcheck = last(&instructions, "HEALTHCHECK");
    assert!(
        healthcheck.ends_with(r#"CMD ["ragway", "healthcheck", "--live"]"#),
        "{healthcheck}"
    );
    assert_eq!(last(&instructions, "STOPSIGNAL"), "SIGTERM");
    let user = last(&instructions, "USER");
    let name = user.split(':').next().unwrap();
    assert!(name != "root" && name != "0", "USER {user}");
    assert_eq!(last(&instructions, "ENTRYPOINT"), r#"["ragway"]"#);
    assert_eq!(last(&instructions, "CMD"), r#"["serve"]"#);

    // The commands the image runs exist and read RAGWAY_BIND.
    for command in ["serve", "healthcheck"] {
        let help = Command::new(crate::support::ragway_bin())
            .args([command, "--help"])
            .output()
            .unwrap();
        assert!(help.status.success(), "ragway {command} --help");
        assert!(
            String::from_utf8_lossy(&help.stdout).contains("RAGWAY_BIND"),
            "ragway {command} does not read RAGWAY_BIND"
        );
    }
}
