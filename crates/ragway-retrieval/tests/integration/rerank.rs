//! The local reranker (a BERT cross-encoder) against an independent reference: a small random
//! cross-encoder written by `tests/python/cross_encoder_reference.py`, which also tokenises the
//! pairs with Hugging Face's `tokenizers` and scores them with BERT written in NumPy. Then a
//! store that names the reranker, built by the factory, answers in the reranker's order; and
//! folders that are not one-label BERT cross-encoders are refused naming why.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ragway_core::config::{
    IndexKind, LocalRerankerConfig, Metric, RerankConfig, RerankerConfig, VectorStoreConfig,
};
use ragway_core::{Embedder, Filter, Passage, Reranker};
use ragway_retrieval::rerank::LocalReranker;
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
