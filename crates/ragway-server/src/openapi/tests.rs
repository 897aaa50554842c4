//! The document against the router: every route served is documented and nothing else, every
//! operation lists its errors, and `/docs` loads only from this server.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use ragway_core::config::ServerConfig;
use serde_json::Value;
use tower::ServiceExt as _;

use crate::{Gateway, Readiness, app};

/// Every route the router serves, as `METHOD /path` with OpenAPI's `{param}` spelling. A route
/// added to the router must be added here, and documented, or the tests below fail.
const ROUTES: &[&str] = &[
    "GET /",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "GET /models",
    "POST /generate",
    "POST /search",
    "GET /stores",
    "POST /stores/{name}/documents",
    "DELETE /stores/{name}/documents/{id}",
    "GET /ui",
    "GET /openapi.json",
    "GET /docs",
    "GET /docs/{asset}",
    "POST /v1/chat/completions",
    "GET /v1/models",
    "GET /v1/models/{id}",
    "POST /v1/embeddings",
];

fn listed() -> BTreeSet<String> {
    ROUTES.iter().map(|r| (*r).to_owned()).collect()
}

fn document() -> Value {
    serde_json::to_value(super::document()).unwrap()
}

/// `(route, operation)` for every operation in the document.
fn operations(document: &Value) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            found.push((
                format!("{} {path}", method.to_uppercase()),
                operation.clone(),
            ));
        }
    }
    found
}

/// The `.route("path", method(...))` calls of a router's source, prefixed by where it is nested.
fn registered(source: &str, prefix: &str) -> BTreeSet<String> {
    source
        .split(".route(\"")
        .skip(1)
        .map(|call| {
            let (path, rest) = call.split_once('"').unwrap();
            let method = rest
                .trim_start_matches(',')
                .trim_start()
                .split('(')
                .next()
                .unwrap();
            let path = format!("{prefix}{path}").replace("{*", "{");
            format!("{} {path}", method.to_uppercase())
        })
        .collect()
}

#[test]
fn the_document_is_openapi_3_1() {
    let document = document();
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        document["openapi"]
    );
    assert_eq!(document["info"]["title"], "ragway");
    // A document's version is set by ingest sources only; a caller cannot send one.
    let fields = document["components"]["schemas"]["Document"]["properties"]
        .as_object()
        .unwrap();
    assert!(fields.contains_key("text"), "{fields:?}");
    assert!(!fields.contains_key("version"), "{fields:?}");
}

#[test]
fn every_route_the_router_serves_is_documented_and_nothing_else() {
    let documented: BTreeSet<String> = operations(&document())
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert_eq!(documented, listed(), "documented vs ROUTES");

    let mut served = registered(include_str!("../routes/mod.rs"), "");
    served.extend(registered(include_str!("../routes/v1/mod.rs"), "/v1"));
    served.extend(registered(include_str!("../metrics.rs"), ""));
    assert_eq!(served, listed(), "the routers' .route(...) calls vs ROUTES");
}

#[tokio::test]
async fn every_listed_route_is_routed() {
    let registry = Arc::new(Gateway::from_parts(ServerConfig::default(), vec![], vec![]));
    for route in ROUTES {
        let (method, path) = route.split_once(' ').unwrap();
        let path = path
            .replace("{name}", "nowhere")
            .replace("{id}", "x")
            .replace("{asset}", "swagger-ui.css");
        let response = app(registry.clone(), Readiness::new())
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(&path)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from("{}"))
                    .unwrap(),
            )
            .await
            .unwrap();
        // Unrouted paths get axum's bodiless 404/405; handlers always say something.
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(
            !body.is_empty() || status.is_success(),
            "{route}: {status} with no body, so no handler ran"
        );
    }
}

#[test]
fn every_protected_operation_documents_its_errors_and_needs_a_key() {
    let document = document();
    let schemes = document["components"]["securitySchemes"]
        .as_object()
        .unwrap();
    assert_eq!(schemes[super::BEARER]["scheme"], "bearer");
    assert_eq!(schemes[super::API_KEY]["name"], "x-api-key");
    for (route, operation) in operations(&document) {
        let path = route.split_once(' ').unwrap().1;
        let statuses: BTreeSet<&str> = operation["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert!(statuses.contains("200"), "{route}: {statuses:?}");
        let security = operation["security"].as_array().unwrap();
        if super::PUBLIC_PATHS.contains(&path) {
            assert!(security.is_empty(), "{route} is public: {security:?}");
            continue;
        }
        assert_eq!(security.len(), 2, "{route}: bearer or api_key");
        for status in ["401", "503"] {
            assert!(statuses.contains(status), "{route} lacks {status}");
        }
        let has_body = operation.get("requestBody").is_some();
        if has_body {
            let invalid = if path.starts_with("/v1/") {
                "400"
            } else {
                "422"
            };
            for status in ["413", "415", invalid] {
                assert!(statuses.contains(status), "{route} lacks {status}");
            }
        }
        let shape = if path.starts_with("/v1/") {
            "#/components/schemas/OpenAiErrorBody"
        } else {
            "#/components/schemas/ErrorMessage"
        };
        for (status, response) in operation["responses"].as_object().unwrap() {
            if status.starts_with('2') {
                continue;
            }
            let schema = &response["content"]["application/json"]["schema"]["$ref"];
            let expected = if status == "422" {
                "#/components/schemas/ValidationErrors"
            } else {
                shape
            };
            assert_eq!(schema, expected, "{route} {status}");
        }
    }
}

#[test]
fn the_store_write_routes_say_they_need_write_stores() {
    let document = document();
    for (route, operation) in operations(&document) {
        let writes = route == "POST /stores/{name}/documents"
            || route == "DELETE /stores/{name}/documents/{id}";
        let description = operation["description"].as_str().unwrap_or_default();
        assert_eq!(
            description.contains("`write_stores`"),
            writes,
            "{route}: {description}"
        );
        if writes {
            let forbidden = operation["responses"]["403"]["description"]
                .as_str()
                .unwrap();
            assert!(forbidden.contains("write_stores"), "{route}: {forbidden}");
        }
    }
}

#[test]
fn throttling_and_a_busy_server_document_retry_after() {
    for (route, operation) in operations(&document()) {
        for status in ["429", "503"] {
            if let Some(response) = operation["responses"].get(status)
                && !route.ends_with("/readyz")
                && !route.ends_with("/metrics")
            {
                assert!(
                    response["headers"].get("Retry-After").is_some(),
                    "{route} {status}"
                );
            }
        }
    }
}

async fn get(path: &str) -> (StatusCode, String, String, String) {
    let registry = Arc::new(Gateway::from_parts(ServerConfig::default(), vec![], vec![]));
    let response = app(registry, Readiness::new())
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let content_type = header(header::CONTENT_TYPE);
    let cache = header(header::CACHE_CONTROL);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        content_type,
        cache,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn openapi_json_is_served() {
    let (status, content_type, _, body) = get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/json");
    let served: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(served, document());
}

#[tokio::test]
async fn docs_load_only_local_assets_each_with_its_content_type() {
    let (status, content_type, cache, page) = get("/docs").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert_eq!(cache, "no-cache");
    let urls: Vec<&str> = page
        .split(['"', '\''])
        .filter(|s| s.starts_with('/') || s.contains("://"))
        .collect();
    assert_eq!(
        urls,
        [
            "/docs/swagger-ui.css",
            "/docs/swagger-ui-bundle.js",
            "/docs/swagger-initializer.js"
        ],
        "{page}"
    );
    for (url, expected) in [
        ("/docs/swagger-ui.css", "text/css"),
        ("/docs/swagger-ui-bundle.js", "text/javascript"),
        ("/docs/swagger-initializer.js", "text/javascript"),
    ] {
        let (status, content_type, cache, body) = get(url).await;
        assert_eq!(status, StatusCode::OK, "{url}");
        assert!(content_type.starts_with(expected), "{url}: {content_type}");
        assert!(!cache.is_empty(), "{url} has no Cache-Control");
        assert!(body.len() > 100, "{url}");
    }
    let (_, _, _, initializer) = get("/docs/swagger-initializer.js").await;
    assert!(initializer.contains(r#"url: "/openapi.json""#));
    assert!(initializer.contains("validatorUrl: null"));
    assert!(!initializer.contains("://"), "{initializer}");

    let (status, content_type, _, body) = get("/docs/nothing.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(content_type, "application/json");
    assert!(body.contains("\"detail\""), "{body}");
}
