//! Fake Amazon Bedrock Agent Runtime (restJson1): `Rerank` and a knowledge base's `Retrieve`,
//! both scored by word overlap, `Retrieve` filtered by metadata as Bedrock's `RetrievalFilter`.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::server::{self, Call, Fake, FakeOptions, Scripted, Shared};

/// The knowledge base the fake serves unless started with another.
pub const DEFAULT_KNOWLEDGE_BASE_ID: &str = "KB12345678";

/// The reranking models `Rerank` accepts, as named after `foundation-model/` in the model ARN.
pub const RERANK_MODELS: [&str; 2] = ["amazon.rerank-v1:0", "cohere.rerank-v3-5:0"];

/// `Rerank` limits from the service model: sources per request, and characters per text.
const MAX_RERANK_SOURCES: usize = 1000;
const MAX_RERANK_TEXT: usize = 32_000;

/// `numberOfResults` bounds: 1..=1000 for `Rerank` (default: every source), 1..=100 for
/// `Retrieve` (default 5).
const MAX_RERANK_RESULTS: i64 = 1000;
const MAX_RETRIEVE_RESULTS: i64 = 100;
const DEFAULT_RETRIEVE_RESULTS: usize = 5;

/// Deepest `andAll`/`orAll` nesting the fake parses. serde_json refuses a body nested deeper
/// than 128 levels and each filter level costs two (a list and an object), so no request off the
/// wire gets here; the cap only keeps a filter built in code from exhausting the stack.
const MAX_FILTER_DEPTH: usize = 64;

/// Every member a `RetrievalFilter` may set, for error messages.
const FILTER_MEMBERS: &str = "equals, notEquals, greaterThan, greaterThanOrEquals, lessThan, \
     lessThanOrEquals, in, notIn, startsWith, listContains, stringContains, andAll, orAll";

/// Where a knowledge-base chunk came from.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceLocation {
    /// A document in S3: `{"type": "S3", "s3Location": {"uri": "s3://..."}}`.
    S3 { uri: String },
    /// A crawled page: `{"type": "WEB", "webLocation": {"url": "https://..."}}`.
    Web { url: String },
}

impl SourceLocation {
    /// The location in Bedrock's `RetrievalResultLocation` shape.
    pub fn to_json(&self) -> Value {
        match self {
            Self::S3 { uri } => json!({ "type": "S3", "s3Location": { "uri": uri } }),
            Self::Web { url } => json!({ "type": "WEB", "webLocation": { "url": url } }),
        }
    }

    /// The S3 URI or the URL.
    pub fn address(&self) -> &str {
        match self {
            Self::S3 { uri } => uri,
            Self::Web { url } => url,
        }
    }
}

/// A chunk held by the fake knowledge base; `Retrieve` scores it against the query.
#[derive(Clone, Debug, PartialEq)]
pub struct KnowledgeBaseResult {
    pub text: String,
    pub location: SourceLocation,
    /// Attributes that `filter` tests; returned as they are (omitted when empty, as Bedrock's
    /// model requires at least one).
    pub metadata: Map<String, Value>,
}

/// The one knowledge base a fake serves.
#[derive(Clone, Debug, PartialEq)]
pub struct KnowledgeBase {
    /// The `{knowledgeBaseId}` the fake answers; any other is a 404 `ResourceNotFoundException`.
    pub id: String,
    /// The chunks, in the order that breaks score ties.
    pub results: Vec<KnowledgeBaseResult>,
}

impl Default for KnowledgeBase {
    fn default() -> Self {
        Self {
            id: DEFAULT_KNOWLEDGE_BASE_ID.to_owned(),
            results: default_results(),
        }
    }
}

/// Four chunks on quantum computing, two in S3 and two on the web, each with a string
/// `category`, a number `year`, a list-of-strings `tags` and `x-amz-bedrock-kb-source-uri`.
///
/// | # | location | category | year | tags |
/// |---|----------|----------|------|------|
/// | 0 | S3 `s3://ragway-fake-kb/quantum/qubits.md` | physics | 2021 | quantum, basics |
/// | 1 | web `https://docs.example.com/quantum/superposition` | physics | 2019 | quantum, theory |
/// | 2 | S3 `s3://ragway-fake-kb/quantum/error-correction.md` | engineering | 2023 | quantum, hardware |
/// | 3 | web `https://blog.example.com/classical-computing` | history | 1995 | classical, basics |
pub fn default_results() -> Vec<KnowledgeBaseResult> {
    let result =
        |location: SourceLocation, text: &str, category: &str, year: u32, tags: &[&str]| {
            let metadata = json!({
                "x-amz-bedrock-kb-source-uri": location.address(),
                "category": category,
                "year": year,
                "tags": tags,
            });
            KnowledgeBaseResult {
                text: text.to_owned(),
                location,
                metadata: match metadata {
                    Value::Object(metadata) => metadata,
                    _ => Map::new(),
                },
            }
        };
    vec![
        result(
            SourceLocation::S3 {
                uri: "s3://ragway-fake-kb/quantum/qubits.md".into(),
            },
            "A qubit is the basic unit of quantum information; unlike a classical bit it can \
             hold a superposition of 0 and 1.",
            "physics",
            2021,
            &["quantum", "basics"],
        ),
        result(
            SourceLocation::Web {
                url: "https://docs.example.com/quantum/superposition".into(),
            },
            "Superposition lets a register of qubits hold a weighted combination of many \
             classical states at once.",
            "physics",
            2019,
            &["quantum", "theory"],
        ),
        result(
            SourceLocation::S3 {
                uri: "s3://ragway-fake-kb/quantum/error-correction.md".into(),
            },
            "Quantum error correction spreads one logical qubit over many physical qubits so \
             that noise can be detected and undone.",
            "engineering",
            2023,
            &["quantum", "hardware"],
        ),
        result(
            SourceLocation::Web {
                url: "https://blog.example.com/classical-computing".into(),
            },
            "Classical computers store information in bits, each of which is either 0 or 1.",
            "history",
            1995,
            &["classical", "basics"],
        ),
    ]
}

/// The fake's relevance score of `document` for `query`: the share of the query's distinct
/// lower-cased alphanumeric words that occur in the document (0 for a query without words).
pub fn word_overlap(query: &str, document: &str) -> f64 {
    overlap(&words(query), document)
}

/// Starts the fake serving [`KnowledgeBase::default`].
pub async fn start() -> anyhow::Result<Fake> {
    start_with(KnowledgeBase::default()).await
}

/// Starts the fake serving `knowledge_base`.
pub async fn start_with(knowledge_base: KnowledgeBase) -> anyhow::Result<Fake> {
    start_with_options(FakeOptions::default(), knowledge_base).await
}

/// Starts the fake with explicit options.
pub async fn start_with_options(
    options: FakeOptions,
    knowledge_base: KnowledgeBase,
) -> anyhow::Result<Fake> {
    let knowledge_base = Arc::new(knowledge_base);
    server::start(options, move |shared| {
        app(AgentState {
            shared,
            knowledge_base,
        })
    })
    .await
}

#[derive(Clone, FromRef)]
struct AgentState {
    shared: Shared,
    knowledge_base: Arc<KnowledgeBase>,
}

fn app(state: AgentState) -> Router {
    Router::new()
        .route("/rerank", post(rerank))
        .route(
            "/knowledgebases/{knowledge_base_id}/retrieve",
            post(retrieve),
        )
        .fallback(unknown_route)
        .with_state(state)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RerankRequest {
    queries: Vec<RerankQuery>,
    sources: Vec<RerankSource>,
    reranking_configuration: RerankingConfiguration,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RerankQuery {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text_query: Option<TextDocument>,
}

#[derive(Deserialize)]
struct TextDocument {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RerankSource {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    inline_document_source: Option<RerankDocument>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RerankDocument {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text_document: Option<TextDocument>,
    #[serde(default)]
    json_document: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RerankingConfiguration {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    bedrock_reranking_configuration: Option<BedrockRerankingConfiguration>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BedrockRerankingConfiguration {
    #[serde(default)]
    number_of_results: Option<i64>,
    model_configuration: ModelConfiguration,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModelConfiguration {
    model_arn: String,
}

/// A `Rerank` request that passed Bedrock's checks.
struct Rerank {
    query: String,
    /// Texts of the sources, JSON documents serialized.
    documents: Vec<String>,
    limit: usize,
}

impl TryFrom<RerankRequest> for Rerank {
    type Error = String;

    fn try_from(request: RerankRequest) -> Result<Self, String> {
        let [query] = <[RerankQuery; 1]>::try_from(request.queries).map_err(|queries| {
            constraint(
                "queries",
                &format!("Member must hold exactly 1 query, got {}", queries.len()),
            )
        })?;
        if query.kind != "TEXT" {
            return Err(constraint(
                "queries.1.member.type",
                "Member must satisfy enum value set: [TEXT]",
            ));
        }
        let query = text(query.text_query, "queries.1.member.textQuery.text")?;
        if request.sources.is_empty() || request.sources.len() > MAX_RERANK_SOURCES {
            return Err(constraint(
                "sources",
                &format!(
                    "Member must have length between 1 and {MAX_RERANK_SOURCES}, got {}",
                    request.sources.len()
                ),
            ));
        }
        let documents = request
            .sources
            .into_iter()
            .enumerate()
            .map(|(i, source)| source_text(source, i + 1))
            .collect::<Result<Vec<_>, _>>()?;
        let configuration = request.reranking_configuration;
        if configuration.kind != "BEDROCK_RERANKING_MODEL" {
            return Err(constraint(
                "rerankingConfiguration.type",
                "Member must satisfy enum value set: [BEDROCK_RERANKING_MODEL]",
            ));
        }
        let Some(bedrock) = configuration.bedrock_reranking_configuration else {
            return Err(
                "rerankingConfiguration.bedrockRerankingConfiguration is required".to_owned(),
            );
        };
        let arn = &bedrock.model_configuration.model_arn;
        if !is_rerank_model_arn(arn) {
            return Err(format!(
                "The provided model identifier is invalid: {arn:?} is not \
                 arn:aws:bedrock:<region>::foundation-model/ followed by one of {RERANK_MODELS:?}"
            ));
        }
        let limit = match bedrock.number_of_results {
            None => documents.len(),
            Some(n) => count(
                n,
                MAX_RERANK_RESULTS,
                "rerankingConfiguration.bedrockRerankingConfiguration.numberOfResults",
            )?,
        };
        Ok(Self {
            query,
            documents,
            limit,
        })
    }
}

/// The text a source is scored by: its text, or its JSON document serialized.
fn source_text(source: RerankSource, number: usize) -> Result<String, String> {
    let at = format!("sources.{number}.member");
    if source.kind != "INLINE" {
        return Err(constraint(
            &format!("{at}.type"),
            "Member must satisfy enum value set: [INLINE]",
        ));
    }
    let Some(document) = source.inline_document_source else {
        return Err(format!("{at}.inlineDocumentSource is required"));
    };
    match document.kind.as_str() {
        "TEXT" => text(
            document.text_document,
            &format!("{at}.inlineDocumentSource.textDocument.text"),
        ),
        "JSON" => match document.json_document {
            Some(document) if !document.is_null() => Ok(document.to_string()),
            _ => Err(format!(
                "{at}.inlineDocumentSource.jsonDocument is required for a JSON document"
            )),
        },
        _ => Err(constraint(
            &format!("{at}.inlineDocumentSource.type"),
            "Member must satisfy enum value set: [TEXT, JSON]",
        )),
    }
}

/// A required text of 1 to 32,000 characters.
fn text(document: Option<TextDocument>, at: &str) -> Result<String, String> {
    match document.and_then(|document| document.text) {
        Some(text) if (1..=MAX_RERANK_TEXT).contains(&text.chars().count()) => Ok(text),
        Some(_) => Err(constraint(
            at,
            &format!("Member must have length between 1 and {MAX_RERANK_TEXT}"),
        )),
        None => Err(format!("{at} is required")),
    }
}

/// `arn:aws:bedrock:<region>::foundation-model/<model>` with a region of 1 to 20 of `[a-z0-9-]`
/// and one of the [`RERANK_MODELS`].
fn is_rerank_model_arn(arn: &str) -> bool {
    let Some((region, model)) = arn
        .strip_prefix("arn:aws:bedrock:")
        .and_then(|rest| rest.split_once("::foundation-model/"))
    else {
        return false;
    };
    (1..=20).contains(&region.len())
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && RERANK_MODELS.contains(&model)
}

/// A `numberOfResults` within `1..=max`.
fn count(n: i64, max: i64, at: &str) -> Result<usize, String> {
    if (1..=max).contains(&n) {
        usize::try_from(n).map_err(|err| err.to_string())
    } else {
        Err(constraint(
            at,
            &format!("Member must have value between 1 and {max}, got {n}"),
        ))
    }
}

/// AWS's wording of a failed input constraint.
fn constraint(at: &str, rule: &str) -> String {
    format!("1 validation error detected: Value at '{at}' failed to satisfy constraint: {rule}")
}

async fn rerank(call: Call) -> Response {
    if let Some(response) = scripted(&call) {
        return response;
    }
    let request: RerankRequest = match serde_json::from_slice(&call.body) {
        Ok(request) => request,
        Err(err) => return malformed(&err),
    };
    let rerank = match Rerank::try_from(request) {
        Ok(rerank) => rerank,
        Err(message) => return invalid(&message),
    };
    call.scripted_delay().await;
    let results: Vec<Value> = rank(
        &rerank.query,
        rerank.documents.iter().map(String::as_str).enumerate(),
    )
    .into_iter()
    .take(rerank.limit)
    .map(|(index, score)| json!({ "index": index, "relevanceScore": score }))
    .collect();
    answer(&call, &json!({ "results": results }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RetrieveRequest {
    retrieval_query: KnowledgeBaseQuery,
    #[serde(default)]
    retrieval_configuration: Option<RetrievalConfiguration>,
}

#[derive(Deserialize)]
struct KnowledgeBaseQuery {
    #[serde(default)]
    text: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RetrievalConfiguration {
    vector_search_configuration: VectorSearchConfiguration,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VectorSearchConfiguration {
    #[serde(default)]
    number_of_results: Option<i64>,
    #[serde(default)]
    override_search_type: Option<String>,
    #[serde(default)]
    filter: Option<Value>,
}

/// A `Retrieve` request that passed Bedrock's checks.
struct Retrieve {
    query: String,
    limit: usize,
    filter: Option<Filter>,
}

impl TryFrom<RetrieveRequest> for Retrieve {
    type Error = String;

    fn try_from(request: RetrieveRequest) -> Result<Self, String> {
        match request.retrieval_query.kind.as_deref() {
            None | Some("TEXT") => {}
            Some("IMAGE") => return Err("the fake answers TEXT queries only".to_owned()),
            Some(_) => {
                return Err(constraint(
                    "retrievalQuery.type",
                    "Member must satisfy enum value set: [TEXT, IMAGE]",
                ));
            }
        }
        let Some(query) = request.retrieval_query.text else {
            return Err("retrievalQuery.text is required for a TEXT query".to_owned());
        };
        let Some(configuration) = request.retrieval_configuration else {
            return Ok(Self {
                query,
                limit: DEFAULT_RETRIEVE_RESULTS,
                filter: None,
            });
        };
        let search = configuration.vector_search_configuration;
        if let Some(kind) = &search.override_search_type
            && kind != "HYBRID"
            && kind != "SEMANTIC"
        {
            return Err(constraint(
                "retrievalConfiguration.vectorSearchConfiguration.overrideSearchType",
                "Member must satisfy enum value set: [HYBRID, SEMANTIC]",
            ));
        }
        let limit = match search.number_of_results {
            None => DEFAULT_RETRIEVE_RESULTS,
            Some(n) => count(
                n,
                MAX_RETRIEVE_RESULTS,
                "retrievalConfiguration.vectorSearchConfiguration.numberOfResults",
            )?,
        };
        let filter = search.filter.as_ref().map(Filter::parse).transpose()?;
        Ok(Self {
            query,
            limit,
            filter,
        })
    }
}

async fn retrieve(
    State(knowledge_base): State<Arc<KnowledgeBase>>,
    Path(knowledge_base_id): Path<String>,
    call: Call,
) -> Response {
    if let Some(response) = scripted(&call) {
        return response;
    }
    let request: RetrieveRequest = match serde_json::from_slice(&call.body) {
        Ok(request) => request,
        Err(err) => return malformed(&err),
    };
    let retrieve = match Retrieve::try_from(request) {
        Ok(retrieve) => retrieve,
        Err(message) => return invalid(&message),
    };
    // As in AWS, the input is checked before the resource is looked up.
    if knowledge_base_id != knowledge_base.id {
        return server::rest_json_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Knowledge base {knowledge_base_id} does not exist."),
        );
    }
    call.scripted_delay().await;
    let candidates = knowledge_base
        .results
        .iter()
        .enumerate()
        .filter(|(_, result)| {
            retrieve
                .filter
                .as_ref()
                .is_none_or(|filter| filter.matches(&result.metadata))
        })
        .map(|(i, result)| (i, result.text.as_str()));
    let results: Vec<Value> = rank(&retrieve.query, candidates)
        .into_iter()
        .take(retrieve.limit)
        .filter_map(|(i, score)| knowledge_base.results.get(i).map(|result| (result, score)))
        .map(|(result, score)| {
            let mut item = json!({
                "content": { "text": result.text, "type": "TEXT" },
                "location": result.location.to_json(),
                "score": score,
            });
            if !result.metadata.is_empty() {
                item["metadata"] = Value::Object(result.metadata.clone());
            }
            item
        })
        .collect();
    answer(&call, &json!({ "retrievalResults": results }))
}

/// A parsed `RetrievalFilter`: one attribute test, or a list of filters.
#[derive(Clone, Debug, PartialEq)]
enum Filter {
    Attribute {
        operator: Operator,
        key: String,
        value: Value,
    },
    AndAll(Vec<Filter>),
    OrAll(Vec<Filter>),
}

/// The attribute tests of a `RetrievalFilter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    Equals,
    NotEquals,
    GreaterThan,
    GreaterThanOrEquals,
    LessThan,
    LessThanOrEquals,
    In,
    NotIn,
    StartsWith,
    ListContains,
    StringContains,
}

impl Operator {
    const ALL: [Self; 11] = [
        Self::Equals,
        Self::NotEquals,
        Self::GreaterThan,
        Self::GreaterThanOrEquals,
        Self::LessThan,
        Self::LessThanOrEquals,
        Self::In,
        Self::NotIn,
        Self::StartsWith,
        Self::ListContains,
        Self::StringContains,
    ];

    /// The member name on the wire.
    fn name(self) -> &'static str {
        match self {
            Self::Equals => "equals",
            Self::NotEquals => "notEquals",
            Self::GreaterThan => "greaterThan",
            Self::GreaterThanOrEquals => "greaterThanOrEquals",
            Self::LessThan => "lessThan",
            Self::LessThanOrEquals => "lessThanOrEquals",
            Self::In => "in",
            Self::NotIn => "notIn",
            Self::StartsWith => "startsWith",
            Self::ListContains => "listContains",
            Self::StringContains => "stringContains",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|operator| operator.name() == name)
    }

    /// Whether an attribute (`None`: the key is absent) passes the test against `operand`.
    /// Values of the wrong type never pass; only `notEquals` passes an absent key, as Bedrock
    /// documents.
    fn holds(self, attribute: Option<&Value>, operand: &Value) -> bool {
        let Some(attribute) = attribute else {
            return self == Self::NotEquals;
        };
        match self {
            Self::Equals => same(attribute, operand),
            Self::NotEquals => !same(attribute, operand),
            Self::GreaterThan => compare(attribute, operand).is_some_and(Ordering::is_gt),
            Self::GreaterThanOrEquals => compare(attribute, operand).is_some_and(Ordering::is_ge),
            Self::LessThan => compare(attribute, operand).is_some_and(Ordering::is_lt),
            Self::LessThanOrEquals => compare(attribute, operand).is_some_and(Ordering::is_le),
            Self::In => operand
                .as_array()
                .is_some_and(|list| list.iter().any(|member| same(attribute, member))),
            Self::NotIn => operand
                .as_array()
                .is_some_and(|list| !list.iter().any(|member| same(attribute, member))),
            Self::StartsWith => match (attribute, operand) {
                (Value::String(attribute), Value::String(prefix)) => attribute.starts_with(prefix),
                _ => false,
            },
            Self::ListContains => attribute
                .as_array()
                .is_some_and(|list| list.iter().any(|member| same(member, operand))),
            Self::StringContains => match (attribute, operand) {
                (Value::String(attribute), Value::String(part)) => attribute.contains(part),
                (Value::Array(list), Value::String(part)) => list
                    .iter()
                    .any(|member| member.as_str().is_some_and(|member| member.contains(part))),
                _ => false,
            },
        }
    }
}

impl Filter {
    /// Parses a request's `filter`; the error names the offending member by its path.
    fn parse(value: &Value) -> Result<Self, String> {
        Self::parse_at(value, "filter", 0)
    }

    fn parse_at(value: &Value, at: &str, depth: usize) -> Result<Self, String> {
        if depth > MAX_FILTER_DEPTH {
            return Err(format!(
                "{at}: filters nest deeper than {MAX_FILTER_DEPTH} levels"
            ));
        }
        let Some(object) = value.as_object() else {
            return Err(format!(
                "{at} must be an object setting one of {FILTER_MEMBERS}"
            ));
        };
        let mut members = object.iter();
        let (name, operand) = match (members.next(), members.next()) {
            (Some(member), None) => member,
            (None, _) => {
                return Err(format!(
                    "{at} sets no operator; a RetrievalFilter sets exactly one of {FILTER_MEMBERS}"
                ));
            }
            (Some(_), Some(_)) => {
                let names: Vec<&str> = object.keys().map(String::as_str).collect();
                return Err(format!(
                    "{at} sets {} operators ({}); a RetrievalFilter sets exactly one",
                    names.len(),
                    names.join(", ")
                ));
            }
        };
        let inner = format!("{at}.{name}");
        match name.as_str() {
            "andAll" => Ok(Self::AndAll(Self::parse_list(operand, &inner, depth)?)),
            "orAll" => Ok(Self::OrAll(Self::parse_list(operand, &inner, depth)?)),
            other => {
                let Some(operator) = Operator::from_name(other) else {
                    return Err(format!(
                        "{at}: unknown filter operator {other:?}; expected one of {FILTER_MEMBERS}"
                    ));
                };
                let (key, value) = attribute(operand, &inner)?;
                Ok(Self::Attribute {
                    operator,
                    key,
                    value,
                })
            }
        }
    }

    /// An `andAll` or `orAll` list: at least two filters, as Bedrock requires.
    fn parse_list(operand: &Value, at: &str, depth: usize) -> Result<Vec<Self>, String> {
        let Some(list) = operand.as_array() else {
            return Err(format!("{at} must be a list of filters"));
        };
        if list.len() < 2 {
            return Err(constraint(
                at,
                &format!(
                    "Member must have length greater than or equal to 2, got {}",
                    list.len()
                ),
            ));
        }
        list.iter()
            .enumerate()
            .map(|(i, filter)| Self::parse_at(filter, &format!("{at}[{i}]"), depth + 1))
            .collect()
    }

    /// Whether metadata passes the filter.
    fn matches(&self, metadata: &Map<String, Value>) -> bool {
        match self {
            Self::Attribute {
                operator,
                key,
                value,
            } => operator.holds(metadata.get(key), value),
            Self::AndAll(filters) => filters.iter().all(|filter| filter.matches(metadata)),
            Self::OrAll(filters) => filters.iter().any(|filter| filter.matches(metadata)),
        }
    }
}

/// A `FilterAttribute`: `{"key": <1 to 100 characters>, "value": <any JSON but null>}`.
fn attribute(operand: &Value, at: &str) -> Result<(String, Value), String> {
    let Some(object) = operand.as_object() else {
        return Err(format!("{at} must be an object with a key and a value"));
    };
    if let Some(unknown) = object
        .keys()
        .find(|name| *name != "key" && *name != "value")
    {
        return Err(format!(
            "{at}: unknown member {unknown:?}; a FilterAttribute has a key and a value"
        ));
    }
    let key = match object.get("key") {
        Some(Value::String(key)) if (1..=100).contains(&key.chars().count()) => key.clone(),
        Some(_) => {
            return Err(constraint(
                &format!("{at}.key"),
                "Member must be a string of 1 to 100 characters",
            ));
        }
        None => return Err(format!("{at}.key is required")),
    };
    match object.get("value") {
        Some(value) if !value.is_null() => Ok((key, value.clone())),
        _ => Err(format!("{at}.value is required")),
    }
}

/// Filter equality: numbers by value (2021 equals 2021.0), strings and booleans exactly; lists,
/// objects, null and values of two different types are never equal.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        _ => false,
    }
}

/// Filter order: numbers only.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

/// Distinct lower-cased alphanumeric words.
fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn overlap(query: &BTreeSet<String>, document: &str) -> f64 {
    if query.is_empty() {
        return 0.0;
    }
    let document = words(document);
    query.intersection(&document).count() as f64 / query.len() as f64
}

/// `(index, score)` of each document, best first, ties to the lower index.
fn rank<'a>(
    query: &str,
    documents: impl IntoIterator<Item = (usize, &'a str)>,
) -> Vec<(usize, f64)> {
    let query = words(query);
    let mut scored: Vec<(usize, f64)> = documents
        .into_iter()
        .map(|(i, document)| (i, overlap(&query, document)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored
}

/// A scripted error, reset or garbage answer, if one was scripted.
fn scripted(call: &Call) -> Option<Response> {
    if let Some(Scripted::Error {
        status,
        kind,
        message,
    }) = &call.script
    {
        return Some(server::rest_json_error(
            server::status(*status),
            kind,
            message,
        ));
    }
    server::scripted_fault(call, "application/json", b"{\"results\": [{\"index\": ")
}

/// A 200 JSON answer with the request id AWS sends.
fn answer(call: &Call, body: &Value) -> Response {
    let mut response = axum::Json(body).into_response();
    let id = format!("fake-{:032x}", call.state.next_id());
    if let Ok(value) = axum::http::HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
    response
}

fn malformed(err: &serde_json::Error) -> Response {
    invalid(&format!("Malformed input request: {err}"))
}

fn invalid(message: &str) -> Response {
    server::rest_json_error(StatusCode::BAD_REQUEST, "ValidationException", message)
}

/// Unknown paths are still recorded (through `Call`), so tests can see what was asked for.
async fn unknown_route(_call: Call) -> Response {
    server::rest_json_error(
        StatusCode::NOT_FOUND,
        "UnknownOperationException",
        "The fake serves POST /rerank and POST /knowledgebases/{knowledgeBaseId}/retrieve.",
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const RERANK_ARN: &str = "arn:aws:bedrock:us-west-2::foundation-model/amazon.rerank-v1:0";

    fn metadata(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn rerank_body(query: &str, texts: &[&str], results: Option<i64>) -> Value {
        let sources: Vec<Value> = texts
            .iter()
            .map(|text| {
                json!({ "type": "INLINE", "inlineDocumentSource": {
                    "type": "TEXT", "textDocument": { "text": text } } })
            })
            .collect();
        let mut configuration = json!({ "modelConfiguration": { "modelArn": RERANK_ARN } });
        if let Some(n) = results {
            configuration["numberOfResults"] = json!(n);
        }
        json!({
            "queries": [{ "type": "TEXT", "textQuery": { "text": query } }],
            "sources": sources,
            "rerankingConfiguration": {
                "type": "BEDROCK_RERANKING_MODEL",
                "bedrockRerankingConfiguration": configuration,
            },
        })
    }

    async fn post(fake: &Fake, path: &str, body: &Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}{path}", fake.url()))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Status, `x-amzn-errortype` and JSON body.
    async fn outcome(response: reqwest::Response) -> (u16, String, Value) {
        let status = response.status().as_u16();
        let kind = response
            .headers()
            .get("x-amzn-errortype")
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, kind, response.json().await.unwrap())
    }

    const RETRIEVE: &str = "/knowledgebases/KB12345678/retrieve";

    /// Addresses of the results `Retrieve` returns for `body`.
    async fn retrieved(fake: &Fake, body: &Value) -> Vec<String> {
        let (status, _, body) = outcome(post(fake, RETRIEVE, body).await).await;
        assert_eq!(status, 200, "{body}");
        body["retrievalResults"]
            .as_array()
            .unwrap()
            .iter()
            .map(|result| {
                let location = &result["location"];
                location["s3Location"]["uri"]
                    .as_str()
                    .or(location["webLocation"]["url"].as_str())
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    fn filtered(filter: Value) -> Value {
        json!({
            "retrievalQuery": { "text": "quantum error correction with qubits" },
            "retrievalConfiguration": { "vectorSearchConfiguration": { "filter": filter } },
        })
    }

    #[test]
    fn word_overlap_counts_distinct_lower_cased_words() {
        assert_eq!(
            word_overlap("Quantum ERROR correction", "quantum-error!"),
            2.0 / 3.0
        );
        assert_eq!(word_overlap("qubit qubit qubit", "a qubit"), 1.0);
        assert_eq!(word_overlap("qubit", "qubits"), 0.0);
        assert_eq!(word_overlap("?!", "anything"), 0.0);
        assert_eq!(word_overlap("", ""), 0.0);
    }

    #[test]
    fn rerank_arns_are_checked_by_region_and_model() {
        for (arn, valid) in [
            (RERANK_ARN, true),
            (
                "arn:aws:bedrock:eu-central-1::foundation-model/cohere.rerank-v3-5:0",
                true,
            ),
            (
                "arn:aws:bedrock:us-west-2::foundation-model/amazon.titan-embed-text-v2:0",
                false,
            ),
            (
                "arn:aws:bedrock:::foundation-model/amazon.rerank-v1:0",
                false,
            ),
            (
                "arn:aws:bedrock:US-WEST-2::foundation-model/amazon.rerank-v1:0",
                false,
            ),
            (
                "arn:aws:bedrock:us-west-2:123456789012:foundation-model/amazon.rerank-v1:0",
                false,
            ),
            (
                "arn:aws:sagemaker:us-west-2::foundation-model/amazon.rerank-v1:0",
                false,
            ),
            ("amazon.rerank-v1:0", false),
            ("", false),
        ] {
            assert_eq!(is_rerank_model_arn(arn), valid, "{arn}");
        }
    }

    #[test]
    fn default_results_mix_locations_and_metadata_types() {
        let results = default_results();
        assert_eq!(results.len(), 4);
        assert!(matches!(results[0].location, SourceLocation::S3 { .. }));
        assert!(matches!(results[1].location, SourceLocation::Web { .. }));
        for result in &results {
            assert!(result.metadata["category"].is_string());
            assert!(result.metadata["year"].is_u64());
            assert!(
                result.metadata["tags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(Value::is_string)
            );
        }
    }

    /// Metadata with every JSON type, to throw mismatched operands at.
    fn hostile_metadata() -> Map<String, Value> {
        metadata(json!({
            "category": "physics",
            "year": 2021,
            "score": 0.5,
            "draft": false,
            "tags": ["quantum", "basics", 7],
            "nested": { "year": 2021 },
            "nothing": null,
            "empty": "",
        }))
    }

    #[test]
    fn filters_evaluate_as_bedrock_documents_them() {
        let metadata = hostile_metadata();
        let attribute_cases = [
            ("equals", "category", json!("physics"), true),
            ("equals", "year", json!(2021.0), true),
            ("equals", "draft", json!(false), true),
            ("notEquals", "category", json!("history"), true),
            ("notEquals", "category", json!("physics"), false),
            ("notEquals", "missing", json!("x"), true),
            ("greaterThan", "year", json!(2020), true),
            ("greaterThan", "year", json!(2021), false),
            ("greaterThanOrEquals", "year", json!(2021), true),
            ("lessThan", "score", json!(1), true),
            ("lessThanOrEquals", "year", json!(2020.5), false),
            ("in", "category", json!(["history", "physics"]), true),
            ("in", "category", json!(["history"]), false),
            ("notIn", "category", json!(["history"]), true),
            ("notIn", "missing", json!(["history"]), false),
            ("startsWith", "category", json!("phy"), true),
            ("startsWith", "category", json!("sics"), false),
            ("listContains", "tags", json!("basics"), true),
            ("listContains", "tags", json!(7), true),
            ("listContains", "tags", json!("bas"), false),
            ("stringContains", "category", json!("ysi"), true),
            ("stringContains", "tags", json!("asi"), true),
            ("stringContains", "empty", json!(""), true),
        ];
        for (operator, key, value, expected) in attribute_cases {
            let filter = json!({ operator: { "key": key, "value": value } });
            let parsed = Filter::parse(&filter).unwrap();
            assert_eq!(parsed.matches(&metadata), expected, "{filter}");
        }
        let physics = json!({ "equals": { "key": "category", "value": "physics" } });
        let history = json!({ "equals": { "key": "category", "value": "history" } });
        let recent = json!({ "greaterThan": { "key": "year", "value": 2020 } });
        let old = json!({ "lessThan": { "key": "year", "value": 2020 } });
        let list_cases = [
            (json!({ "andAll": [physics, recent] }), true),
            (json!({ "andAll": [physics, old] }), false),
            (json!({ "orAll": [history, old] }), false),
            (json!({ "orAll": [history, old, recent] }), true),
            (
                json!({ "andAll": [{ "orAll": [history, physics] }, recent] }),
                true,
            ),
        ];
        for (filter, expected) in list_cases {
            let parsed = Filter::parse(&filter).unwrap();
            assert_eq!(parsed.matches(&metadata), expected, "{filter}");
        }
    }

    #[test]
    fn operands_of_the_wrong_type_match_nothing_and_never_panic() {
        let metadata = hostile_metadata();
        let operands = [
            json!("physics"),
            json!(2021),
            json!(-1e308),
            json!(u64::MAX),
            json!(true),
            json!([]),
            json!(["physics", 2021, null, [1], {}]),
            json!({ "year": 2021 }),
            json!(""),
        ];
        let keys = [
            "category", "year", "score", "draft", "tags", "nested", "nothing", "empty", "missing",
        ];
        for operator in Operator::ALL {
            for key in keys {
                for operand in &operands {
                    let filter = json!({ operator.name(): { "key": key, "value": operand } });
                    // Must not panic; the result is checked for the cases below.
                    Filter::parse(&filter).unwrap().matches(&metadata);
                }
            }
        }
        let never = [
            ("equals", "year", json!("2021")),
            ("equals", "nested", json!({ "year": 2021 })),
            ("equals", "tags", json!(["quantum", "basics", 7])),
            ("greaterThan", "category", json!("a")),
            ("greaterThan", "year", json!("2020")),
            ("lessThan", "draft", json!(true)),
            ("in", "category", json!("physics")),
            ("notIn", "category", json!("history")),
            ("startsWith", "year", json!("20")),
            ("listContains", "category", json!("physics")),
            ("stringContains", "year", json!("0")),
            ("stringContains", "tags", json!(7)),
            ("equals", "nothing", json!(false)),
        ];
        for (operator, key, value) in never {
            let filter = json!({ operator: { "key": key, "value": value } });
            let matched = Filter::parse(&filter).unwrap().matches(&metadata);
            assert!(!matched, "{filter}");
        }
        // Different types are never equal, so notEquals passes them.
        let filter = json!({ "notEquals": { "key": "year", "value": "2021" } });
        assert!(Filter::parse(&filter).unwrap().matches(&metadata));
    }

    #[test]
    fn malformed_filters_are_refused_by_name() {
        let equals = json!({ "equals": { "key": "category", "value": "physics" } });
        let cases = [
            (
                json!({ "like": { "key": "a", "value": "b" } }),
                "unknown filter operator \"like\"",
            ),
            (
                json!({ "equals": { "key": "a", "value": 1 }, "in": { "key": "a", "value": [1] } }),
                "filter sets 2 operators (equals, in)",
            ),
            (json!({}), "filter sets no operator"),
            (json!("equals"), "filter must be an object"),
            (
                json!({ "andAll": [equals] }),
                "'filter.andAll' failed to satisfy constraint: Member must have length greater than or equal to 2, got 1",
            ),
            (json!({ "orAll": [] }), "'filter.orAll' failed"),
            (json!({ "orAll": equals }), "filter.orAll must be a list"),
            (
                json!({ "andAll": [equals, { "orAll": [equals, { "nope": {} }] }] }),
                "filter.andAll[1].orAll[1]: unknown filter operator \"nope\"",
            ),
            (
                json!({ "andAll": [equals, { "equals": {}, "orAll": [] }] }),
                "filter.andAll[1] sets 2 operators (equals, orAll)",
            ),
            (
                json!({ "equals": { "value": 1 } }),
                "filter.equals.key is required",
            ),
            (
                json!({ "equals": { "key": "", "value": 1 } }),
                "'filter.equals.key'",
            ),
            (
                json!({ "equals": { "key": "k".repeat(101), "value": 1 } }),
                "'filter.equals.key'",
            ),
            (
                json!({ "in": { "key": "a" } }),
                "filter.in.value is required",
            ),
            (
                json!({ "in": { "key": "a", "value": null } }),
                "filter.in.value is required",
            ),
            (
                json!({ "in": { "key": "a", "value": [1], "op": "x" } }),
                "unknown member \"op\"",
            ),
            (json!({ "in": ["a", [1]] }), "filter.in must be an object"),
        ];
        for (filter, expected) in cases {
            let err = Filter::parse(&filter).unwrap_err();
            assert!(err.contains(expected), "{filter}: {err}");
        }
    }

    /// `{<list>: [<inner>, <sibling>]}` nested `depth` times around `innermost`.
    fn nest(depth: usize, list: &str, innermost: Value, sibling: &Value) -> Value {
        (0..depth).fold(innermost, |inner, _| json!({ list: [inner, sibling] }))
    }

    #[test]
    fn deep_filters_evaluate_and_too_deep_ones_are_refused() {
        let metadata = hostile_metadata();
        let physics = json!({ "equals": { "key": "category", "value": "physics" } });
        let history = json!({ "equals": { "key": "category", "value": "history" } });
        // Only the innermost test decides: it alone passes an orAll chain, or fails an andAll one.
        let passing = nest(MAX_FILTER_DEPTH, "orAll", physics.clone(), &history);
        assert!(Filter::parse(&passing).unwrap().matches(&metadata));
        let failing = nest(MAX_FILTER_DEPTH, "andAll", history.clone(), &physics);
        assert!(!Filter::parse(&failing).unwrap().matches(&metadata));
        let err = Filter::parse(&nest(200, "andAll", physics.clone(), &physics)).unwrap_err();
        assert!(err.contains("deeper than 64 levels"), "{err}");
    }

    #[tokio::test]
    async fn a_body_nested_past_the_json_limit_is_a_validation_exception() {
        let fake = start().await.unwrap();
        let equals = r#"{"equals":{"key":"a","value":1}}"#;
        let filter = format!(
            "{}{equals}{}",
            r#"{"andAll":["#.repeat(500),
            format!(",{equals}]}}").repeat(500)
        );
        let body = format!(
            r#"{{"retrievalQuery":{{"text":"q"}},"retrievalConfiguration":{{"vectorSearchConfiguration":{{"filter":{filter}}}}}}}"#
        );
        let response = reqwest::Client::new()
            .post(format!("{}{RETRIEVE}", fake.url()))
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, kind, _) = outcome(response).await;
        assert_eq!((status, kind.as_str()), (400, "ValidationException"));
    }

    #[tokio::test]
    async fn rerank_orders_by_word_overlap_and_records_the_request() {
        let fake = start().await.unwrap();
        let texts = [
            "Classical bits are either 0 or 1.",
            "Quantum error correction protects qubits.",
            "Quantum computers use qubits.",
            "Error bars in quantum experiments.",
            "Quantum annealing.",
        ];
        let body = rerank_body("quantum error correction", &texts, None);
        let (status, _, answer) = outcome(post(&fake, "/rerank", &body).await).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer,
            json!({ "results": [
                { "index": 1, "relevanceScore": 1.0 },
                { "index": 3, "relevanceScore": 2.0 / 3.0 },
                { "index": 2, "relevanceScore": 1.0 / 3.0 },
                { "index": 4, "relevanceScore": 1.0 / 3.0 },
                { "index": 0, "relevanceScore": 0.0 },
            ] })
        );
        let body = rerank_body("quantum error correction", &texts, Some(2));
        let (_, _, answer) = outcome(post(&fake, "/rerank", &body).await).await;
        let indices: Vec<u64> = answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|result| result["index"].as_u64().unwrap())
            .collect();
        assert_eq!(indices, [1, 3]);
        let recorded = &fake.requests()[1];
        assert_eq!(recorded.path, "/rerank");
        assert_eq!(
            recorded.body["rerankingConfiguration"]["bedrockRerankingConfiguration"]["modelConfiguration"]
                ["modelArn"],
            RERANK_ARN
        );
        assert_eq!(recorded.body["sources"].as_array().unwrap().len(), 5);
    }

    #[tokio::test]
    async fn rerank_scores_json_documents_by_their_serialized_text() {
        let fake = start().await.unwrap();
        let mut body = rerank_body("quantum title", &["nothing", "replaced"], None);
        body["sources"][1] = json!({ "type": "INLINE", "inlineDocumentSource": {
            "type": "JSON", "jsonDocument": { "title": "Quantum" } } });
        let (status, _, answer) = outcome(post(&fake, "/rerank", &body).await).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["results"][0],
            json!({ "index": 1, "relevanceScore": 1.0 })
        );
    }

    #[tokio::test]
    async fn rerank_refuses_what_bedrock_refuses() {
        let fake = start().await.unwrap();
        let good = rerank_body("q", &["a", "b"], Some(2));
        let with = |path: &[&str], value: Value| {
            let mut body = good.clone();
            let mut slot = &mut body;
            for step in path {
                slot = match step.parse::<usize>() {
                    Ok(i) => &mut slot[i],
                    Err(_) => &mut slot[*step],
                };
            }
            *slot = value;
            body
        };
        let many: Vec<&str> = vec!["x"; 1001];
        let cases = [
            (with(&["queries"], json!([])), "'queries'"),
            (
                with(
                    &["queries"],
                    json!([good["queries"][0], good["queries"][0]]),
                ),
                "exactly 1 query, got 2",
            ),
            (
                with(&["queries", "0", "type"], json!("IMAGE")),
                "queries.1.member.type",
            ),
            (
                with(&["queries", "0", "textQuery", "text"], json!("")),
                "textQuery.text",
            ),
            (with(&["sources"], json!([])), "'sources'"),
            (
                rerank_body("q", &many, None),
                "between 1 and 1000, got 1001",
            ),
            (
                with(&["sources", "1", "type"], json!("S3")),
                "sources.2.member.type",
            ),
            (
                with(
                    &["sources", "0", "inlineDocumentSource", "type"],
                    json!("IMAGE"),
                ),
                "sources.1.member.inlineDocumentSource.type",
            ),
            (
                with(
                    &["sources", "0", "inlineDocumentSource", "type"],
                    json!("JSON"),
                ),
                "jsonDocument is required",
            ),
            (
                with(
                    &[
                        "rerankingConfiguration",
                        "bedrockRerankingConfiguration",
                        "modelConfiguration",
                        "modelArn",
                    ],
                    json!(
                        "arn:aws:bedrock:us-west-2::foundation-model/amazon.titan-embed-text-v2:0"
                    ),
                ),
                "model identifier is invalid",
            ),
            (
                with(
                    &[
                        "rerankingConfiguration",
                        "bedrockRerankingConfiguration",
                        "numberOfResults",
                    ],
                    json!(0),
                ),
                "between 1 and 1000, got 0",
            ),
            (
                with(
                    &[
                        "rerankingConfiguration",
                        "bedrockRerankingConfiguration",
                        "numberOfResults",
                    ],
                    json!(1001),
                ),
                "between 1 and 1000, got 1001",
            ),
            (
                with(&["rerankingConfiguration", "type"], json!("COHERE")),
                "BEDROCK_RERANKING_MODEL",
            ),
            (json!({ "queries": [] }), "Malformed input request"),
        ];
        for (body, expected) in cases {
            let (status, kind, answer) = outcome(post(&fake, "/rerank", &body).await).await;
            assert_eq!(
                (status, kind.as_str()),
                (400, "ValidationException"),
                "{body}"
            );
            let message = answer["message"].as_str().unwrap();
            assert!(
                message.contains(expected),
                "{expected:?} not in {message:?}"
            );
        }
    }

    #[tokio::test]
    async fn retrieve_ranks_filters_and_limits() {
        let fake = start().await.unwrap();
        let qubits = "s3://ragway-fake-kb/quantum/qubits.md";
        let superposition = "https://docs.example.com/quantum/superposition";
        let correction = "s3://ragway-fake-kb/quantum/error-correction.md";
        let classical = "https://blog.example.com/classical-computing";

        let body = json!({ "retrievalQuery": { "text": "quantum error correction with qubits" } });
        let (status, _, answer) = outcome(post(&fake, RETRIEVE, &body).await).await;
        assert_eq!(status, 200, "{answer}");
        let first = &answer["retrievalResults"][0];
        assert_eq!(first["content"]["type"], "TEXT");
        assert!(
            first["content"]["text"]
                .as_str()
                .unwrap()
                .starts_with("Quantum error")
        );
        assert_eq!(
            first["location"],
            json!({ "type": "S3", "s3Location": { "uri": correction } })
        );
        assert_eq!(first["metadata"]["category"], "engineering");
        assert_eq!(first["score"], 0.8);
        assert_eq!(
            retrieved(&fake, &body).await,
            [correction, qubits, superposition, classical]
        );

        let mut limited = filtered(json!({ "in": { "key": "year", "value": [1995, 2019, 2021] } }));
        limited["retrievalConfiguration"]["vectorSearchConfiguration"]["numberOfResults"] =
            json!(2);
        limited["retrievalConfiguration"]["vectorSearchConfiguration"]["overrideSearchType"] =
            json!("HYBRID");
        assert_eq!(retrieved(&fake, &limited).await, [qubits, superposition]);

        let physics_after_2020 = filtered(json!({ "andAll": [
            { "equals": { "key": "category", "value": "physics" } },
            { "greaterThan": { "key": "year", "value": 2020 } },
        ] }));
        assert_eq!(retrieved(&fake, &physics_after_2020).await, [qubits]);
        let history_or_old = filtered(json!({ "orAll": [
            { "equals": { "key": "category", "value": "history" } },
            { "lessThan": { "key": "year", "value": 2020 } },
        ] }));
        assert_eq!(
            retrieved(&fake, &history_or_old).await,
            [superposition, classical]
        );
        let basics = filtered(json!({ "listContains": { "key": "tags", "value": "basics" } }));
        assert_eq!(retrieved(&fake, &basics).await, [qubits, classical]);
        let none = filtered(json!({ "equals": { "key": "category", "value": "biology" } }));
        assert!(retrieved(&fake, &none).await.is_empty());

        let recorded = fake.requests();
        assert!(recorded.iter().all(|request| request.path == RETRIEVE));
    }

    #[tokio::test]
    async fn retrieve_refuses_unknown_knowledge_bases_and_bad_input() {
        let fake = start().await.unwrap();
        let body = json!({ "retrievalQuery": { "text": "q" } });
        let (status, kind, answer) =
            outcome(post(&fake, "/knowledgebases/KBNOTTHERE/retrieve", &body).await).await;
        assert_eq!((status, kind.as_str()), (404, "ResourceNotFoundException"));
        assert!(answer["message"].as_str().unwrap().contains("KBNOTTHERE"));

        let search = |configuration: Value| {
            json!({
                "retrievalQuery": { "text": "q" },
                "retrievalConfiguration": { "vectorSearchConfiguration": configuration },
            })
        };
        let cases = [
            (
                search(json!({ "numberOfResults": 0 })),
                "between 1 and 100, got 0",
            ),
            (
                search(json!({ "numberOfResults": 101 })),
                "between 1 and 100, got 101",
            ),
            (
                search(json!({ "overrideSearchType": "KEYWORD" })),
                "overrideSearchType",
            ),
            (
                search(
                    json!({ "filter": { "andAll": [{ "equals": { "key": "a", "value": 1 } }] } }),
                ),
                "'filter.andAll'",
            ),
            (
                search(json!({ "filter": { "regex": { "key": "a", "value": "b" } } })),
                "\"regex\"",
            ),
            (
                json!({ "retrievalQuery": {} }),
                "retrievalQuery.text is required",
            ),
            (json!({}), "Malformed input request"),
        ];
        for (body, expected) in cases {
            let (status, kind, answer) = outcome(post(&fake, RETRIEVE, &body).await).await;
            assert_eq!(
                (status, kind.as_str()),
                (400, "ValidationException"),
                "{body}"
            );
            let message = answer["message"].as_str().unwrap();
            assert!(
                message.contains(expected),
                "{expected:?} not in {message:?}"
            );
        }
    }

    #[tokio::test]
    async fn custom_knowledge_base_and_scripted_error() {
        let result = KnowledgeBaseResult {
            text: "only chunk".into(),
            location: SourceLocation::Web {
                url: "https://example.com/only".into(),
            },
            metadata: Map::new(),
        };
        let fake = start_with(KnowledgeBase {
            id: "KBOTHER".into(),
            results: vec![result],
        })
        .await
        .unwrap();
        let body = json!({ "retrievalQuery": { "text": "chunk" } });
        let (status, _, answer) =
            outcome(post(&fake, "/knowledgebases/KBOTHER/retrieve", &body).await).await;
        assert_eq!(status, 200);
        assert_eq!(
            answer,
            json!({ "retrievalResults": [{
                "content": { "text": "only chunk", "type": "TEXT" },
                "location": { "type": "WEB", "webLocation": { "url": "https://example.com/only" } },
                "score": 1.0,
            }] })
        );
        let (status, _, _) = outcome(post(&fake, RETRIEVE, &body).await).await;
        assert_eq!(status, 404);

        fake.push(Scripted::Error {
            status: 429,
            kind: "ThrottlingException".into(),
            message: "slow down".into(),
        });
        let response = post(&fake, "/rerank", &rerank_body("q", &["a"], None)).await;
        assert_eq!(response.headers()["retry-after"], "1");
        let (status, kind, answer) = outcome(response).await;
        assert_eq!((status, kind.as_str()), (429, "ThrottlingException"));
        assert_eq!(answer, json!({ "message": "slow down" }));
    }
}
