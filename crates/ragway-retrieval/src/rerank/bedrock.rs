//! Amazon Bedrock's Rerank API (bedrock-agent-runtime `Rerank`): the query and the candidates'
//! texts sent inline to a reranking model (`amazon.rerank-v1:0`, `cohere.rerank-v3-5:0`),
//! which answers each candidate's index and relevance score, best first.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_bedrockagentruntime::Client;
use aws_sdk_bedrockagentruntime::error::BuildError as RequestError;
use aws_sdk_bedrockagentruntime::types::{
    BedrockRerankingConfiguration, BedrockRerankingModelConfiguration, RerankDocument,
    RerankDocumentType, RerankQuery, RerankQueryContentType, RerankSource, RerankSourceType,
    RerankTextDocument, RerankingConfiguration, RerankingConfigurationType,
};
use aws_types::SdkConfig;
use ragway_aws::{ClientSettings, CredentialsCheck, client_config, map_sdk_error};
use ragway_core::config::{BedrockRerankerConfig, MAX_RERANK_CANDIDATES, secs};
use ragway_core::{BuildError, Passage, ProviderError, Reranker};

use super::passage_text;

pub const PROVIDER_TYPE: &str = "bedrock";

/// A Bedrock reranking model.
pub struct BedrockReranker {
    client: Client,
    /// `arn:aws:bedrock:<region>::foundation-model/<model id>`, or the ARN configured.
    model_arn: String,
    timeout: Duration,
    provider: String,
    credentials: CredentialsCheck,
}

impl BedrockReranker {
    pub fn new(config: &BedrockRerankerConfig, shared: &SdkConfig) -> Result<Self, BuildError> {
        let component = format!("reranker \"{}\"", config.name);
        let timeout = secs(config.timeout_secs);
        let settings = ClientSettings {
            region: config.region.clone(),
            endpoint_url: config.endpoint_url.clone(),
            max_attempts: config.max_attempts,
            connect_timeout: secs(config.connect_timeout_secs),
            timeout,
        };
        let sdk = client_config(shared, &settings).map_err(|message| BuildError {
            component: component.clone(),
            message,
        })?;
        let region = sdk.region().map(ToString::to_string).unwrap_or_default();
        Ok(Self {
            client: Client::new(&sdk),
            model_arn: model_arn(&config.model_id, &region),
            timeout,
            provider: format!("{PROVIDER_TYPE} reranker \"{}\"", config.name),
            credentials: CredentialsCheck::new(&sdk),
        })
    }

    /// The model ARN the requests name.
    pub fn model_arn(&self) -> &str {
        &self.model_arn
    }

    fn request_error(&self, error: RequestError) -> ProviderError {
        ProviderError::upstream(
            &self.provider,
            None,
            format!("building the request: {error}"),
        )
    }
}

/// A model id as the ARN Rerank wants; an ARN is taken as it is.
fn model_arn(model_id: &str, region: &str) -> String {
    if model_id.starts_with("arn:") {
        model_id.to_owned()
    } else {
        format!("arn:aws:bedrock:{region}::foundation-model/{model_id}")
    }
}

#[async_trait]
impl Reranker for BedrockReranker {
    async fn rerank(
        &self,
        query: &str,
        passages: Vec<Passage>,
        top_k: usize,
    ) -> Result<Vec<Passage>, ProviderError> {
        if passages.is_empty() || top_k == 0 {
            return Ok(Vec::new());
        }
        // Bedrock takes at most 1000 sources; the config keeps candidates within that, and a
        // request's top_k is bounded by server.max_top_k.
        let passages: Vec<Passage> = passages.into_iter().take(MAX_RERANK_CANDIDATES).collect();
        let wanted = top_k.min(passages.len());
        let text = |text: String| RerankTextDocument::builder().text(text).build();
        let sources = passages
            .iter()
            .map(|passage| {
                let document = RerankDocument::builder()
                    .r#type(RerankDocumentType::Text)
                    .text_document(text(passage_text(passage)))
                    .build()?;
                RerankSource::builder()
                    .r#type(RerankSourceType::Inline)
                    .inline_document_source(document)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.request_error(e))?;
        let query = RerankQuery::builder()
            .r#type(RerankQueryContentType::Text)
            .text_query(text(query.to_owned()))
            .build()
            .map_err(|e| self.request_error(e))?;
        let model = BedrockRerankingModelConfiguration::builder()
            .model_arn(&self.model_arn)
            .build()
            .map_err(|e| self.request_error(e))?;
        let configuration = RerankingConfiguration::builder()
            .r#type(RerankingConfigurationType::BedrockRerankingModel)
            .bedrock_reranking_configuration(
                BedrockRerankingConfiguration::builder()
                    .number_of_results(i32::try_from(wanted).unwrap_or(i32::MAX))
                    .model_configuration(model)
                    .build(),
            )
            .build()
            .map_err(|e| self.request_error(e))?;
        let output = self
            .client
            .rerank()
            .queries(query)
            .set_sources(Some(sources))
            .reranking_configuration(configuration)
            .send()
            .await
            .map_err(|e| map_sdk_error(&self.provider, e, self.timeout))?;
        ranked(passages, output.results(), wanted)
            .map_err(|message| ProviderError::upstream(&self.provider, None, message))
    }

    /// Bedrock answers once its credentials resolve.
    async fn ready(&self) -> Result<(), String> {
        self.credentials.check().await
    }
}

/// The passages Bedrock ranked, in its order with its scores. An index out of range or given
/// twice is an answer ragway cannot trust: an error, not a guess.
fn ranked(
    passages: Vec<Passage>,
    results: &[aws_sdk_bedrockagentruntime::types::RerankResult],
    wanted: usize,
) -> Result<Vec<Passage>, String> {
    let mut slots: Vec<Option<Passage>> = passages.into_iter().map(Some).collect();
    let count = slots.len();
    let mut ranked = Vec::with_capacity(wanted);
    for result in results.iter().take(wanted) {
        let index = usize::try_from(result.index())
            .ok()
            .filter(|&i| i < count)
            .ok_or_else(|| format!("the answer ranks source {} of {count} sent", result.index()))?;
        let mut passage = slots[index]
            .take()
            .ok_or_else(|| format!("the answer ranks source {index} twice"))?;
        passage.score = result.relevance_score();
        ranked.push(passage);
    }
    Ok(ranked)
}

#[cfg(test)]
mod tests {
    use aws_sdk_bedrockagentruntime::types::RerankResult;

    use super::*;

    fn passage(id: &str) -> Passage {
        Passage {
            id: id.into(),
            text: format!("text of {id}"),
            score: 0.0,
            title: None,
            uri: None,
            metadata: serde_json::Map::new(),
        }
    }

    fn result(index: i32, score: f32) -> RerankResult {
        RerankResult::builder()
            .index(index)
            .relevance_score(score)
            .build()
            .unwrap()
    }

    #[test]
    fn model_ids_become_arns_of_the_region() {
        assert_eq!(
            model_arn("amazon.rerank-v1:0", "us-west-2"),
            "arn:aws:bedrock:us-west-2::foundation-model/amazon.rerank-v1:0"
        );
        let arn = "arn:aws:bedrock:eu-central-1::foundation-model/cohere.rerank-v3-5:0";
        assert_eq!(model_arn(arn, "us-west-2"), arn);
    }

    #[test]
    fn the_answer_orders_the_passages_and_a_hostile_one_is_refused() {
        let passages = || vec![passage("a"), passage("b"), passage("c")];
        let ordered = ranked(passages(), &[result(2, 0.9), result(0, 0.4)], 2).unwrap();
        let ids: Vec<&str> = ordered.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["c", "a"]);
        assert_eq!(ordered[0].score, 0.9);
        // More results than asked for are cut.
        assert_eq!(
            ranked(passages(), &[result(1, 0.9), result(0, 0.4)], 1)
                .unwrap()
                .len(),
            1
        );
        for hostile in [
            vec![result(3, 0.9)],
            vec![result(-1, 0.9)],
            vec![result(1, 0.9), result(1, 0.8)],
        ] {
            let error = ranked(passages(), &hostile, 3).unwrap_err();
            assert!(error.contains("source"), "{error}");
        }
    }
}
