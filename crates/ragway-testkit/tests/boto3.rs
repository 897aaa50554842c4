//! Drives the Bedrock, Bedrock Agent Runtime and Kendra fakes with boto3 (tests/boto3_check.py) to
//! prove the wire format.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use ragway_testkit::{bedrock, bedrock_agent, kendra};

#[tokio::test(flavor = "multi_thread")]
async fn boto3_talks_to_every_aws_fake() {
    let bedrock = bedrock::start().await.unwrap();
    let kendra = kendra::start().await.unwrap();
    let bedrock_agent = bedrock_agent::start().await.unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/boto3_check.py");

    let run = tokio::process::Command::new("python3")
        .arg(&script)
        .env("BEDROCK_URL", bedrock.url())
        .env("KENDRA_URL", kendra.url())
        .env("BEDROCK_AGENT_URL", bedrock_agent.url())
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

    // The agent fake saw boto3's Rerank and Retrieve bodies as the check sent them.
    let agent_requests = bedrock_agent.requests();
    let reranks: Vec<_> = agent_requests
        .iter()
        .filter(|request| request.path == "/rerank")
        .collect();
    assert_eq!(reranks.len(), 3, "{agent_requests:?}");
    let configuration = &reranks[0].body["rerankingConfiguration"]["bedrockRerankingConfiguration"];
    assert_eq!(
        configuration["modelConfiguration"]["modelArn"],
        "arn:aws:bedrock:us-west-2::foundation-model/amazon.rerank-v1:0"
    );
    assert_eq!(configuration["numberOfResults"], 5);
    let sources = reranks[0].body["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 6);
    assert_eq!(
        sources[1]["inlineDocumentSource"]["textDocument"]["text"],
        "Quantum error correction protects qubits."
    );
    assert_eq!(
        sources[5]["inlineDocumentSource"]["jsonDocument"],
        serde_json::json!({ "title": "Quantum error" })
    );
    let retrieves: Vec<_> = agent_requests
        .iter()
        .filter(|request| request.path == "/knowledgebases/KB12345678/retrieve")
        .collect();
    assert_eq!(retrieves.len(), 8, "{agent_requests:?}");
    let search = &retrieves[1].body["retrievalConfiguration"]["vectorSearchConfiguration"];
    assert_eq!(search["filter"]["andAll"][1]["greaterThan"]["value"], 2020);
    assert_eq!(search["overrideSearchType"], "HYBRID");
    assert!(
        agent_requests
            .iter()
            .any(|request| request.path == "/knowledgebases/KBNOTTHERE/retrieve")
    );
}
