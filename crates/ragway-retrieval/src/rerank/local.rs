//! A BERT cross-encoder run in-process on the CPU: the query and each passage read together
//! (`[CLS] query [SEP] passage [SEP]`, token type 1 for the passage), the first token's last
//! state through the pooler (dense + tanh) and the one-label classifier. The score is that
//! logit, as sentence-transformers' `CrossEncoder` gives it for MS MARCO models. The encoder
//! is the local embedder's (`embedder/bert.rs`); scoring runs on the CPU pool.

use std::sync::Arc;

use async_trait::async_trait;
use candle_core::Tensor;
use candle_nn::VarBuilder;
use ragway_core::config::LocalRerankerConfig;
use ragway_core::{BuildError, Passage, ProviderError, Reranker};
use tokenizers::Tokenizer;

use super::{order_by, passage_text};
use crate::embedder::bert::Encoder;
use crate::embedder::local::BertFolder;

pub const PROVIDER_TYPE: &str = "local";

/// A cross-encoder loaded once from a Hugging Face `BertForSequenceClassification` folder.
pub struct LocalReranker {
    model: Arc<Model>,
    provider: String,
}

struct Model {
    encoder: Encoder,
    tokenizer: Tokenizer,
    /// `bert.pooler.dense`, absent in checkpoints saved without a pooler.
    pooler: Option<Dense>,
    classifier: Dense,
}

/// A small dense layer, PyTorch's layout: `weight` is `[outputs, inputs]`.
struct Dense {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
}

impl Dense {
    fn load(vb: VarBuilder, inputs: usize, outputs: usize) -> candle_core::Result<Self> {
        let weight = vb.get((outputs, inputs), "weight")?.flatten_all()?;
        let bias = vb.get(outputs, "bias")?;
        Ok(Self {
            weight: weight.to_vec1()?,
            bias: Tensor::to_vec1(&bias)?,
            inputs,
        })
    }

    fn apply(&self, input: &[f32]) -> Vec<f32> {
        self.weight
            .chunks_exact(self.inputs)
            .zip(&self.bias)
            .map(|(row, bias)| bias + row.iter().zip(input).map(|(w, x)| w * x).sum::<f32>())
            .collect()
    }
}

impl LocalReranker {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `config.path`. The
    /// model must be a BERT with a one-label classification head.
    pub fn new(config: &LocalRerankerConfig) -> Result<Self, BuildError> {
        let fail = |message: String| BuildError {
            component: format!("reranker \"{}\"", config.name),
            message,
        };
        let folder = BertFolder::read(&config.path, config.max_tokens).map_err(fail)?;
        let weights_file = config.path.join("model.safetensors");
        let labels = folder.labels;
        if labels != 1 {
            return Err(fail(format!(
                "{} has {labels} labels; a reranker needs a cross-encoder with one (a relevance \
                 score), as cross-encoder/ms-marco-MiniLM-L-6-v2",
                config.path.join("config.json").display()
            )));
        }
        let hidden = folder.config.hidden_size;
        let encoder = Encoder::load(folder.weights.clone(), &folder.config).map_err(|e| {
            fail(format!(
                "{} does not hold the BERT model config.json describes: {e}",
                weights_file.display()
            ))
        })?;
        let root = ["bert.", ""]
            .into_iter()
            .find(|p| {
                folder
                    .weights
                    .contains_tensor(&format!("{p}embeddings.word_embeddings.weight"))
            })
            .unwrap_or("");
        let pooler_name = format!("{root}pooler.dense");
        let pooler = folder
            .weights
            .contains_tensor(&format!("{pooler_name}.weight"))
            .then(|| Dense::load(folder.weights.pp(&pooler_name), hidden, hidden))
            .transpose()
            .map_err(|e| fail(format!("{}: the pooler: {e}", weights_file.display())))?;
        let classifier = Dense::load(folder.weights.pp("classifier"), hidden, 1).map_err(|e| {
            fail(format!(
                "{} has no one-label classifier (`classifier.weight` [1, {hidden}]): {e}; \
                     is it a cross-encoder?",
                weights_file.display()
            ))
        })?;
        Ok(Self {
            model: Arc::new(Model {
                encoder,
                tokenizer: folder.tokenizer,
                pooler,
                classifier,
            }),
            provider: format!("{PROVIDER_TYPE} reranker \"{}\"", config.name),
        })
    }

    /// The relevance of each text to `query` (the model's logit; higher is more relevant).
    pub fn score(&self, query: &str, texts: &[String]) -> Result<Vec<f32>, String> {
        self.model.score(query, texts)
    }
}

impl Model {
    fn score(&self, query: &str, texts: &[String]) -> Result<Vec<f32>, String> {
        let pairs: Vec<(String, String)> = texts
            .iter()
            .map(|text| (query.to_owned(), text.clone()))
            .collect();
        let encodings = self
            .tokenizer
            .encode_batch(pairs, true)
            .map_err(|e| format!("tokenizer: {e}"))?;
        let inputs: Vec<(&[u32], usize)> = encodings
            .iter()
            .map(|e| {
                let second = e
                    .get_type_ids()
                    .iter()
                    .position(|&kind| kind != 0)
                    .unwrap_or(e.get_ids().len());
                (e.get_ids(), second)
            })
            .collect();
        let states = self
            .encoder
            .first_token_states(&inputs)
            .map_err(|e| format!("model: {e}"))?;
        Ok(states
            .iter()
            .map(|state| {
                let pooled = match &self.pooler {
                    Some(pooler) => pooler.apply(state).into_iter().map(f32::tanh).collect(),
                    None => state.clone(),
                };
                self.classifier.apply(&pooled)[0]
            })
            .collect())
    }
}

#[async_trait]
impl Reranker for LocalReranker {
    async fn rerank(
        &self,
        query: &str,
        passages: Vec<Passage>,
        top_k: usize,
    ) -> Result<Vec<Passage>, ProviderError> {
        if passages.is_empty() || top_k == 0 {
            return Ok(Vec::new());
        }
        let model = Arc::clone(&self.model);
        let query = query.to_owned();
        let texts: Vec<String> = passages.iter().map(passage_text).collect();
        let scores = ragway_core::cpu::run(&self.provider, move || model.score(&query, &texts))
            .await?
            .map_err(|e| ProviderError::upstream(&self.provider, None, e))?;
        Ok(order_by(passages, &scores, top_k))
    }
}
