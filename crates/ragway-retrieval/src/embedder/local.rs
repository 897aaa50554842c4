//! A sentence-transformers BERT model (all-MiniLM-L6-v2 by default) run in-process on the CPU:
//! tokenize, BERT's encoder (`bert.rs`), mean pooling over each text's tokens, L2 norm.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config as BertConfig;
use ragway_core::config::LocalEmbedderConfig;
use ragway_core::{BuildError, Embedder, ProviderError};
use tokenizers::{
    PostProcessor, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

use super::bert::Encoder;

pub const PROVIDER_TYPE: &str = "local";

/// What to do when the model folder is not there or incomplete.
const FETCH_HINT: &str = "run scripts/fetch-models.sh to fetch the default models, or point \
                          `path` at a sentence-transformers model folder";

/// An embedding model loaded once from a local sentence-transformers folder.
pub struct LocalEmbedder {
    model: Arc<Model>,
    dimension: usize,
    batch_size: usize,
    provider: String,
}

/// The loaded weights and tokenizer, shared with the blocking threads that run them.
struct Model {
    encoder: Encoder,
    tokenizer: Tokenizer,
}

impl LocalEmbedder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `config.path`.
    pub fn new(config: &LocalEmbedderConfig) -> Result<Self, BuildError> {
        let component = format!("embedder \"{}\"", config.name);
        let fail = |message: String| BuildError {
            component: component.clone(),
            message,
        };
        if config.batch_size == 0 {
            return Err(fail("batch_size must be at least 1".into()));
        }
        let BertFolder {
            config: bert_config,
            tokenizer,
            weights,
            ..
        } = BertFolder::read(&config.path, config.max_tokens).map_err(fail)?;
        let encoder = Encoder::load(weights, &bert_config).map_err(|e| {
            fail(format!(
                "{} does not hold the BERT model config.json describes: {e}",
                config.path.join("model.safetensors").display()
            ))
        })?;

        Ok(Self {
            dimension: encoder.hidden_size(),
            model: Arc::new(Model { encoder, tokenizer }),
            batch_size: config.batch_size,
            provider: format!("{PROVIDER_TYPE} embedder \"{}\"", config.name),
        })
    }
}

/// A BERT model folder, read: `config.json`, `tokenizer.json` (set to truncate at `max_tokens`,
/// special tokens included, longest segment first, and never to pad) and `model.safetensors`.
pub(crate) struct BertFolder {
    pub config: BertConfig,
    /// The labels of a classification head (`id2label`, or `num_labels`; 2 when neither is
    /// given, as in Hugging Face's configs).
    pub labels: usize,
    pub tokenizer: Tokenizer,
    pub weights: VarBuilder<'static>,
}

impl BertFolder {
    /// Reads the folder; the error names the file and what is wrong with it.
    pub fn read(dir: &Path, max_tokens: usize) -> Result<Self, String> {
        if !dir.is_dir() {
            return Err(format!(
                "model folder {} not found: {FETCH_HINT}",
                dir.display()
            ));
        }
        let config_file = read_model_file(dir, "config.json")?;
        let not_bert = |e: &dyn std::fmt::Display| {
            format!(
                "{} is not a BERT config: {e}",
                dir.join("config.json").display()
            )
        };
        let raw: serde_json::Value =
            serde_json::from_slice(&config_file).map_err(|e| not_bert(&e))?;
        let config: BertConfig = serde_json::from_value(raw.clone()).map_err(|e| not_bert(&e))?;
        if let Some(kind) = config.model_type.as_deref().filter(|kind| *kind != "bert") {
            return Err(not_bert(&format!("its model_type is \"{kind}\"")));
        }
        let labels = match (raw.get("id2label"), raw.get("num_labels")) {
            (Some(serde_json::Value::Object(labels)), _) => labels.len(),
            (_, Some(n)) => n.as_u64().map_or(0, |n| n as usize),
            _ => 2,
        };
        if max_tokens > config.max_position_embeddings {
            return Err(format!(
                "max_tokens is {max_tokens} but the model reads at most {} tokens",
                config.max_position_embeddings
            ));
        }

        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_bytes(read_model_file(dir, "tokenizer.json")?)
            .map_err(|e| format!("cannot load {}: {e}", tokenizer_path.display()))?;
        // sentence-transformers truncates at max_seq_length (special tokens included),
        // whatever tokenizer.json says (MiniLM's: 128). Nothing is padded: each text is
        // encoded alone.
        let special = tokenizer
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false));
        if max_tokens <= special {
            return Err(format!(
                "max_tokens must be more than the {special} special tokens the model adds"
            ));
        }
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| format!("cannot set truncation: {e}"))?;
        tokenizer.with_padding(None);

        let device = Device::Cpu;
        let weights_path = dir.join("model.safetensors");
        let bytes = read_model_file(dir, "model.safetensors")?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &device)
            .map_err(|e| format!("cannot read {}: {e}", weights_path.display()))?;
        Ok(Self {
            config,
            labels,
            tokenizer,
            weights: VarBuilder::from_tensors(tensors, DType::F32, &device),
        })
    }
}

/// Reads one file of the model folder; the error names the file and the fix.
fn read_model_file(dir: &Path, file: &str) -> Result<Vec<u8>, String> {
    let path = dir.join(file);
    std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}; {FETCH_HINT}", path.display()))
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn dimension(&self) -> usize {
        self.dimension
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        // One CPU job per batch: a caller that goes away (a client hanging up, a request
        // timing out) drops this future, and no batch after the one running is started, where
        // a single call for all the texts ran to its end for nobody. Each batch queues for the
        // CPU pool anew, so a long request's batches take turns with others' queries.
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch_size) {
            let model = Arc::clone(&self.model);
            let batch = batch.to_vec();
            let batch_size = self.batch_size;
            let embedded =
                ragway_core::cpu::run(&self.provider, move || model.embed_all(&batch, batch_size))
                    .await?
                    .map_err(|e| ProviderError::upstream(&self.provider, None, e))?;
            vectors.extend(embedded);
        }
        Ok(vectors)
    }
}

impl Model {
    /// Embeds every text, `batch_size` at a time; a batch's texts go through the encoder
    /// together, each attending only to its own tokens.
    fn embed_all(&self, texts: &[String], batch_size: usize) -> Result<Vec<Vec<f32>>, String> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(batch_size) {
            let encodings = self
                .tokenizer
                .encode_batch(batch.iter().map(String::as_str).collect(), true)
                .map_err(|e| format!("tokenizer: {e}"))?;
            let ids: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();
            vectors.extend(
                self.encoder
                    .embed(&ids)
                    .map_err(|e| format!("model: {e}"))?,
            );
        }
        Ok(vectors)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde::Deserialize;

    use super::*;

    const MODEL_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/all-MiniLM-L6-v2");
    const REFERENCE: &str = include_str!("../../tests/fixtures/minilm_reference.json");

    fn config(path: impl Into<PathBuf>, batch_size: usize) -> LocalEmbedderConfig {
        LocalEmbedderConfig {
            name: "minilm".into(),
            path: path.into(),
            batch_size,
            max_tokens: 256,
        }
    }

    /// The real model; a missing folder fails the test with the fix, never skips it.
    fn minilm(batch_size: usize) -> LocalEmbedder {
        match LocalEmbedder::new(&config(MODEL_DIR, batch_size)) {
            Ok(embedder) => embedder,
            Err(e) => panic!("cannot load all-MiniLM-L6-v2 ({e}); run scripts/fetch-models.sh"),
        }
    }

    #[derive(Deserialize)]
    struct Reference {
        items: Vec<ReferenceItem>,
    }

    #[derive(Deserialize)]
    struct ReferenceItem {
        text: String,
        vector: Vec<f32>,
    }

    fn reference() -> Reference {
        serde_json::from_str(REFERENCE).expect("fixture parses")
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (norm(a) * norm(b))
    }

    #[tokio::test]
    async fn matches_sentence_transformers() {
        let embedder = minilm(32);
        assert_eq!(embedder.dimension(), 384);
        let reference = reference();
        let texts: Vec<String> = reference.items.iter().map(|i| i.text.clone()).collect();
        let vectors = embedder.embed(&texts).await.expect("embeds");
        assert_eq!(vectors.len(), texts.len());
        for (item, vector) in reference.items.iter().zip(&vectors) {
            assert_eq!(vector.len(), 384);
            let similarity = cosine(vector, &item.vector);
            let short: String = item.text.chars().take(40).collect();
            println!("cosine {similarity:.7}  {short:?}");
            assert!(
                similarity >= 0.999,
                "cosine {similarity} with sentence-transformers for {short:?}"
            );
            let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "not normalised: {norm}");
        }
    }

    /// The fixture's long text only matches because it is cut at 256 tokens: read whole, it
    /// gives another vector, so the reference test does check truncation.
    #[tokio::test]
    async fn long_text_is_truncated_at_max_tokens() {
        let reference = reference();
        let long = reference
            .items
            .iter()
            .find(|i| i.text.len() > 1000)
            .expect("the fixture has a long text");
        let mut untruncated = config(MODEL_DIR, 32);
        untruncated.max_tokens = 512;
        let embedder = LocalEmbedder::new(&untruncated).expect("builds");
        let vector = embedder
            .embed(std::slice::from_ref(&long.text))
            .await
            .expect("embeds");
        let similarity = cosine(&vector[0], &long.vector);
        assert!(similarity < 0.999, "cosine {similarity} without truncation");
    }

    #[tokio::test]
    async fn batch_size_does_not_change_vectors() {
        let texts: Vec<String> = reference().items.into_iter().map(|i| i.text).collect();
        let whole = minilm(32).embed(&texts).await.expect("embeds");
        for batch_size in [1, 3] {
            let batched = minilm(batch_size).embed(&texts).await.expect("embeds");
            for (a, b) in whole.iter().zip(&batched) {
                let largest = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0f32, f32::max);
                assert!(
                    largest < 1e-5,
                    "batch size {batch_size}: differs by {largest}"
                );
            }
        }
        // One text alone gives the vector it gets inside a batch.
        let alone = minilm(32).embed(&texts[..1]).await.expect("embeds");
        assert!(cosine(&alone[0], &whole[0]) > 0.99999);
    }

    #[tokio::test]
    async fn empty_input_gives_no_vectors() {
        let embedder = minilm(32);
        assert!(embedder.embed(&[]).await.expect("embeds").is_empty());
        let blank = embedder.embed(&[String::new()]).await.expect("embeds");
        assert_eq!(blank.len(), 1);
        assert_eq!(blank[0].len(), 384);
    }

    #[test]
    fn missing_folder_names_the_fix() {
        let Err(error) = LocalEmbedder::new(&config("/nonexistent/all-MiniLM-L6-v2", 32)) else {
            panic!("a missing folder must not build");
        };
        let message = error.to_string();
        assert!(message.contains("embedder \"minilm\""), "{message}");
        assert!(
            message.contains("/nonexistent/all-MiniLM-L6-v2"),
            "{message}"
        );
        assert!(message.contains("scripts/fetch-models.sh"), "{message}");
    }

    #[test]
    fn missing_file_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let model = Path::new(MODEL_DIR);
        for file in ["config.json", "tokenizer.json"] {
            std::fs::copy(model.join(file), dir.path().join(file))
                .unwrap_or_else(|e| panic!("{e}: run scripts/fetch-models.sh"));
        }
        let Err(error) = LocalEmbedder::new(&config(dir.path(), 32)) else {
            panic!("a folder without weights must not build");
        };
        let message = error.to_string();
        assert!(message.contains("model.safetensors"), "{message}");
        assert!(message.contains("scripts/fetch-models.sh"), "{message}");
    }

    #[test]
    fn rejects_impossible_settings() {
        let mut zero_batch = config(MODEL_DIR, 0);
        assert!(LocalEmbedder::new(&zero_batch).is_err());
        zero_batch.batch_size = 32;
        zero_batch.max_tokens = 513;
        let Err(error) = LocalEmbedder::new(&zero_batch) else {
            panic!("max_tokens over the model's limit must not build");
        };
        assert!(error.to_string().contains("512"), "{error}");
    }

    /// Throughput figure for the report, not a timed assertion:
    /// `cargo test -p ragway-retrieval --release embedding_speed -- --ignored --nocapture`.
    #[tokio::test]
    #[ignore = "prints a benchmark figure"]
    async fn embedding_speed() {
        let embedder = minilm(32);
        let texts: Vec<String> = (0..32)
            .map(|i| format!("Sentence number {i} about retrieval-augmented generation."))
            .collect();
        embedder.embed(&texts).await.expect("warm-up");
        let rounds = 20;
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            embedder.embed(&texts).await.expect("embeds");
        }
        let per_second = f64::from(rounds * 32) / start.elapsed().as_secs_f64();
        println!("local embedder: {per_second:.0} texts/s (batches of 32 short sentences)");
    }
}
