//! Fake Amazon Kendra (awsJson1.1): the `Retrieve` operation over a fixed list of passages.

use std::borrow::Cow;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::server::{self, Call, Fake, FakeOptions, Scripted, Shared};

/// The awsJson1.1 content type of requests and answers.
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// `X-Amz-Target` of the one operation the fake implements.
const RETRIEVE: &str = "AWSKendraFrontendService.Retrieve";

/// Kendra's default `PageSize`.
const DEFAULT_PAGE_SIZE: usize = 10;

/// A passage the fake returns from `Retrieve`.
#[derive(Clone, Debug, PartialEq)]
pub struct KendraPassage {
    pub id: String,
    pub document_id: String,
    pub title: String,
    pub uri: String,
    pub content: String,
    /// `VERY_HIGH`, `HIGH`, `MEDIUM`, `LOW` or `NOT_AVAILABLE`.
    pub confidence: String,
}

/// Three passages on quantum computing, with confidences `VERY_HIGH`, `HIGH` and `LOW`.
pub fn default_passages() -> Vec<KendraPassage> {
    let passage =
        |n: u32, topic: &str, title: &str, content: &str, confidence: &str| KendraPassage {
            id: format!("fake-result-{n}"),
            document_id: format!("s3://ragway-fake-docs/quantum/{topic}.md"),
            title: title.to_owned(),
            uri: format!("https://docs.example.com/quantum/{topic}"),
            content: content.to_owned(),
            confidence: confidence.to_owned(),
        };
    vec![
        passage(
            1,
            "qubits",
            "Qubits",
            "A qubit is the basic unit of quantum information. Unlike a classical bit, which is \
             either 0 or 1, a qubit can be in a combination of both states until it is measured.",
            "VERY_HIGH",
        ),
        passage(
            2,
            "superposition",
            "Superposition",
            "Superposition lets a quantum register of n qubits hold a weighted combination of all \
             2^n classical states at once; measurement collapses it to a single outcome.",
            "HIGH",
        ),
        passage(
            3,
            "entanglement",
            "Entanglement",
            "Entangled qubits share one quantum state, so measuring one of them fixes the outcome \
             of measuring the other, however far apart they are.",
            "LOW",
        ),
    ]
}

/// Starts the fake answering with [`default_passages`].
pub async fn start() -> anyhow::Result<Fake> {
    start_with(default_passages()).await
}

/// Starts the fake answering with `passages`, in this order.
pub async fn start_with(passages: Vec<KendraPassage>) -> anyhow::Result<Fake> {
    start_with_options(FakeOptions::default(), passages).await
}

/// Starts the fake with explicit options.
pub async fn start_with_options(
    options: FakeOptions,
    passages: Vec<KendraPassage>,
) -> anyhow::Result<Fake> {
    let passages: Arc<[KendraPassage]> = passages.into();
    server::start(options, move |shared| app(KendraState { shared, passages })).await
}

#[derive(Clone, FromRef)]
struct KendraState {
    shared: Shared,
    passages: Arc<[KendraPassage]>,
}

fn app(state: KendraState) -> Router {
    Router::new()
        .route("/", post(operation))
        .fallback(unknown_route)
        .with_state(state)
}

#[derive(Deserialize)]
struct RetrieveRequest<'a> {
    #[serde(rename = "IndexId", borrow)]
    _index_id: Cow<'a, str>,
    #[serde(rename = "QueryText", borrow)]
    _query_text: Cow<'a, str>,
    #[serde(rename = "PageSize", default)]
    page_size: Option<usize>,
}

async fn operation(State(passages): State<Arc<[KendraPassage]>>, call: Call) -> Response {
    let target = call
        .headers
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if target != RETRIEVE {
        return kendra_error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            &format!("The fake implements only {RETRIEVE}, not {target:?}."),
        );
    }
    if let Some(Scripted::Error {
        status,
        kind,
        message,
    }) = &call.script
    {
        return kendra_error(server::status(*status), kind, message);
    }
    let request: RetrieveRequest<'_> = match serde_json::from_slice(&call.body) {
        Ok(request) => request,
        Err(err) => {
            return kendra_error(
                StatusCode::BAD_REQUEST,
                "ValidationException",
                &format!("Invalid Retrieve request: {err}"),
            );
        }
    };
    call.scripted_delay().await;
    let items: Vec<Value> = passages
        .iter()
        .take(request.page_size.unwrap_or(DEFAULT_PAGE_SIZE))
        .map(|passage| {
            json!({
                "Id": passage.id,
                "DocumentId": passage.document_id,
                "DocumentTitle": passage.title,
                "DocumentURI": passage.uri,
                "Content": passage.content,
                "DocumentAttributes": [
                    { "Key": "_source_uri", "Value": { "StringValue": passage.uri } }
                ],
                "ScoreAttributes": { "ScoreConfidence": passage.confidence },
            })
        })
        .collect();
    let body = json!({
        "QueryId": format!("fake-query-{}", call.state.next_id()),
        "ResultItems": items,
    });
    (
        [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

/// Unknown paths are still recorded (through `Call`), so tests can see what was asked for.
async fn unknown_route(_call: Call) -> Response {
    kendra_error(
        StatusCode::NOT_FOUND,
        "UnknownOperationException",
        "Kendra is served at POST /.",
    )
}

/// awsJson1.1 error: `{"__type", "message"}`, with the type in `x-amzn-ErrorType` as well.
fn kendra_error(status: StatusCode, kind: &str, message: &str) -> Response {
    server::json_error(
        status,
        CONTENT_TYPE,
        &[("x-amzn-errortype", kind)],
        &json!({ "__type": kind, "message": message }),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    async fn call(fake: &Fake, target: &str, body: &Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/", fake.url()))
            .header("x-amz-target", target)
            .header("content-type", CONTENT_TYPE)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    #[test]
    fn default_passages_have_distinct_confidences() {
        let confidences: Vec<String> = default_passages()
            .into_iter()
            .map(|passage| passage.confidence)
            .collect();
        assert_eq!(confidences, ["VERY_HIGH", "HIGH", "LOW"]);
    }

    #[tokio::test]
    async fn retrieve_returns_passages_up_to_page_size() {
        let fake = start().await.unwrap();
        let request = json!({ "IndexId": "idx", "QueryText": "quantum", "PageSize": 2 });
        let response = call(&fake, RETRIEVE, &request).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], CONTENT_TYPE);
        let body: Value = response.json().await.unwrap();
        let items = body["ResultItems"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["DocumentTitle"], "Qubits");
        assert_eq!(items[0]["ScoreAttributes"]["ScoreConfidence"], "VERY_HIGH");
        assert_eq!(
            items[1]["DocumentAttributes"][0]["Value"]["StringValue"],
            "https://docs.example.com/quantum/superposition"
        );
        assert!(body["QueryId"].is_string());
        assert_eq!(fake.requests()[0].body, request);

        let all: Value = call(
            &fake,
            RETRIEVE,
            &json!({ "IndexId": "i", "QueryText": "q" }),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(all["ResultItems"].as_array().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn custom_passages_are_served() {
        let mut passage = default_passages().remove(0);
        passage.content = "custom".into();
        let fake = start_with(vec![passage]).await.unwrap();
        let body: Value = call(
            &fake,
            RETRIEVE,
            &json!({ "IndexId": "i", "QueryText": "q" }),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(body["ResultItems"][0]["Content"], "custom");
    }

    #[tokio::test]
    async fn unknown_target_and_scripted_error() {
        let fake = start().await.unwrap();
        let response = call(&fake, "AWSKendraFrontendService.Query", &json!({})).await;
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["__type"], "UnknownOperationException");

        fake.push(Scripted::Error {
            status: 429,
            kind: "ThrottlingException".into(),
            message: "slow down".into(),
        });
        let request = json!({ "IndexId": "i", "QueryText": "q" });
        let response = call(&fake, RETRIEVE, &request).await;
        assert_eq!(response.status(), 429);
        assert_eq!(
            response.headers()["x-amzn-errortype"],
            "ThrottlingException"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({ "__type": "ThrottlingException", "message": "slow down" })
        );
    }
}
