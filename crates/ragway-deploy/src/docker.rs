//! Path A for the image: when a Docker daemon answers, `docker build` the project's
//! Dockerfile and `docker push` the result (logging in to ECR with its token first). Without a
//! daemon, deploy assembles the image itself (`ragway-image`), which is what CI uses.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

use crate::error::DeployError;

/// Whether `docker` exists and its daemon answers within a few seconds.
pub async fn daemon_answers() -> bool {
    let probe = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(5), probe).await {
        Ok(Ok(output)) => output.status.success() && !output.stdout.trim_ascii().is_empty(),
        _ => false,
    }
}

/// Runs one docker command, failing with its stderr.
async fn docker(args: &[&str], stdin: Option<&str>) -> Result<String, DeployError> {
    let mut child = Command::new("docker")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| DeployError::Image(format!("cannot run docker: {e}")))?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input
            .write_all(text.as_bytes())
            .await
            .map_err(|e| DeployError::Image(format!("cannot talk to docker: {e}")))?;
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| DeployError::Image(format!("docker {}: {e}", args[0])))?;
    if !output.status.success() {
        return Err(DeployError::Image(format!(
            "docker {} failed: {}",
            args[0],
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Builds `context`'s Dockerfile for linux/amd64 as `reference` (`host/repo:tag`), logs in to
/// `host` when credentials are given, pushes, and returns the digest the registry gave.
pub async fn build_and_push(
    context: &Path,
    reference: &str,
    host: &str,
    auth: Option<(&str, &str)>,
) -> Result<String, DeployError> {
    if !context.join("Dockerfile").is_file() {
        return Err(DeployError::Image(format!(
            "no Dockerfile in {}: run deploy from the ragway checkout, or pass --builder oci",
            context.display()
        )));
    }
    let context = context.display().to_string();
    docker(
        &[
            "build",
            "--platform",
            "linux/amd64",
            "-t",
            reference,
            &context,
        ],
        None,
    )
    .await?;
    if let Some((user, password)) = auth {
        docker(
            &["login", "--username", user, "--password-stdin", host],
            Some(password),
        )
        .await?;
    }
    let pushed = docker(&["push", reference], None).await?;
    // The last line reads "TAG: digest: sha256:... size: N".
    pushed
        .split_whitespace()
        .skip_while(|word| *word != "digest:")
        .nth(1)
        .filter(|digest| digest.starts_with("sha256:"))
        .map(str::to_owned)
        .ok_or_else(|| {
            DeployError::Image(format!("docker push named no digest: {}", pushed.trim()))
        })
}
