//! AWS Kendra retriever through the Retrieve API (passages, not whole documents). Read-only.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kendra::Client;
use aws_sdk_kendra::primitives::DateTime;
use aws_sdk_kendra::types::{
    AttributeFilter, DocumentAttribute, DocumentAttributeValue, RetrieveResultItem,
    ScoreConfidence as KendraConfidence,
};
use aws_types::SdkConfig;
use ragway_aws::{ClientSettings, CredentialsCheck, client_config, map_sdk_error};
use ragway_core::config::{KendraStoreConfig, ScoreConfidence, secs};
use ragway_core::filter::{Bound, Comparison, Condition, Test};
use ragway_core::{BuildError, Filter, Passage, ProviderError, Retriever};
use serde_json::{Value, json};

pub const PROVIDER_TYPE: &str = "kendra";

/// Kendra returns at most 100 passages per Retrieve call.
pub const MAX_PAGE_SIZE: usize = 100;

/// Kendra takes filters at most this many levels below the top one ("AttributeFilter cannot
/// have a depth of more than 2").
pub const MAX_FILTER_DEPTH: usize = 2;

/// Kendra takes at most this many filters in one `AndAllFilters` or `OrAllFilters` list.
pub const MAX_FILTER_LIST: usize = 10;

/// A Kendra index searched for passages.
pub struct KendraRetriever {
    client: Client,
    index_id: String,
    /// The config's filter, and-ed with each request's own.
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
        attribute_filter(&config.attribute_filter).map_err(|message| BuildError {
            component: format!("{component} attribute_filter"),
            message,
        })?;
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
        let merged = self.base_filter.clone().and(filter.clone());
        let attribute_filter =
            attribute_filter(&merged).map_err(|message| ProviderError::Unsupported {
                provider: self.provider.clone(),
                message,
            })?;
        let page_size = top_k.clamp(1, MAX_PAGE_SIZE);
        let output = self
            .client
            .retrieve()
            .index_id(&self.index_id)
            .query_text(query)
            .page_size(i32::try_from(page_size).unwrap_or(100))
            .set_attribute_filter(attribute_filter)
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

    /// Kendra's `AttributeFilter` has no booleans, compares whole numbers and dates only, and
    /// nests two levels deep with ten filters to a list; the config's filter counts too.
    fn check_filter(&self, filter: &Filter) -> Result<(), String> {
        attribute_filter(&self.base_filter.clone().and(filter.clone())).map(|_| ())
    }

    /// Kendra answers once its credentials resolve.
    async fn ready(&self) -> Result<(), String> {
        self.credentials.check().await
    }
}

/// A filter as Kendra's `AttributeFilter`, none for the empty filter; the error says what
/// Kendra cannot apply. `$ne` and `$nin` are `NotFilter`s, `$in` an `OrAllFilters` of
/// `EqualsTo`, `$contains` a `ContainsAny` of one string; a boolean is the string "true" or "false", as Kendra has no boolean attributes.
fn attribute_filter(filter: &Filter) -> Result<Option<AttributeFilter>, String> {
    if filter.is_empty() {
        return Ok(None);
    }
    let converted = kendra_filter(filter)?;
    let depth = depth(&converted);
    if depth > MAX_FILTER_DEPTH {
        return Err(format!(
            "Kendra applies filters at most {MAX_FILTER_DEPTH} levels below the top one \
             ($and, $or, $not, $ne, $in and $nin each take a level), and this filter (with the \
             store's attribute_filter) takes {depth}"
        ));
    }
    Ok(Some(converted))
}

fn kendra_filter(filter: &Filter) -> Result<AttributeFilter, String> {
    let list = |filters: &[Filter], operator: &str| -> Result<Vec<AttributeFilter>, String> {
        if filters.len() > MAX_FILTER_LIST {
            return Err(format!(
                "Kendra takes at most {MAX_FILTER_LIST} filters in one {operator}, not {}",
                filters.len()
            ));
        }
        filters.iter().map(kendra_filter).collect()
    };
    Ok(match filter {
        Filter::All(filters) => AttributeFilter::builder()
            .set_and_all_filters(Some(list(filters, "$and (or one object's keys)")?))
            .build(),
        Filter::Any(filters) => AttributeFilter::builder()
            .set_or_all_filters(Some(list(filters, "$or")?))
            .build(),
        Filter::Not(filter) => not(kendra_filter(filter)?),
        Filter::Field(condition) => field(condition)?,
    })
}

fn field(condition: &Condition) -> Result<AttributeFilter, String> {
    let key = &condition.key;
    let attribute = |value: DocumentAttributeValue| {
        DocumentAttribute::builder()
            .key(key)
            .value(value)
            .build()
            .map_err(|e| format!("filter on \"{key}\": {e}"))
    };
    let equals = |value: &Value| -> Result<AttributeFilter, String> {
        let value = attribute(attribute_value_of(key, value)?)?;
        Ok(AttributeFilter::builder().equals_to(value).build())
    };
    let one_of = |values: &[Value]| -> Result<AttributeFilter, String> {
        let mut filters = values.iter().map(equals).collect::<Result<Vec<_>, _>>()?;
        if filters.len() > MAX_FILTER_LIST {
            return Err(format!(
                "Kendra takes at most {MAX_FILTER_LIST} values in $in or $nin (on \"{key}\"), \
                 not {}",
                filters.len()
            ));
        }
        Ok(if filters.len() == 1 {
            filters.swap_remove(0)
        } else {
            AttributeFilter::builder()
                .set_or_all_filters(Some(filters))
                .build()
        })
    };
    Ok(match &condition.test {
        Test::Eq(value) => equals(value)?,
        Test::Ne(value) => not(equals(value)?),
        Test::In(values) => one_of(values)?,
        Test::Nin(values) => not(one_of(values)?),
        Test::Contains(Value::String(value)) => {
            let value = DocumentAttributeValue::builder()
                .string_list_value(value)
                .build();
            AttributeFilter::builder()
                .contains_any(attribute(value)?)
                .build()
        }
        Test::Contains(other) => {
            return Err(format!(
                "filter on \"{key}\": Kendra's lists hold strings (StringListValue), so \
                 $contains takes a string, not {other}"
            ));
        }
        Test::Range(comparison, bound) => {
            let value = match bound {
                Bound::Number(n) => long(key, *n)?,
                Bound::Date(date, _) => DocumentAttributeValue::builder()
                    .date_value(DateTime::from_millis(date.timestamp_millis()))
                    .build(),
            };
            let value = attribute(value)?;
            let builder = AttributeFilter::builder();
            match comparison {
                Comparison::Gt => builder.greater_than(value),
                Comparison::Gte => builder.greater_than_or_equals(value),
                Comparison::Lt => builder.less_than(value),
                Comparison::Lte => builder.less_than_or_equals(value),
            }
            .build()
        }
    })
}

fn not(filter: AttributeFilter) -> AttributeFilter {
    AttributeFilter::builder().not_filter(filter).build()
}

/// A value to equal: a string (booleans as "true" / "false") or a whole number.
fn attribute_value_of(key: &str, value: &Value) -> Result<DocumentAttributeValue, String> {
    match value {
        Value::String(s) => Ok(DocumentAttributeValue::builder().string_value(s).build()),
        Value::Bool(b) => Ok(DocumentAttributeValue::builder()
            .string_value(b.to_string())
            .build()),
        Value::Number(n) => long(key, n.as_f64().unwrap_or(f64::NAN)),
        other => Err(format!(
            "filter on \"{key}\": Kendra cannot compare {other}"
        )),
    }
}

/// A whole number as Kendra's `LongValue`; Kendra has no other kind of number.
fn long(key: &str, n: f64) -> Result<DocumentAttributeValue, String> {
    // 2^63 is the first float past i64::MAX.
    if n.fract() != 0.0 || !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&n) {
        return Err(format!(
            "filter on \"{key}\": Kendra compares whole numbers only (Long attributes), not {n}"
        ));
    }
    Ok(DocumentAttributeValue::builder()
        .long_value(n as i64)
        .build())
}

/// Levels below the top filter, as Kendra counts them.
fn depth(filter: &AttributeFilter) -> usize {
    let children = filter
        .and_all_filters
        .iter()
        .chain(filter.or_all_filters.iter())
        .flatten()
        .chain(filter.not_filter.as_deref());
    children.map(|f| 1 + depth(f)).max().unwrap_or(0)
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

    fn kendra(filter: Value) -> Result<Value, String> {
        let filter = Filter::parse(&filter).unwrap();
        Ok(attribute_filter(&filter)?.map_or(Value::Null, |f| debug_json(&f)))
    }

    /// The parts of an `AttributeFilter` the tests look at, as JSON.
    fn debug_json(filter: &AttributeFilter) -> Value {
        let attribute = |a: &DocumentAttribute| {
            let v = a.value.as_ref().unwrap();
            let value = if let Some(s) = &v.string_value {
                json!(s)
            } else if let Some(n) = v.long_value {
                json!(n)
            } else {
                json!(v.date_value.unwrap().to_millis().unwrap())
            };
            json!({ a.key.clone(): value })
        };
        let list = |fs: &Option<Vec<AttributeFilter>>| {
            fs.as_ref()
                .map(|fs| fs.iter().map(debug_json).collect::<Vec<_>>())
        };
        let mut out = serde_json::Map::new();
        for (name, part) in [
            ("EqualsTo", &filter.equals_to),
            ("GreaterThan", &filter.greater_than),
            ("GreaterThanOrEquals", &filter.greater_than_or_equals),
            ("LessThan", &filter.less_than),
            ("LessThanOrEquals", &filter.less_than_or_equals),
        ] {
            if let Some(a) = part {
                out.insert(name.into(), attribute(a));
            }
        }
        if let Some(fs) = list(&filter.and_all_filters) {
            out.insert("AndAllFilters".into(), json!(fs));
        }
        if let Some(fs) = list(&filter.or_all_filters) {
            out.insert("OrAllFilters".into(), json!(fs));
        }
        if let Some(f) = filter.not_filter.as_deref() {
            out.insert("NotFilter".into(), debug_json(f));
        }
        Value::Object(out)
    }

    #[test]
    fn every_operator_becomes_kendras_own() {
        assert_eq!(kendra(json!({})).unwrap(), Value::Null);
        assert_eq!(
            kendra(json!({"_language_code": "en"})).unwrap(),
            json!({"EqualsTo": {"_language_code": "en"}})
        );
        assert_eq!(
            kendra(json!({"$and": [{"year": 2024}, {"draft": false}]})).unwrap(),
            json!({"AndAllFilters": [{"EqualsTo": {"year": 2024}}, {"EqualsTo": {"draft": "false"}}]})
        );
        assert_eq!(
            kendra(json!({"year": {"$gte": 2020, "$lt": 2024.0}})).unwrap(),
            json!({"AndAllFilters": [
                {"GreaterThanOrEquals": {"year": 2020}}, {"LessThan": {"year": 2024}}
            ]})
        );
        assert_eq!(
            kendra(json!({"_created_at": {"$gt": "2024-01-02T00:00:00+01:00"}})).unwrap(),
            json!({"GreaterThan": {"_created_at": 1_704_150_000_000_i64}})
        );
        assert_eq!(
            kendra(json!({"$or": [{"team": {"$in": ["a", "b"]}}, {"team": {"$ne": "c"}}]}))
                .unwrap(),
            json!({"OrAllFilters": [
                {"OrAllFilters": [{"EqualsTo": {"team": "a"}}, {"EqualsTo": {"team": "b"}}]},
                {"NotFilter": {"EqualsTo": {"team": "c"}}}
            ]})
        );
        assert_eq!(
            kendra(json!({"team": {"$nin": ["a", "b"]}})).unwrap(),
            json!({"NotFilter": {"OrAllFilters": [{"EqualsTo": {"team": "a"}}, {"EqualsTo": {"team": "b"}}]}})
        );
    }

    #[test]
    fn what_kendra_cannot_apply_is_named() {
        let cases = [
            (json!({"score": 0.5}), "whole numbers only"),
            (json!({"score": {"$gt": 0.5}}), "whole numbers only"),
            (json!({"n": {"$gt": 1e19}}), "whole numbers only"),
            (
                json!({"$and": [{"a": 1}, {"$or": [{"b": 1}, {"c": {"$nin": [1, 2]}}]}]}),
                "levels below",
            ),
            (
                json!({"t": {"$in": (0..11).collect::<Vec<_>>()}}),
                "at most 10 values",
            ),
            (
                Value::Object((0..11).map(|i| (format!("k{i}"), json!(i))).collect()),
                "at most 10 filters in one $and",
            ),
        ];
        for (filter, expected) in cases {
            let error = kendra(filter.clone()).unwrap_err();
            assert!(error.contains(expected), "{filter}: {error}");
        }
    }

    #[test]
    fn confidence_orders_and_scores() {
        assert!(ScoreConfidence::VeryHigh > ScoreConfidence::High);
        assert!(ScoreConfidence::Low > ScoreConfidence::NotAvailable);
        assert!(score(ScoreConfidence::High) > score(ScoreConfidence::Medium));
    }
}
