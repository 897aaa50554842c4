//! OpenAI-compatible embeddings (`POST {base_url}/embeddings`), for OpenAI or any server that
//! speaks the same API.

use async_trait::async_trait;
use ragway_core::config::{OpenAiEmbedderConfig, secs};
use ragway_core::{BuildError, Embedder, ProviderError};
use ragway_openai::{OpenAiServer, failure};
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
    /// The vectors' length.
    dimensions: usize,
    /// Whether the config chose it, so that it is asked for (ada-002 refuses the parameter).
    ask_dimensions: bool,
    /// The name failures carry and the time each call may take.
    server: OpenAiServer,
    /// Batches an ingest embeds at once.
    concurrency: usize,
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
        let dimensions = config.dimension().ok_or_else(|| BuildError {
            component: format!("embedder \"{}\" dimensions", config.name),
            message: format!("missing: the size of \"{}\"'s vectors", config.model),
        })?;
        Ok(Self {
            http,
            url: format!("{}/embeddings", config.base_url.trim_end_matches('/')),
            model: config.model.clone(),
            api_key,
            dimensions,
            ask_dimensions: config.dimensions.is_some(),
            server: OpenAiServer::new(
                format!("{PROVIDER_TYPE} embedder \"{}\"", config.name),
                secs(config.timeout_secs),
            ),
            concurrency: config.concurrency,
        })
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn dimension(&self) -> usize {
        self.dimensions
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let mut body = json!({ "model": self.model, "input": texts });
        if self.ask_dimensions {
            body["dimensions"] = json!(self.dimensions);
        }
        let mut request = self
            .http
            .post(&self.url)
            .timeout(self.server.timeout())
            .json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let response = self.server.send(request).await?;
        // Room for every vector as JSON (a float is at most about 25 characters), and no more.
        let limit = texts.len() * self.dimensions * 32 + (1 << 20);
        let limit_in_words = format!(
            "{limit} bytes, more than {} vectors of {} dimensions take",
            texts.len(),
            self.dimensions
        );
        let body = self
            .server
            .read_body(response.bytes_stream(), limit, &limit_in_words, failure)
            .await?;
        let provider = self.server.provider();
        let mut answer: EmbeddingList = serde_json::from_slice(&body)
            .map_err(|e| ProviderError::invalid_response(provider, e.to_string()))?;
        answer.data.sort_by_key(|d| d.index);
        if answer.data.len() != texts.len() {
            return Err(ProviderError::invalid_response(
                provider,
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
                    provider,
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

#[cfg(test)]
mod tests {
    use super::*;
    use ragway_testkit::Scripted;

    fn embedder(base_url: &str, dimensions: usize) -> OpenAiEmbedder {
        let config: OpenAiEmbedderConfig = toml::from_str(&format!(
            "name = 'e'\nmodel = 'text-embedding-3-small'\nbase_url = '{base_url}/v1'\ndimensions = {dimensions}\n"
        ))
        .unwrap();
        OpenAiEmbedder::new(&config, reqwest::Client::new()).unwrap()
    }

    #[tokio::test]
    async fn vectors_come_back_in_input_order() {
        let fake = ragway_testkit::openai::start().await.unwrap();
        let texts = vec!["first text".to_owned(), "second text".to_owned()];
        let vectors = embedder(&fake.url(), 8).embed(&texts).await.unwrap();
        assert_eq!(vectors.len(), 2);
        for (text, vector) in texts.iter().zip(&vectors) {
            let expected = ragway_testkit::embed(text, 8);
            assert!(
                vector
                    .iter()
                    .zip(&expected)
                    .all(|(a, b)| (a - b).abs() < 1e-6),
                "{text}"
            );
        }
        let sent = &fake.requests()[0].body;
        assert_eq!(sent["dimensions"], 8);
        assert_eq!(sent["model"], "text-embedding-3-small");
        assert!(
            embedder(&fake.url(), 8)
                .embed(&[])
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_known_model_needs_no_dimensions_and_is_not_asked_for_them() {
        let fake = ragway_testkit::openai::start().await.unwrap();
        for (model, size) in [
            ("text-embedding-ada-002", 1536),
            ("text-embedding-3-large", 3072),
        ] {
            let config: OpenAiEmbedderConfig = toml::from_str(&format!(
                "name = 'e'\nmodel = '{model}'\nbase_url = '{}/v1'\n",
                fake.url()
            ))
            .unwrap();
            let embedder = OpenAiEmbedder::new(&config, reqwest::Client::new()).unwrap();
            assert_eq!(embedder.dimension(), size);
            let vectors = embedder.embed(&["a text".to_owned()]).await.unwrap();
            assert_eq!(vectors[0].len(), size, "{model}");
            let sent = fake.requests().last().unwrap().body.clone();
            assert!(sent.get("dimensions").is_none(), "{sent}");
        }
        let unknown: OpenAiEmbedderConfig = toml::from_str(&format!(
            "name = 'e'\nmodel = 'my-embedder'\nbase_url = '{}/v1'\n",
            fake.url()
        ))
        .unwrap();
        let Err(error) = OpenAiEmbedder::new(&unknown, reqwest::Client::new()) else {
            panic!("an embedder of unknown size was built");
        };
        assert!(error.to_string().contains("my-embedder"), "{error}");
    }

    #[tokio::test]
    async fn throttling_is_reported_as_throttling() {
        let fake = ragway_testkit::openai::start().await.unwrap();
        fake.push(Scripted::Error {
            status: 429,
            kind: "rate_limit_exceeded".into(),
            message: "slow down".into(),
        });
        let error = embedder(&fake.url(), 8)
            .embed(&["x".to_owned()])
            .await
            .unwrap_err();
        assert!(matches!(error, ProviderError::Throttled { .. }), "{error}");
    }

    #[tokio::test]
    async fn throttling_carries_the_servers_retry_after() {
        let fake = ragway_testkit::openai::start().await.unwrap();
        fake.push(Scripted::Throttled {
            retry_after_secs: 7,
        });
        let error = embedder(&fake.url(), 8)
            .embed(&["x".to_owned()])
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                ProviderError::Throttled {
                    retry_after: Some(wait),
                    ..
                } if wait == std::time::Duration::from_secs(7)
            ),
            "{error:?}"
        );
    }
}
