//! Amazon Bedrock knowledge bases through bedrock-agent-runtime's Retrieve API: chunks with
//! their source location and metadata. Read-only: Bedrock ingests its data sources itself.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_bedrockagentruntime::Client;
use aws_sdk_bedrockagentruntime::types::{
    FilterAttribute, KnowledgeBaseQuery, KnowledgeBaseRetrievalConfiguration,
    KnowledgeBaseRetrievalResult, KnowledgeBaseVectorSearchConfiguration, RetrievalFilter,
    RetrievalResultLocation, SearchType,
};
use aws_types::SdkConfig;
use ragway_aws::{
    ClientSettings, CredentialsCheck, client_config, document_from_json, json_from_document,
    map_sdk_error,
};
use ragway_core::config::{BedrockKbStoreConfig, KnowledgeBaseSearchType, secs};
use ragway_core::filter::{Bound, Comparison, Condition, Test};
use ragway_core::{BuildError, Filter, Passage, ProviderError, Retriever};
use serde_json::{Map, Value, json};

pub const PROVIDER_TYPE: &str = "bedrock_kb";

/// Retrieve returns at most 100 chunks per call (`numberOfResults` is 1 to 100).
pub const MAX_RESULTS: usize = 100;

/// Bedrock's `FilterAttribute.key` is 1 to 100 characters.
pub const MAX_KEY_CHARS: usize = 100;

/// The metadata Bedrock adds to every chunk: the chunk's own id, and where it came from.
const CHUNK_ID_KEY: &str = "x-amz-bedrock-kb-chunk-id";
const SOURCE_URI_KEY: &str = "x-amz-bedrock-kb-source-uri";

/// A Bedrock knowledge base searched for chunks.
pub struct KnowledgeBaseRetriever {
    client: Client,
    knowledge_base_id: String,
    /// Retrieve's `overrideSearchType`; Bedrock chooses when none.
    search_type: Option<SearchType>,
    /// The config's filter, and-ed with each request's own.
    base_filter: Filter,
    timeout: Duration,
    provider: String,
    credentials: CredentialsCheck,
}

impl KnowledgeBaseRetriever {
    pub fn new(config: &BedrockKbStoreConfig, shared: &SdkConfig) -> Result<Self, BuildError> {
        let component = format!("vector_store \"{}\"", config.name);
        let knowledge_base_id =
            config
                .knowledge_base_id
                .resolve()
                .map_err(|message| BuildError {
                    component: format!("{component} knowledge_base_id"),
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
        retrieval_filter(&config.filter).map_err(|message| BuildError {
            component: format!("{component} filter"),
            message,
        })?;
        let sdk = client_config(shared, &settings)
            .map_err(|message| BuildError { component, message })?;
        Ok(Self {
            client: Client::new(&sdk),
            knowledge_base_id,
            search_type: config.search_type.map(|kind| match kind {
                KnowledgeBaseSearchType::Hybrid => SearchType::Hybrid,
                KnowledgeBaseSearchType::Semantic => SearchType::Semantic,
            }),
            base_filter: config.filter.clone(),
            timeout,
            provider: format!("{PROVIDER_TYPE} store \"{}\"", config.name),
            credentials: CredentialsCheck::new(&sdk),
        })
    }

    /// The config's filter and the request's together, as Bedrock takes them.
    fn request_filter(&self, filter: &Filter) -> Result<Converted, String> {
        retrieval_filter(&self.base_filter.clone().and(filter.clone()))
    }
}

#[async_trait]
impl Retriever for KnowledgeBaseRetriever {
    async fn search(
        &self,
        query: &str,
        top_k: usize,
        filter: &Filter,
    ) -> Result<Vec<Passage>, ProviderError> {
        let filter =
            match self
                .request_filter(filter)
                .map_err(|message| ProviderError::Unsupported {
                    provider: self.provider.clone(),
                    message,
                })? {
                Converted::Everything => None,
                Converted::Filter(filter) => Some(filter),
                // Bedrock has no filter that passes nothing, and needs none.
                Converted::Nothing => return Ok(Vec::new()),
            };
        let number_of_results = top_k.clamp(1, MAX_RESULTS);
        let search = KnowledgeBaseVectorSearchConfiguration::builder()
            .number_of_results(i32::try_from(number_of_results).unwrap_or(100))
            .set_override_search_type(self.search_type.clone())
            .set_filter(filter)
            .build();
        let output = self
            .client
            .retrieve()
            .knowledge_base_id(&self.knowledge_base_id)
            .retrieval_query(KnowledgeBaseQuery::builder().text(query).build())
            .retrieval_configuration(
                KnowledgeBaseRetrievalConfiguration::builder()
                    .vector_search_configuration(search)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| map_sdk_error(&self.provider, e, self.timeout))?;
        Ok(output
            .retrieval_results
            .into_iter()
            .enumerate()
            .map(|(index, result)| passage(result, index))
            .take(top_k)
            .collect())
    }

    /// Bedrock compares numbers only (no dates), has no opposite of a range or of
    /// `listContains`, and takes keys of at most 100 characters; the config's filter counts too.
    fn check_filter(&self, filter: &Filter) -> Result<(), String> {
        self.request_filter(filter).map(|_| ())
    }

    /// Bedrock answers once its credentials resolve.
    async fn ready(&self) -> Result<(), String> {
        self.credentials.check().await
    }
}

/// What a ragway filter becomes for Bedrock.
#[derive(Debug)]
enum Converted {
    /// It passes every chunk: Retrieve gets no filter.
    Everything,
    /// It passes no chunk (`{"$not": {}}`), which no `RetrievalFilter` says.
    Nothing,
    Filter(RetrievalFilter),
}

/// A filter as Bedrock's `RetrievalFilter`; the error says what Bedrock cannot apply.
///
/// `$eq` is `equals`, `$ne` `notEquals`, `$in` `in`, `$contains` `listContains`, the ranges
/// `greaterThan`/`greaterThanOrEquals`/`lessThan`/`lessThanOrEquals`, `$and` `andAll` and
/// `$or` `orAll` (one member goes unwrapped, as Bedrock wants two or more). `$nin` is an
/// `andAll` of `notEquals`, not `notIn`: Bedrock's `notIn` skips chunks without the key, which
/// `$nin` passes (`notEquals` passes them too). `$not` is pushed down to the tests (De Morgan);
/// a negated range or `$contains` has no exact opposite in Bedrock and is refused.
fn retrieval_filter(filter: &Filter) -> Result<Converted, String> {
    convert(filter, false)
}

/// `filter`, or its negation when `negated`.
fn convert(filter: &Filter, negated: bool) -> Result<Converted, String> {
    match filter {
        Filter::All(filters) if negated => any(filters.iter().map(|f| convert(f, true))),
        Filter::All(filters) => all(filters.iter().map(|f| convert(f, false))),
        Filter::Any(filters) if negated => all(filters.iter().map(|f| convert(f, true))),
        Filter::Any(filters) => any(filters.iter().map(|f| convert(f, false))),
        Filter::Not(filter) => convert(filter, !negated),
        Filter::Field(condition) => field(condition, negated),
    }
}

/// Every member holds: an `andAll` of the members that test something, nested `andAll`s
/// flattened into it.
fn all(members: impl Iterator<Item = Result<Converted, String>>) -> Result<Converted, String> {
    let members = members.collect::<Result<Vec<_>, _>>()?;
    let mut filters = Vec::with_capacity(members.len());
    for member in members {
        match member {
            Converted::Everything => {}
            Converted::Nothing => return Ok(Converted::Nothing),
            Converted::Filter(RetrievalFilter::AndAll(inner)) => filters.extend(inner),
            Converted::Filter(filter) => filters.push(filter),
        }
    }
    Ok(match filters.len() {
        0 => Converted::Everything,
        1 => Converted::Filter(filters.swap_remove(0)),
        _ => Converted::Filter(RetrievalFilter::AndAll(filters)),
    })
}

/// At least one member holds: an `orAll`, nested `orAll`s flattened into it.
fn any(members: impl Iterator<Item = Result<Converted, String>>) -> Result<Converted, String> {
    let members = members.collect::<Result<Vec<_>, _>>()?;
    let mut filters = Vec::with_capacity(members.len());
    for member in members {
        match member {
            Converted::Everything => return Ok(Converted::Everything),
            Converted::Nothing => {}
            Converted::Filter(RetrievalFilter::OrAll(inner)) => filters.extend(inner),
            Converted::Filter(filter) => filters.push(filter),
        }
    }
    Ok(match filters.len() {
        0 => Converted::Nothing,
        1 => Converted::Filter(filters.swap_remove(0)),
        _ => Converted::Filter(RetrievalFilter::OrAll(filters)),
    })
}

/// One field's test, or its negation when `negated`.
fn field(condition: &Condition, negated: bool) -> Result<Converted, String> {
    let key = condition.key.as_str();
    if key.chars().count() > MAX_KEY_CHARS {
        return Err(format!(
            "filter on \"{key}\": Bedrock takes metadata keys of at most {MAX_KEY_CHARS} characters"
        ));
    }
    let attribute = |value: Value| {
        FilterAttribute::builder()
            .key(key)
            .value(document_from_json(value))
            .build()
            .map_err(|e| format!("filter on \"{key}\": {e}"))
    };
    let none_of = |values: &[Value]| {
        all(values.iter().map(|value| {
            Ok(Converted::Filter(RetrievalFilter::NotEquals(attribute(
                value.clone(),
            )?)))
        }))
    };
    let filter = match (&condition.test, negated) {
        (Test::Eq(value), false) | (Test::Ne(value), true) => {
            RetrievalFilter::Equals(attribute(value.clone())?)
        }
        (Test::Ne(value), false) | (Test::Eq(value), true) => {
            RetrievalFilter::NotEquals(attribute(value.clone())?)
        }
        (Test::In(values), false) | (Test::Nin(values), true) => {
            if values.is_empty() {
                return Ok(Converted::Nothing);
            }
            RetrievalFilter::In(attribute(Value::Array(values.clone()))?)
        }
        (Test::Nin(values), false) | (Test::In(values), true) => return none_of(values),
        (Test::Contains(Value::String(value)), false) => {
            RetrievalFilter::ListContains(attribute(json!(value))?)
        }
        (Test::Contains(other), false) => {
            return Err(format!(
                "filter on \"{key}\": Bedrock's list metadata holds strings, so $contains \
                 takes a string, not {other}"
            ));
        }
        (Test::Contains(_), true) => {
            return Err(format!(
                "filter on \"{key}\": Bedrock cannot apply $not around $contains: it has no \
                 opposite of listContains"
            ));
        }
        (Test::Range(_, Bound::Date(_, text)), _) => {
            return Err(format!(
                "filter on \"{key}\": Bedrock knowledge bases compare numbers only: store dates \
                 as numbers in the metadata (such as 20240131, or Unix seconds) and compare \
                 those, not \"{text}\""
            ));
        }
        (Test::Range(comparison, Bound::Number(_)), true) => {
            return Err(format!(
                "filter on \"{key}\": Bedrock cannot apply $not around {}: it has no exact \
                 opposite of a range ({} also drops chunks without a number in \"{key}\", which \
                 $not keeps); write {} if that is what you mean",
                comparison.operator(),
                comparison.opposite().operator(),
                comparison.opposite().operator(),
            ));
        }
        (Test::Range(comparison, Bound::Number(bound)), false) => {
            let bound = attribute(number(*bound))?;
            match comparison {
                Comparison::Gt => RetrievalFilter::GreaterThan(bound),
                Comparison::Gte => RetrievalFilter::GreaterThanOrEquals(bound),
                Comparison::Lt => RetrievalFilter::LessThan(bound),
                Comparison::Lte => RetrievalFilter::LessThanOrEquals(bound),
            }
        }
    };
    Ok(Converted::Filter(filter))
}

/// A bound as JSON: a whole number as an integer (`2020`, not `2020.0`).
fn number(n: f64) -> Value {
    // Beyond 2^53 a float no longer holds every whole number; keep it a float there.
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        json!(n as i64)
    } else {
        json!(n)
    }
}

/// Where a chunk came from, as a link: the S3 URI, or the page's URL for a web, Confluence,
/// Salesforce, SharePoint, OneDrive or Google Drive source, or the Kendra document's URI.
fn address(location: &RetrievalResultLocation) -> Option<String> {
    location
        .s3_location
        .as_ref()
        .and_then(|l| l.uri.clone())
        .or_else(|| location.web_location.as_ref().and_then(|l| l.url.clone()))
        .or_else(|| {
            location
                .confluence_location
                .as_ref()
                .and_then(|l| l.url.clone())
        })
        .or_else(|| {
            location
                .salesforce_location
                .as_ref()
                .and_then(|l| l.url.clone())
        })
        .or_else(|| {
            location
                .share_point_location
                .as_ref()
                .and_then(|l| l.url.clone())
        })
        .or_else(|| {
            location
                .one_drive_location
                .as_ref()
                .and_then(|l| l.url.clone())
        })
        .or_else(|| {
            location
                .google_drive_location
                .as_ref()
                .and_then(|l| l.url.clone())
        })
        .or_else(|| {
            location
                .kendra_document_location
                .as_ref()
                .and_then(|l| l.uri.clone())
        })
}

/// A chunk as a passage. Its id is its source and Bedrock's chunk id (`uri#chunk-id`), or its
/// place in this answer when Bedrock gives no chunk id; its metadata is Bedrock's, with
/// `location_type` (`S3`, `WEB`, ...) and `document_id` added where the chunk's own do not
/// have them.
fn passage(result: KnowledgeBaseRetrievalResult, index: usize) -> Passage {
    // Sorted, so that the same chunk always reads the same.
    let sorted: BTreeMap<String, Value> = result
        .metadata
        .iter()
        .flatten()
        .map(|(key, value)| (key.clone(), json_from_document(value)))
        .collect();
    let mut metadata: Map<String, Value> = sorted.into_iter().collect();
    let location = result.location.as_ref();
    if let Some(location) = location {
        metadata
            .entry("location_type")
            .or_insert_with(|| json!(location.r#type.as_str()));
    }
    if let Some(document_id) = &result.document_id {
        metadata
            .entry("document_id")
            .or_insert_with(|| json!(document_id));
    }
    let text_of = |key: &str| metadata.get(key).and_then(Value::as_str).map(str::to_owned);
    let uri = location
        .and_then(address)
        .or_else(|| text_of(SOURCE_URI_KEY));
    let source = uri
        .clone()
        .or_else(|| {
            location
                .and_then(|l| l.custom_document_location.as_ref())
                .and_then(|l| l.id.clone())
        })
        .or_else(|| result.document_id.clone())
        .unwrap_or_else(|| PROVIDER_TYPE.to_owned());
    let id = match text_of(CHUNK_ID_KEY) {
        Some(chunk) => format!("{source}#{chunk}"),
        None => format!("{source}#{index}"),
    };
    Passage {
        id,
        text: result.content.map(|c| c.text).unwrap_or_default(),
        score: result.score.unwrap_or(0.0) as f32,
        title: text_of("title"),
        uri,
        metadata,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_bedrockagentruntime::types::{
        RetrievalResultContent, RetrievalResultLocationType, RetrievalResultS3Location,
    };

    fn bedrock(filter: Value) -> Result<Value, String> {
        let filter = Filter::parse(&filter).unwrap();
        Ok(match retrieval_filter(&filter)? {
            Converted::Everything => Value::Null,
            Converted::Nothing => json!("nothing"),
            Converted::Filter(filter) => wire(&filter),
        })
    }

    /// A `RetrievalFilter` as its JSON on the wire.
    fn wire(filter: &RetrievalFilter) -> Value {
        let attribute =
            |a: &FilterAttribute| json!({"key": a.key, "value": json_from_document(&a.value)});
        let (name, value) = match filter {
            RetrievalFilter::AndAll(fs) => {
                ("andAll", json!(fs.iter().map(wire).collect::<Vec<_>>()))
            }
            RetrievalFilter::OrAll(fs) => ("orAll", json!(fs.iter().map(wire).collect::<Vec<_>>())),
            RetrievalFilter::Equals(a) => ("equals", attribute(a)),
            RetrievalFilter::NotEquals(a) => ("notEquals", attribute(a)),
            RetrievalFilter::In(a) => ("in", attribute(a)),
            RetrievalFilter::NotIn(a) => ("notIn", attribute(a)),
            RetrievalFilter::ListContains(a) => ("listContains", attribute(a)),
            RetrievalFilter::GreaterThan(a) => ("greaterThan", attribute(a)),
            RetrievalFilter::GreaterThanOrEquals(a) => ("greaterThanOrEquals", attribute(a)),
            RetrievalFilter::LessThan(a) => ("lessThan", attribute(a)),
            RetrievalFilter::LessThanOrEquals(a) => ("lessThanOrEquals", attribute(a)),
            other => panic!("not produced: {other:?}"),
        };
        json!({ name: value })
    }

    fn attr(key: &str, value: Value) -> Value {
        json!({"key": key, "value": value})
    }

    #[test]
    fn every_operator_becomes_bedrocks_own() {
        let cases = [
            (json!({}), Value::Null),
            (
                json!({"category": "physics"}),
                json!({"equals": attr("category", json!("physics"))}),
            ),
            (
                json!({"draft": {"$ne": true}}),
                json!({"notEquals": attr("draft", json!(true))}),
            ),
            (
                json!({"year": {"$in": [2019, 2021]}}),
                json!({"in": attr("year", json!([2019, 2021]))}),
            ),
            (
                json!({"tags": {"$contains": "basics"}}),
                json!({"listContains": attr("tags", json!("basics"))}),
            ),
            (
                json!({"year": {"$gte": 2020, "$lt": 2023.5}}),
                json!({"andAll": [
                    {"greaterThanOrEquals": attr("year", json!(2020))},
                    {"lessThan": attr("year", json!(2023.5))},
                ]}),
            ),
            (
                json!({"year": {"$gt": 2020, "$lte": 2030}}),
                json!({"andAll": [
                    {"greaterThan": attr("year", json!(2020))},
                    {"lessThanOrEquals": attr("year", json!(2030))},
                ]}),
            ),
            // $nin passes chunks without the key, as notEquals does and notIn does not.
            (
                json!({"category": {"$nin": ["history", "art"]}}),
                json!({"andAll": [
                    {"notEquals": attr("category", json!("history"))},
                    {"notEquals": attr("category", json!("art"))},
                ]}),
            ),
            (
                json!({"category": {"$nin": ["history"]}}),
                json!({"notEquals": attr("category", json!("history"))}),
            ),
            // A one-member $or goes unwrapped; andAll and orAll take two or more.
            (
                json!({"$or": [{"a": 1}]}),
                json!({"equals": attr("a", json!(1))}),
            ),
            (
                json!({"$or": [{"a": 1}, {"$and": [{"b": 2}, {"c": 3}]}]}),
                json!({"orAll": [
                    {"equals": attr("a", json!(1))},
                    {"andAll": [{"equals": attr("b", json!(2))}, {"equals": attr("c", json!(3))}]},
                ]}),
            ),
        ];
        for (filter, expected) in cases {
            assert_eq!(bedrock(filter.clone()).unwrap(), expected, "{filter}");
        }
    }

    #[test]
    fn not_is_pushed_down_to_the_tests() {
        let cases = [
            (
                json!({"$not": {"a": 1}}),
                json!({"notEquals": attr("a", json!(1))}),
            ),
            (
                json!({"$not": {"a": {"$ne": 1}}}),
                json!({"equals": attr("a", json!(1))}),
            ),
            (
                json!({"$not": {"$not": {"a": 1}}}),
                json!({"equals": attr("a", json!(1))}),
            ),
            (
                json!({"$not": {"a": {"$nin": ["x", "y"]}}}),
                json!({"in": attr("a", json!(["x", "y"]))}),
            ),
            (
                json!({"$not": {"a": {"$in": ["x", "y"]}}}),
                json!({"andAll": [
                    {"notEquals": attr("a", json!("x"))},
                    {"notEquals": attr("a", json!("y"))},
                ]}),
            ),
            // not(a and b) = not a or not b; not(a or b) = not a and not b.
            (
                json!({"$not": {"a": 1, "b": 2}}),
                json!({"orAll": [
                    {"notEquals": attr("a", json!(1))},
                    {"notEquals": attr("b", json!(2))},
                ]}),
            ),
            (
                json!({"$not": {"$or": [{"a": 1}, {"b": {"$in": [2, 3]}}]}}),
                json!({"andAll": [
                    {"notEquals": attr("a", json!(1))},
                    {"notEquals": attr("b", json!(2))},
                    {"notEquals": attr("b", json!(3))},
                ]}),
            ),
            (
                json!({"$not": {"$or": [{"a": 1}, {"$not": {"b": {"$gt": 2}}}]}}),
                json!({"andAll": [
                    {"notEquals": attr("a", json!(1))},
                    {"greaterThan": attr("b", json!(2))},
                ]}),
            ),
            // Nothing passes `$not {}`: no request is needed, and none is made.
            (json!({"$not": {}}), json!("nothing")),
            (json!({"a": 1, "$not": {}}), json!("nothing")),
            (
                json!({"$or": [{"a": 1}, {"$not": {}}]}),
                json!({"equals": attr("a", json!(1))}),
            ),
        ];
        for (filter, expected) in cases {
            assert_eq!(bedrock(filter.clone()).unwrap(), expected, "{filter}");
        }
    }

    #[test]
    fn the_conversion_keeps_what_filter_matches_means() {
        // Bedrock's own semantics, as its API reference states them: only notEquals passes a
        // missing key. Each filter must pass the same chunks through either path.
        fn bedrock_matches(filter: &Value, metadata: &Map<String, Value>) -> bool {
            let (name, operand) = filter.as_object().unwrap().iter().next().unwrap();
            let list = || operand.as_array().unwrap().iter();
            match name.as_str() {
                "andAll" => list().all(|f| bedrock_matches(f, metadata)),
                "orAll" => list().any(|f| bedrock_matches(f, metadata)),
                _ => {
                    let found = metadata.get(operand["key"].as_str().unwrap());
                    let value = &operand["value"];
                    let number = |v: &Value| v.as_f64();
                    match (name.as_str(), found) {
                        ("notEquals", None) => true,
                        (_, None) => false,
                        ("equals", Some(v)) => ragway_core::filter::same(v, value),
                        ("notEquals", Some(v)) => !ragway_core::filter::same(v, value),
                        ("in", Some(v)) => value
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|e| ragway_core::filter::same(v, e)),
                        ("listContains", Some(v)) => {
                            v.as_array().is_some_and(|l| l.contains(value))
                        }
                        (op, Some(v)) => match (number(v), number(value)) {
                            (Some(a), Some(b)) => match op {
                                "greaterThan" => a > b,
                                "greaterThanOrEquals" => a >= b,
                                "lessThan" => a < b,
                                "lessThanOrEquals" => a <= b,
                                other => panic!("{other}"),
                            },
                            _ => false,
                        },
                    }
                }
            }
        }
        let chunks = [
            json!({"category": "physics", "year": 2021, "tags": ["quantum"]}),
            json!({"category": "history", "year": 1995}),
            json!({"year": "unknown"}),
            json!({}),
        ];
        let filters = [
            json!({"category": {"$nin": ["history"]}}),
            json!({"$not": {"category": {"$in": ["physics", "history"]}}}),
            json!({"$not": {"category": {"$nin": ["physics"]}}}),
            json!({"$not": {"category": "physics", "year": 2021}}),
            json!({"$or": [{"year": {"$gte": 2000}}, {"category": {"$ne": "history"}}]}),
            json!({"$not": {"$or": [{"category": "physics"}, {"year": 1995}]}}),
            json!({"$or": [{"tags": {"$contains": "quantum"}}, {"year": {"$lt": 2000}}]}),
        ];
        for filter in filters {
            let parsed = Filter::parse(&filter).unwrap();
            let converted = bedrock(filter.clone()).unwrap();
            for chunk in &chunks {
                let metadata = chunk.as_object().unwrap();
                assert_eq!(
                    bedrock_matches(&converted, metadata),
                    parsed.matches(metadata),
                    "{filter} as {converted} on {chunk}"
                );
            }
        }
    }

    #[test]
    fn what_bedrock_cannot_apply_is_named() {
        let long = "k".repeat(101);
        let cases = [
            (
                json!({"published": {"$gte": "2024-01-01"}}),
                "compare numbers only: store dates as numbers",
            ),
            (
                json!({"$not": {"year": {"$gt": 2020}}}),
                "no exact opposite of a range",
            ),
            (json!({"$not": {"year": {"$gt": 2020}}}), "write $lte"),
            (
                json!({"$or": [{"a": 1}, {"$not": {"year": {"$lte": 2020}}}]}),
                "$not around $lte",
            ),
            (
                json!({"$not": {"tags": {"$contains": "x"}}}),
                "no opposite of listContains",
            ),
            (
                json!({"tags": {"$contains": 3}}),
                "$contains takes a string",
            ),
            (json!({ long.clone(): 1 }), "at most 100 characters"),
        ];
        for (filter, expected) in cases {
            let error = bedrock(filter.clone()).unwrap_err();
            assert!(error.contains(expected), "{filter}: {error}");
        }
        // A 100-character key is Bedrock's own limit, and taken.
        assert!(bedrock(json!({ "k".repeat(100): 1 })).is_ok());
    }

    #[test]
    fn a_chunk_becomes_a_passage_with_its_source_and_metadata() {
        let location = RetrievalResultLocation::builder()
            .r#type(RetrievalResultLocationType::S3)
            .s3_location(
                RetrievalResultS3Location::builder()
                    .uri("s3://b/doc.md")
                    .build(),
            )
            .build()
            .unwrap();
        let result = KnowledgeBaseRetrievalResult::builder()
            .content(RetrievalResultContent::builder().text("chunk text").build())
            .location(location)
            .score(0.5)
            .metadata(CHUNK_ID_KEY, document_from_json(json!("1%3A0%3Aabc")))
            .metadata("title", document_from_json(json!("A title")))
            .metadata("year", document_from_json(json!(2021)))
            .build();
        let passage = passage(result, 3);
        assert_eq!(passage.id, "s3://b/doc.md#1%3A0%3Aabc");
        assert_eq!(passage.text, "chunk text");
        assert_eq!(passage.score, 0.5);
        assert_eq!(passage.uri.as_deref(), Some("s3://b/doc.md"));
        assert_eq!(passage.title.as_deref(), Some("A title"));
        assert_eq!(
            Value::Object(passage.metadata),
            json!({CHUNK_ID_KEY: "1%3A0%3Aabc", "title": "A title", "year": 2021, "location_type": "S3"})
        );

        // No location and no chunk id: the source URI Bedrock adds, and the chunk's place.
        let bare = KnowledgeBaseRetrievalResult::builder()
            .content(RetrievalResultContent::builder().text("t").build())
            .metadata(SOURCE_URI_KEY, document_from_json(json!("https://x/y")))
            .build();
        let passage = super::passage(bare, 7);
        assert_eq!(passage.id, "https://x/y#7");
        assert_eq!(passage.uri.as_deref(), Some("https://x/y"));
        assert_eq!(passage.title, None);
        assert_eq!(passage.score, 0.0);
    }
}
