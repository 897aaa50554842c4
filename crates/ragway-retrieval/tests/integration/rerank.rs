//! The local reranker (a BERT cross-encoder) against an independent reference: a small random
//! cross-encoder written by `tests/python/cross_encoder_reference.py`, which also tokenises the
//! pairs with Hugging Face's `tokenizers` and scores them with BERT written in NumPy. Then a
//! store that names the reranker, built by the factory, answers in the reranker's order; and
//! folders that are not one-label BERT cross-encoders are refused naming why. Bedrock's Rerank
//! against the test kit's fake of it (checked by boto3 in ragway-testkit).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ragway_core::config::{
    BedrockRerankerConfig, IndexKind, LocalRerankerConfig, Metric, RerankConfig, RerankerConfig,
    VectorStoreConfig,
};
use ragway_core::{Embedder, Filter, Passage, Reranker};
use ragway_retrieval::rerank::{BedrockReranker, LocalReranker};
use serde::Deserialize;

use crate::support::{HashEmbedder, config, doc, python};

const TOKENIZER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../models/all-MiniLM-L6-v2/tokenizer.json"
);

#[derive(Deserialize)]
struct Reference {
    ids: Vec<u32>,
    types: Vec<u32>,
    score: f64,
}

const QUERY: &str = "How do honey bees tell the hive where flowers are?";

fn passages() -> Vec<String> {
    vec![
        "Honey bees dance to tell the hive where the flowers are.".into(),
        "The moon pulls the oceans, and the tides rise and fall.".into(),
        // Longer than max_tokens with the query: the longer side is cut first.
        "Volcanoes erupted across the island, burying the harbour in ash. ".repeat(12),
        "Ünïcödé — naïve café, 東京, emoji 🐝 and a tab\there.".into(),
        String::new(),
    ]
}

/// Writes the reference model into `dir` and returns the reference's answer for every pair.
fn reference(dir: &Path, pairs: &[(String, String)], max_tokens: usize) -> Vec<Reference> {
    assert!(
        Path::new(TOKENIZER).is_file(),
        "{TOKENIZER} is missing: run scripts/fetch-models.sh"
    );
    let pairs_file = dir.join("pairs.json");
    std::fs::write(&pairs_file, serde_json::to_vec(pairs).unwrap()).unwrap();
    let model = dir.join("model");
    let max = PathBuf::from(max_tokens.to_string());
    let out = python(
        "cross_encoder_reference.py",
        &[&model, Path::new(TOKENIZER), &pairs_file, &max],
    );
    serde_json::from_str(&out).unwrap()
}

fn reranker(model: &Path, max_tokens: usize) -> LocalReranker {
    LocalReranker::new(&LocalRerankerConfig {
        name: "cross".into(),
        path: model.to_path_buf(),
        max_tokens,
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn scores_match_an_independent_cross_encoder_and_order_the_passages() {
    let dir = tempfile::tempdir().unwrap();
    let max_tokens = 48;
    let pairs: Vec<(String, String)> = passages()
        .into_iter()
        .map(|p| (QUERY.to_owned(), p))
        .collect();
    let expected = reference(dir.path(), &pairs, max_tokens);
    // The pairs as a cross-encoder reads them: [CLS] query [SEP] passage [SEP], the passage of
    // token type 1, the long one cut to max_tokens.
    assert!(expected.iter().all(|r| r.ids.len() <= max_tokens));
    assert_eq!(expected[2].ids.len(), max_tokens);
    assert!(expected[0].types.contains(&1) && expected[0].types[0] == 0);

    let model = dir.path().join("model");
    let local = reranker(&model, max_tokens);
    let scores = local.score(QUERY, &passages()).unwrap();
    for (i, (got, want)) in scores.iter().zip(&expected).enumerate() {
        assert!(
            (f64::from(*got) - want.score).abs() < 1e-4 * want.score.abs().max(1.0),
            "pair {i}: ragway {got}, reference {}",
            want.score
        );
    }
    // The scores differ enough to order by: the weights are random, the order is theirs.
    let mut order: Vec<usize> = (0..expected.len()).collect();
    order.sort_by(|&a, &b| expected[b].score.total_cmp(&expected[a].score));

    let candidates: Vec<Passage> = passages()
        .into_iter()
        .enumerate()
        .map(|(i, text)| Passage {
            id: format!("p{i}"),
            text,
            score: 0.0,
            title: None,
            uri: None,
            metadata: serde_json::Map::new(),
        })
        .collect();
    let ranked = local.rerank(QUERY, candidates, 3).await.unwrap();
    let ids: Vec<String> = ranked.iter().map(|p| p.id.clone()).collect();
    let want: Vec<String> = order[..3].iter().map(|i| format!("p{i}")).collect();
    assert_eq!(ids, want);
    assert!((f64::from(ranked[0].score) - expected[order[0]].score).abs() < 1e-4);
}

#[tokio::test]
async fn a_store_naming_a_reranker_answers_in_its_order() {
    let dir = tempfile::tempdir().unwrap();
    let texts = passages();
    let documents: Vec<_> = texts[..4]
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let mut document = doc(&format!("d{i}"), text);
            document.title = None;
            document
        })
        .collect();
    let pairs: Vec<(String, String)> = texts[..4]
        .iter()
        .map(|text| (QUERY.to_owned(), text.clone()))
        .collect();
    let expected = reference(dir.path(), &pairs, 512);

    let mut store = config(
        &dir.path().join("store"),
        Metric::InnerProduct,
        IndexKind::Flat,
    );
    // Chunks as long as the longest document: one chunk per document.
    store.chunk_size = 2000;
    store.rerank = Some(RerankConfig {
        reranker: "cross".into(),
        candidates: 4,
    });
    let reranker_config = RerankerConfig::Local(LocalRerankerConfig {
        name: "cross".into(),
        path: dir.path().join("model"),
        max_tokens: 512,
    });
    let mut embedders: BTreeMap<String, Arc<dyn Embedder>> = BTreeMap::new();
    embedders.insert("hash".into(), HashEmbedder::new());
    let mut rerankers = BTreeMap::new();
    rerankers.insert(
        "cross".to_owned(),
        ragway_retrieval::build_reranker(&reranker_config, None).unwrap(),
    );
    let built = ragway_retrieval::build(
        &VectorStoreConfig::Faiss(store),
        &ragway_retrieval::Shared {
            aws: None,
            embedders: &embedders,
            rerankers: &rerankers,
        },
    )
    .await
    .unwrap();
    built.documents.unwrap().add(documents).await.unwrap();

    // Every document is a candidate; the reranker picks the best two, in its order.
    let found = built
        .retriever
        .search(QUERY, 2, &Filter::new())
        .await
        .unwrap();
    let mut order: Vec<usize> = (0..4).collect();
    order.sort_by(|&a, &b| expected[b].score.total_cmp(&expected[a].score));
    let ids: Vec<&str> = found.iter().map(|p| p.id.as_str()).collect();
    let want: Vec<String> = order[..2].iter().map(|i| format!("d{i}#0")).collect();
    assert_eq!(ids, want);
}

#[test]
fn folders_that_are_not_one_label_bert_cross_encoders_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    reference(dir.path(), &[], 64);
    let model = dir.path().join("model");
    let config_file = model.join("config.json");
    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_file).unwrap()).unwrap();
    let refused = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut edited = original.clone();
        change(&mut edited);
        std::fs::write(&config_file, edited.to_string()).unwrap();
        match LocalReranker::new(&LocalRerankerConfig {
            name: "cross".into(),
            path: model.clone(),
            max_tokens: 64,
        }) {
            Ok(_) => panic!("accepted {edited}"),
            Err(error) => error.to_string(),
        }
    };
    let two_labels = refused(&|c| {
        c["id2label"] = serde_json::json!({"0": "NO", "1": "YES"});
    });
    assert!(
        two_labels.contains("2 labels") && two_labels.contains("reranker \"cross\""),
        "{two_labels}"
    );
    let roberta = refused(&|c| c["model_type"] = "xlm-roberta".into());
    assert!(roberta.contains("xlm-roberta"), "{roberta}");
    let long = refused(&|c| c["max_position_embeddings"] = 32.into());
    assert!(long.contains("max_tokens"), "{long}");
    let missing = LocalReranker::new(&LocalRerankerConfig {
        name: "cross".into(),
        path: dir.path().join("nowhere"),
        max_tokens: 64,
    })
    .err()
    .unwrap()
    .to_string();
    assert!(missing.contains("not found"), "{missing}");
}

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

fn bedrock_config(model_id: &str, url: String) -> BedrockRerankerConfig {
    BedrockRerankerConfig {
        name: "cohere".into(),
        model_id: model_id.into(),
        region: None,
        endpoint_url: Some(url),
        max_attempts: 1,
        connect_timeout_secs: 2.0,
        timeout_secs: 10.0,
    }
}

#[tokio::test]
async fn bedrock_rerank_sends_the_candidates_and_keeps_the_models_order() {
    let fake = ragway_testkit::bedrock_agent::start().await.unwrap();
    let reranker = BedrockReranker::new(
        &bedrock_config("cohere.rerank-v3-5:0", fake.url()),
        &fake_aws(),
    )
    .unwrap();
    let query = "quantum error correction with qubits";
    let candidates: Vec<Passage> = [
        (None, "Classical computers use bits."),
        (Some("Qubits"), "A qubit holds a superposition."),
        (
            Some("Error correction"),
            "Quantum error correction protects qubits.",
        ),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (title, text))| Passage {
        id: format!("p{i}"),
        text: text.into(),
        score: 0.0,
        title: title.map(str::to_owned),
        uri: None,
        metadata: serde_json::Map::new(),
    })
    .collect();
    let ranked = reranker.rerank(query, candidates.clone(), 2).await.unwrap();
    let ids: Vec<&str> = ranked.iter().map(|p| p.id.as_str()).collect();
    // The fake scores by the query's words found in title + text: all five, then two.
    assert_eq!(ids, ["p2", "p1"]);
    let overlap = ragway_testkit::bedrock_agent::word_overlap(
        query,
        "Error correction Quantum error correction protects qubits.",
    );
    assert!((f64::from(ranked[0].score) - overlap).abs() < 1e-6);

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/rerank");
    let body = &requests[0].body;
    let configuration = &body["rerankingConfiguration"]["bedrockRerankingConfiguration"];
    assert_eq!(
        configuration["modelConfiguration"]["modelArn"],
        "arn:aws:bedrock:us-west-2::foundation-model/cohere.rerank-v3-5:0"
    );
    assert_eq!(configuration["numberOfResults"], 2);
    assert_eq!(
        body["sources"][1]["inlineDocumentSource"]["textDocument"]["text"],
        "Qubits A qubit holds a superposition."
    );
    assert_eq!(body["queries"][0]["textQuery"]["text"], query);

    // A model Bedrock does not rerank with is refused by it, and the error says so.
    let wrong = BedrockReranker::new(
        &bedrock_config("amazon.titan-embed-text-v2:0", fake.url()),
        &fake_aws(),
    )
    .unwrap();
    let error = wrong.rerank(query, candidates, 2).await.unwrap_err();
    assert!(
        error.to_string().contains("bedrock reranker \"cohere\""),
        "{error}"
    );
}
