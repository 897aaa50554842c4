//! Amazon Titan Text Embeddings V2 on AWS Bedrock, through `InvokeModel`. The model takes one
//! text per call, so a batch is embedded with several calls in flight, answers kept in order.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_types::SdkConfig;
use futures::{StreamExt as _, TryStreamExt as _, stream};
use ragway_aws::{ClientSettings, CredentialsCheck, client_config, map_sdk_error};
use ragway_core::config::{BedrockEmbedderConfig, secs};
use ragway_core::{BuildError, Embedder, ProviderError};
use serde::Deserialize;
use serde_json::json;

pub const PROVIDER_TYPE: &str = "bedrock";

/// A Titan Text Embeddings V2 model on AWS Bedrock.
pub struct BedrockEmbedder {
    client: Client,
    model_id: String,
    dimensions: usize,
    normalize: bool,
    concurrency: usize,
    timeout: Duration,
    provider: String,
    credentials: CredentialsCheck,
}

impl BedrockEmbedder {
    pub fn new(config: &BedrockEmbedderConfig, shared: &SdkConfig) -> Result<Self, BuildError> {
        let timeout = secs(config.timeout_secs);
        let settings = ClientSettings {
            region: config.region.clone(),
            endpoint_url: config.endpoint_url.clone(),
            max_attempts: config.max_attempts,
            connect_timeout: secs(config.connect_timeout_secs),
            timeout,
        };
        let sdk = client_config(shared, &settings).map_err(|message| BuildError {
            component: format!("embedder \"{}\"", config.name),
            message,
        })?;
        Ok(Self {
            client: Client::new(&sdk),
            model_id: config.model_id.clone(),
            dimensions: config.dimensions,
            normalize: config.normalize,
            concurrency: config.concurrency.max(1),
            timeout,
            provider: format!("{PROVIDER_TYPE} embedder \"{}\"", config.name),
            credentials: CredentialsCheck::new(&sdk),
        })
    }

    async fn embed_one(&self, text: &str) -> Result<Vec<f32>, ProviderError> {
        let body = json!({
            "inputText": text,
            "dimensions": self.dimensions,
            "normalize": self.normalize,
        });
        let output = self
            .client
            .invoke_model()
            .model_id(&self.model_id)
            .content_type("application/json")
            .accept("application/json")
            .body(Blob::new(body.to_string()))
            .send()
            .await
            .map_err(|e| map_sdk_error(&self.provider, e, self.timeout))?;
        let answer: TitanEmbedding = serde_json::from_slice(output.body().as_ref())
            .map_err(|e| ProviderError::invalid_response(&self.provider, e.to_string()))?;
        if answer.embedding.len() != self.dimensions {
            return Err(ProviderError::invalid_response(
                &self.provider,
                format!(
                    "expected vectors of {} dimensions, got {}",
                    self.dimensions,
                    answer.embedding.len()
                ),
            ));
        }
        Ok(answer.embedding)
    }
}

#[async_trait]
impl Embedder for BedrockEmbedder {
    fn dimension(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        // Futures made up front (they do nothing until polled): a closure inside the stream
        // would not be general enough over the texts' lifetime for `async_trait`'s boxing.
        let calls: Vec<_> = texts.iter().map(|text| self.embed_one(text)).collect();
        stream::iter(calls)
            .buffered(self.concurrency)
            .try_collect()
            .await
    }

    /// Bedrock answers once its credentials resolve.
    async fn ready(&self) -> Result<(), String> {
        self.credentials.check().await
    }
}

#[derive(Deserialize)]
struct TitanEmbedding {
    embedding: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_bedrockruntime::config::{Credentials, Region};
    use ragway_testkit::{Fake, Scripted};

    async fn embedder(fake: &Fake, dimensions: usize, concurrency: usize) -> BedrockEmbedder {
        let config: BedrockEmbedderConfig = toml::from_str(&format!(
            "name = 'titan'\nregion = 'us-east-1'\nendpoint_url = '{}'\ndimensions = {dimensions}\n\
             concurrency = {concurrency}\nmax_attempts = 1\n",
            fake.url()
        ))
        .unwrap();
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("a", "b", None, None, "test"))
            .load()
            .await;
        BedrockEmbedder::new(&config, &shared).unwrap()
    }

    #[tokio::test]
    async fn a_batch_comes_back_in_input_order() {
        let fake = ragway_testkit::bedrock::start().await.unwrap();
        let texts: Vec<String> = (0..20).map(|i| format!("text number {i}")).collect();
        let vectors = embedder(&fake, 256, 4).await.embed(&texts).await.unwrap();
        assert_eq!(vectors.len(), texts.len());
        for (text, vector) in texts.iter().zip(&vectors) {
            assert_eq!(vector, &ragway_testkit::embed(text, 256), "{text}");
        }
        let requests = fake.requests();
        assert_eq!(requests.len(), 20);
        assert_eq!(
            requests[0].path,
            "/model/amazon.titan-embed-text-v2:0/invoke"
        );
        assert_eq!(requests[0].body["dimensions"], 256);
        assert_eq!(requests[0].body["normalize"], true);
        assert!(
            embedder(&fake, 256, 4)
                .await
                .embed(&[])
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn throttling_and_validation_errors_keep_their_kind() {
        let fake = ragway_testkit::bedrock::start().await.unwrap();
        fake.push(Scripted::Error {
            status: 429,
            kind: "ThrottlingException".into(),
            message: "slow down".into(),
        });
        let error = embedder(&fake, 1024, 1)
            .await
            .embed(&["x".to_owned()])
            .await
            .unwrap_err();
        assert!(matches!(error, ProviderError::Throttled { .. }), "{error}");
        fake.push(Scripted::Error {
            status: 400,
            kind: "ValidationException".into(),
            message: "inputText too long".into(),
        });
        let error = embedder(&fake, 1024, 1)
            .await
            .embed(&["x".to_owned()])
            .await
            .unwrap_err();
        assert!(error.to_string().contains("inputText too long"), "{error}");
        assert!(
            error.to_string().contains("bedrock embedder \"titan\""),
            "{error}"
        );
    }
}
