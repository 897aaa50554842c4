//! OpenAI-compatible embeddings (`POST {base_url}/embeddings`), for OpenAI or any server that
//! speaks the same API.

use std::time::Duration;

use async_trait::async_trait;
use ragway_core::config::{OpenAiEmbedderConfig, secs};
use ragway_core::{BuildError, Embedder, ProviderError};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

pub const PROVIDER_TYPE: &str = "openai";

/// An embedding model behind an OpenAI-compatible endpoint.
pub struct OpenAiEmbedder {
    http: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<SecretString>,
    dimensions: usize,
    timeout: Duration,
    provider: String,
}

impl OpenAiEmbedder {
    pub fn new(config: &OpenAiEmbedderConfig, http: reqwest::Client) -> Result<Self, BuildError> {
        let api_key = match &config.api_key {
            Some(reference) => Some(reference.resolve().map_err(|message| BuildError {
                component: format!("embedder \"{}\" api_key", config.name),
                message,
            })?),
            None => None,
        };
        Ok(Self {
            http,
            url: format!("{}/embeddings", config.base_url.trim_end_matches('/')),
            model: config.model.clone(),
            api_key,
            dimensions: config.dimensions,
            timeout: secs(config.timeout_secs),
            provider: format!("{PROVIDER_TYPE} embedder \"{}\"", config.name),
        })
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn dimension(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let body = json!({ "model": self.model, "input": texts, "dimensions": self.dimensions });
        let mut request = self.http.post(&self.url).timeout(self.timeout).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                ProviderError::Timeout {
                    provider: self.provider.clone(),
                    after: self.timeout,
                }
            } else {
                ProviderError::unreachable(&self.provider, e.to_string())
            }
        })?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| {
                    v.pointer("/error/message")
                        .and_then(|m| m.as_str())
                        .map(str::to_owned)
                })
                .unwrap_or(text);
            return Err(if status.as_u16() == 429 {
                ProviderError::Throttled {
                    provider: self.provider.clone(),
                    message,
                    retry_after: None,
                }
            } else {
                ProviderError::upstream(&self.provider, Some(status.as_u16()), message)
            });
        }
        let mut answer: EmbeddingList = response
            .json()
            .await
            .map_err(|e| ProviderError::invalid_response(&self.provider, e.to_string()))?;
        answer.data.sort_by_key(|d| d.index);
        if answer.data.len() != texts.len() {
            return Err(ProviderError::invalid_response(
                &self.provider,
                format!(
                    "asked for {} vectors, got {}",
                    texts.len(),
                    answer.data.len()
                ),
            ));
        }
        let mut vectors = Vec::with_capacity(texts.len());
        for item in answer.data {
            if item.embedding.len() != self.dimensions {
                return Err(ProviderError::invalid_response(
                    &self.provider,
                    format!(
                        "expected vectors of {} dimensions, got {}",
                        self.dimensions,
                        item.embedding.len()
                    ),
                ));
            }
            vectors.push(item.embedding);
        }
        Ok(vectors)
    }
}

#[derive(Deserialize)]
struct EmbeddingList {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    index: usize,
    embedding: Vec<f32>,
}
