//! The Bedrock knowledge base retriever against the wire-level fake of bedrock-agent-runtime:
//! chunks become passages with their S3 or web source, ragway filters arrive as Bedrock's
//! `RetrievalFilter` and select the chunks `Filter::matches` selects, and what Bedrock cannot
//! filter is refused before any request.

use ragway_core::config::{BedrockKbStoreConfig, KnowledgeBaseSearchType};
use ragway_core::{EnvOr, Filter, Passage, ProviderError, Retriever};
use ragway_retrieval::bedrock_kb::KnowledgeBaseRetriever;
use ragway_testkit::bedrock_agent::{
    self, DEFAULT_KNOWLEDGE_BASE_ID, KnowledgeBase, KnowledgeBaseResult, SourceLocation,
};
use serde_json::{Value, json};

const QUBITS: &str = "s3://ragway-fake-kb/quantum/qubits.md";
const SUPERPOSITION: &str = "https://docs.example.com/quantum/superposition";
const CORRECTION: &str = "s3://ragway-fake-kb/quantum/error-correction.md";
const CLASSICAL: &str = "https://blog.example.com/classical-computing";

/// An AWS configuration for a fake: static credentials, one region.
fn fake_aws() -> aws_types::SdkConfig {
    use aws_sdk_bedrockagentruntime::config::{
        BehaviorVersion, Credentials, Region, SharedCredentialsProvider,
    };
    aws_types::SdkConfig::builder()
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "test",
        )))
        .region(Region::new("us-west-2"))
        .behavior_version(BehaviorVersion::latest())
        .build()
}

fn store(url: String) -> BedrockKbStoreConfig {
    BedrockKbStoreConfig {
        name: "kb".into(),
        knowledge_base_id: EnvOr::Literal(DEFAULT_KNOWLEDGE_BASE_ID.into()),
        region: None,
        endpoint_url: Some(url),
        search_type: None,
        filter: Filter::new(),
        rerank: None,
        max_attempts: 1,
        connect_timeout_secs: 2.0,
        timeout_secs: 10.0,
    }
}

fn filter(value: Value) -> Filter {
    Filter::parse(&value).unwrap()
}

fn uris(passages: &[Passage]) -> Vec<&str> {
    passages.iter().map(|p| p.uri.as_deref().unwrap()).collect()
}

/// The `vectorSearchConfiguration` of the one request the fake saw.
fn sent(fake: &ragway_testkit::Fake) -> Value {
    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(
        requests[0].path,
        format!("/knowledgebases/{DEFAULT_KNOWLEDGE_BASE_ID}/retrieve")
    );
    requests[0].body["retrievalConfiguration"]["vectorSearchConfiguration"].clone()
}

#[tokio::test]
async fn bedrock_kb_search_returns_the_chunks_with_their_sources_and_metadata() {
    let fake = bedrock_agent::start().await.unwrap();
    let retriever = KnowledgeBaseRetriever::new(&store(fake.url()), &fake_aws()).unwrap();
    let query = "quantum error correction with qubits";
    let passages = retriever.search(query, 3, &Filter::new()).await.unwrap();

    assert_eq!(uris(&passages), [CORRECTION, QUBITS, SUPERPOSITION]);
    let best = &passages[0];
    assert!(
        best.text.starts_with("Quantum error correction"),
        "{best:?}"
    );
    let overlap = bedrock_agent::word_overlap(query, &best.text);
    assert!((f64::from(best.score) - overlap).abs() < 1e-6, "{best:?}");
    assert_eq!(best.title, None);
    // The fake's chunks carry no chunk id: the source and the chunk's place name them.
    assert_eq!(best.id, format!("{CORRECTION}#0"));
    assert_eq!(
        Value::Object(best.metadata.clone()),
        json!({
            "x-amz-bedrock-kb-source-uri": CORRECTION,
            "category": "engineering",
            "year": 2023,
            "tags": ["quantum", "hardware"],
            "location_type": "S3",
        })
    );
    assert_eq!(passages[2].metadata["location_type"], "WEB");
    assert!(passages.windows(2).all(|w| w[0].score >= w[1].score));

    let sent = sent(&fake);
    assert_eq!(sent, json!({ "numberOfResults": 3 }));
    assert_eq!(fake.requests()[0].body["retrievalQuery"]["text"], query);
}

#[tokio::test]
async fn bedrock_kb_sends_the_search_type_and_at_most_100_results() {
    let fake = bedrock_agent::start().await.unwrap();
    let mut config = store(fake.url());
    config.search_type = Some(KnowledgeBaseSearchType::Hybrid);
    let retriever = KnowledgeBaseRetriever::new(&config, &fake_aws()).unwrap();
    let passages = retriever
        .search("qubits", 500, &Filter::new())
        .await
        .unwrap();
    assert_eq!(passages.len(), 4);
    assert_eq!(
        sent(&fake),
        json!({ "numberOfResults": 100, "overrideSearchType": "HYBRID" })
    );

    let fake = bedrock_agent::start().await.unwrap();
    let mut config = store(fake.url());
    config.search_type = Some(KnowledgeBaseSearchType::Semantic);
    let retriever = KnowledgeBaseRetriever::new(&config, &fake_aws()).unwrap();
    retriever.search("qubits", 0, &Filter::new()).await.unwrap();
    assert_eq!(
        sent(&fake),
        json!({ "numberOfResults": 1, "overrideSearchType": "SEMANTIC" })
    );
}

#[tokio::test]
async fn bedrock_kb_filters_arrive_as_retrieval_filters_and_select_what_ragway_means() {
    let fake = bedrock_agent::start().await.unwrap();
    let mut config = store(fake.url());
    config.filter = filter(json!({"tags": {"$contains": "quantum"}}));
    let retriever = KnowledgeBaseRetriever::new(&config, &fake_aws()).unwrap();
    let request = filter(json!({"$or": [
        {"year": {"$gte": 2020, "$lt": 2022}},
        {"$not": {"category": {"$in": ["physics"]}}},
    ]}));
    let passages = retriever.search("quantum", 10, &request).await.unwrap();

    assert_eq!(
        sent(&fake)["filter"],
        json!({"andAll": [
            {"listContains": {"key": "tags", "value": "quantum"}},
            {"orAll": [
                {"andAll": [
                    {"greaterThanOrEquals": {"key": "year", "value": 2020}},
                    {"lessThan": {"key": "year", "value": 2022}},
                ]},
                {"notEquals": {"key": "category", "value": "physics"}},
            ]},
        ]})
    );
    let mut found = uris(&passages);
    found.sort_unstable();
    assert_eq!(found, [CORRECTION, QUBITS]);
    // The chunks Bedrock (the fake) kept are the ones ragway's own filter keeps.
    let merged = config.filter.clone().and(request);
    let mut expected: Vec<String> = bedrock_agent::default_results()
        .iter()
        .filter(|r| merged.matches(&r.metadata))
        .map(|r| r.location.address().to_owned())
        .collect();
    expected.sort_unstable();
    assert_eq!(found, expected);
}

#[tokio::test]
async fn bedrock_kb_nin_keeps_chunks_without_the_field_as_ragway_means() {
    let mut results = bedrock_agent::default_results();
    results.push(KnowledgeBaseResult {
        text: "Quantum notes without a category.".into(),
        location: SourceLocation::Web {
            url: "https://notes.example.com/quantum".into(),
        },
        metadata: serde_json::Map::new(),
    });
    let fake = bedrock_agent::start_with(KnowledgeBase {
        id: DEFAULT_KNOWLEDGE_BASE_ID.into(),
        results,
    })
    .await
    .unwrap();
    let retriever = KnowledgeBaseRetriever::new(&store(fake.url()), &fake_aws()).unwrap();
    let request = filter(json!({"category": {"$nin": ["physics", "engineering"]}}));
    let passages = retriever.search("quantum", 10, &request).await.unwrap();
    let mut found = uris(&passages);
    found.sort_unstable();
    // Bedrock's notIn would drop the chunk without a category; $nin keeps it.
    assert_eq!(found, [CLASSICAL, "https://notes.example.com/quantum"]);
    assert_eq!(
        sent(&fake)["filter"],
        json!({"andAll": [
            {"notEquals": {"key": "category", "value": "physics"}},
            {"notEquals": {"key": "category", "value": "engineering"}},
        ]})
    );
}

#[tokio::test]
async fn bedrock_kb_refuses_what_it_cannot_filter_before_any_request() {
    let fake = bedrock_agent::start().await.unwrap();
    let retriever = KnowledgeBaseRetriever::new(&store(fake.url()), &fake_aws()).unwrap();
    let date = filter(json!({"published": {"$gte": "2024-01-01"}}));
    let error = retriever.check_filter(&date).unwrap_err();
    assert!(
        error.contains("Bedrock knowledge bases compare numbers only: store dates as numbers"),
        "{error}"
    );
    let negated = filter(json!({"$not": {"year": {"$lt": 2020}}}));
    let error = retriever.check_filter(&negated).unwrap_err();
    assert!(error.contains("no exact opposite of a range"), "{error}");
    assert!(
        retriever
            .check_filter(&filter(json!({"$not": {"year": 2020}})))
            .is_ok()
    );

    match retriever.search("quantum", 3, &date).await {
        Err(ProviderError::Unsupported { provider, message }) => {
            assert_eq!(provider, "bedrock_kb store \"kb\"");
            assert!(message.contains("compare numbers only"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(fake.requests().is_empty());

    // The config's own filter is checked when the store is built.
    let mut config = store(fake.url());
    config.filter = date;
    let error = KnowledgeBaseRetriever::new(&config, &fake_aws())
        .err()
        .unwrap();
    assert_eq!(error.component, "vector_store \"kb\" filter");
    assert!(error.message.contains("compare numbers only"), "{error}");
}

#[tokio::test]
async fn bedrock_kb_an_unknown_knowledge_base_is_an_error_naming_it() {
    let fake = bedrock_agent::start().await.unwrap();
    let mut config = store(fake.url());
    config.knowledge_base_id = EnvOr::Literal("KBNOTTHERE".into());
    let retriever = KnowledgeBaseRetriever::new(&config, &fake_aws()).unwrap();
    match retriever.search("quantum", 3, &Filter::new()).await {
        Err(ProviderError::Upstream {
            provider,
            status,
            message,
        }) => {
            assert_eq!(provider, "bedrock_kb store \"kb\"");
            assert_eq!(status, Some(404));
            assert!(
                message.contains("ResourceNotFoundException") && message.contains("KBNOTTHERE"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(retriever.ready().await.is_ok());
}
