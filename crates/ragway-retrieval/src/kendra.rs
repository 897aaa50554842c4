//! AWS Kendra retriever through the Retrieve API (passages, not whole documents). Read-only.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kendra::Client;
use aws_sdk_kendra::types::{
    AttributeFilter, DocumentAttribute, DocumentAttributeValue, RetrieveResultItem,
    ScoreConfidence as KendraConfidence,
};
use aws_types::SdkConfig;
use ragway_aws::{ClientSettings, CredentialsCheck, client_config, map_sdk_error};
use ragway_core::config::{KendraStoreConfig, ScoreConfidence, secs};
use ragway_core::{BuildError, Filter, Passage, ProviderError, Retriever};
use serde_json::{Value, json};

pub const PROVIDER_TYPE: &str = "kendra";

/// Kendra returns at most 100 passages per Retrieve call.
pub const MAX_PAGE_SIZE: usize = 100;

/// A Kendra index searched for passages.
pub struct KendraRetriever {
    client: Client,
    index_id: String,
    /// Equality constraints from the config, merged with each request's own.
    base_filter: Filter,
    min_confidence: Option<ScoreConfidence>,
    timeout: Duration,
    provider: String,
    credentials: CredentialsCheck,
}

impl KendraRetriever {
    pub fn new(config: &KendraStoreConfig, shared: &SdkConfig) -> Result<Self, BuildError> {
        let component = format!("vector_store \"{}\"", config.name);
        let index_id = config.index_id.resolve().map_err(|message| BuildError {
            component: format!("{component} index_id"),
            message,
        })?;
        let timeout = secs(config.timeout_secs);
        let settings = ClientSettings {
            region: config.region.clone(),
            endpoint_url: config.endpoint_url.clone(),
            max_attempts: config.max_attempts,
            connect_timeout: secs(config.connect_timeout_secs),
            timeout,
        };
        let sdk = client_config(shared, &settings)
            .map_err(|message| BuildError { component, message })?;
        Ok(Self {
            client: Client::new(&sdk),
            index_id,
            base_filter: config.attribute_filter.clone(),
            min_confidence: config.min_score_confidence,
            timeout,
            provider: format!("{PROVIDER_TYPE} store \"{}\"", config.name),
            credentials: CredentialsCheck::new(&sdk),
        })
    }
}

#[async_trait]
impl Retriever for KendraRetriever {
    async fn search(
        &self,
        query: &str,
        top_k: usize,
        filter: &Filter,
    ) -> Result<Vec<Passage>, ProviderError> {
        let mut merged = self.base_filter.clone();
        merged.extend(filter.iter().map(|(k, v)| (k.clone(), v.clone())));
        let page_size = top_k.clamp(1, MAX_PAGE_SIZE);
        let output = self
            .client
            .retrieve()
            .index_id(&self.index_id)
            .query_text(query)
            .page_size(i32::try_from(page_size).unwrap_or(100))
            .set_attribute_filter(attribute_filter(&merged))
            .send()
            .await
            .map_err(|e| map_sdk_error(&self.provider, e, self.timeout))?;
        Ok(output
            .result_items
            .unwrap_or_default()
            .into_iter()
            .filter_map(|item| {
                let confidence = confidence(&item);
                match self.min_confidence {
                    Some(min) if confidence < min => None,
                    _ => Some(passage(item, confidence)),
                }
            })
            .take(top_k)
            .collect())
    }

    /// Kendra answers once its credentials resolve.
    async fn ready(&self) -> Result<(), String> {
        self.credentials.check().await
    }
}

/// Equality on every key, as Kendra's `EqualsTo` (joined with `AndAllFilters` when several).
fn attribute_filter(filter: &Filter) -> Option<AttributeFilter> {
    let mut conditions: Vec<AttributeFilter> = filter
        .iter()
        .filter_map(|(key, value)| {
            let value = match value {
                Value::String(s) => DocumentAttributeValue::builder().string_value(s).build(),
                Value::Number(n) => DocumentAttributeValue::builder()
                    .set_long_value(n.as_i64())
                    .build(),
                Value::Bool(b) => DocumentAttributeValue::builder()
                    .string_value(b.to_string())
                    .build(),
                _ => return None,
            };
            let attribute = DocumentAttribute::builder()
                .key(key)
                .value(value)
                .build()
                .ok()?;
            Some(AttributeFilter::builder().equals_to(attribute).build())
        })
        .collect();
    match conditions.len() {
        0 => None,
        1 => conditions.pop(),
        _ => Some(
            AttributeFilter::builder()
                .set_and_all_filters(Some(conditions))
                .build(),
        ),
    }
}

fn confidence(item: &RetrieveResultItem) -> ScoreConfidence {
    match item
        .score_attributes
        .as_ref()
        .and_then(|s| s.score_confidence.as_ref())
    {
        Some(KendraConfidence::VeryHigh) => ScoreConfidence::VeryHigh,
        Some(KendraConfidence::High) => ScoreConfidence::High,
        Some(KendraConfidence::Medium) => ScoreConfidence::Medium,
        Some(KendraConfidence::Low) => ScoreConfidence::Low,
        _ => ScoreConfidence::NotAvailable,
    }
}

/// Kendra gives confidence buckets, not numbers; they map onto an even 0–1 scale.
fn score(confidence: ScoreConfidence) -> f32 {
    match confidence {
        ScoreConfidence::VeryHigh => 1.0,
        ScoreConfidence::High => 0.75,
        ScoreConfidence::Medium => 0.5,
        ScoreConfidence::Low => 0.25,
        ScoreConfidence::NotAvailable => 0.0,
    }
}

fn passage(item: RetrieveResultItem, confidence: ScoreConfidence) -> Passage {
    let mut metadata = serde_json::Map::new();
    if let Some(document_id) = &item.document_id {
        metadata.insert("document_id".into(), json!(document_id));
    }
    metadata.insert("score_confidence".into(), json!(confidence.as_str()));
    for attribute in item.document_attributes.unwrap_or_default() {
        if let Some(value) = attribute.value.as_ref().and_then(attribute_value) {
            metadata.insert(attribute.key, value);
        }
    }
    Passage {
        id: item.id.or(item.document_id).unwrap_or_default(),
        text: item.content.unwrap_or_default(),
        score: score(confidence),
        title: item.document_title,
        uri: item.document_uri,
        metadata,
    }
}

fn attribute_value(value: &DocumentAttributeValue) -> Option<Value> {
    if let Some(s) = &value.string_value {
        Some(json!(s))
    } else if let Some(n) = value.long_value {
        Some(json!(n))
    } else if let Some(list) = &value.string_list_value {
        Some(json!(list))
    } else {
        value.date_value.as_ref().map(|d| json!(d.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_condition_is_a_plain_equals_and_several_are_anded() {
        let mut filter = Filter::new();
        assert!(attribute_filter(&filter).is_none());
        filter.insert("_language_code".into(), json!("en"));
        let one = attribute_filter(&filter).unwrap();
        assert_eq!(one.equals_to.as_ref().unwrap().key, "_language_code");
        filter.insert("year".into(), json!(2024));
        let both = attribute_filter(&filter).unwrap();
        let parts = both.and_all_filters.unwrap();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().any(|p| {
            p.equals_to
                .as_ref()
                .unwrap()
                .value
                .as_ref()
                .unwrap()
                .long_value
                == Some(2024)
        }));
    }

    #[test]
    fn confidence_orders_and_scores() {
        assert!(ScoreConfidence::VeryHigh > ScoreConfidence::High);
        assert!(ScoreConfidence::Low > ScoreConfidence::NotAvailable);
        assert!(score(ScoreConfidence::High) > score(ScoreConfidence::Medium));
    }
}
