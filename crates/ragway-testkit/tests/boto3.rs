//! Drives the Bedrock and Kendra fakes with boto3 (tests/boto3_check.py) to prove the wire format.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use ragway_testkit::{bedrock, kendra};

#[tokio::test(flavor = "multi_thread")]
async fn boto3_talks_to_the_bedrock_and_kendra_fakes() {
    let bedrock = bedrock::start().await.unwrap();
    let kendra = kendra::start().await.unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/boto3_check.py");

    let run = tokio::process::Command::new("python3")
        .arg(&script)
        .env("BEDROCK_URL", bedrock.url())
        .env("KENDRA_URL", kendra.url())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("boto3 check timed out")
        .expect("could not run python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} failed with {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        script.display(),
        output.status,
    );

    // boto3 percent-encodes the model id; the fake records it decoded. Control calls are not kept.
    let paths: Vec<String> = bedrock.requests().into_iter().map(|r| r.path).collect();
    assert!(paths.contains(&"/model/us.anthropic.claude-3-opus-20240229-v1:0/converse".to_owned()));
    assert!(
        paths.contains(
            &"/model/us.anthropic.claude-3-opus-20240229-v1:0/converse-stream".to_owned()
        )
    );
    assert!(paths.contains(&"/model/amazon.titan-embed-text-v2:0/invoke".to_owned()));
    assert!(
        paths.iter().all(|path| !path.starts_with("/__fake")),
        "{paths:?}"
    );
    let kendra_requests = kendra.requests();
    assert_eq!(kendra_requests.len(), 2);
    assert_eq!(
        kendra_requests[0].header("x-amz-target"),
        Some("AWSKendraFrontendService.Retrieve")
    );
    assert_eq!(kendra_requests[0].body["PageSize"], 2);
}
