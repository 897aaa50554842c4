//! Routes that describe the service: the welcome message, liveness, readiness and the model
//! list.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{Value, json};

use crate::Gateway;
use crate::auth::Caller;
use crate::openapi::responses::Access;
use crate::openapi::schemas::{Health, ModelNames, NotReady, Ready, Welcome};
use crate::shutdown::Readiness;
use ragway_engine::ComponentCheck;

/// `GET /`: the seed's welcome message, plus where to go next.
#[utoipa::path(get, path = "/", tag = "service", responses((status = 200, description = "The welcome message", body = Welcome)))]
pub async fn root() -> Json<Value> {
    Json(json!({
        "message": "Welcome to LLM Inference API",
        "service": "ragway",
        "version": env!("CARGO_PKG_VERSION"),
        "endpoints": ["/generate", "/models", "/search", "/stores", "/healthz", "/readyz", "/ui", "/docs", "/openapi.json", "/v1/chat/completions", "/v1/models", "/v1/embeddings"],
    }))
}

/// `GET /healthz`: the process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// What `/readyz` looks at.
#[derive(Clone)]
pub struct ReadyState {
    pub registry: Arc<Gateway>,
    pub readiness: Readiness,
}

/// `GET /readyz`: 200 while the server takes new requests and every component says it can
/// serve (the local model's generation threads run, each FAISS index matches its documents,
/// AWS credentials resolve, Redis answers when limits are counted there); 503 naming the
/// failing components otherwise, and from the moment shutdown begins, so that a load balancer
/// stops sending work while the requests in flight finish. A Redis that does not answer under
/// `redis_unavailable = "fail_open"` is listed as `degraded` and ragway stays ready: requests
/// are served (uncounted), and every replica shares that Redis, so 503 would take them all out
/// of the load balancer at once. Under `fail_closed` it is `failing`: limited requests get 503.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "service",
    responses(
        (status = 200, description = "Taking requests; every component can serve (a component `degraded` serves in a reduced way: Redis down under `fail_open` lets requests in uncounted)", body = Ready),
        (status = 503, description = "Shutting down (finishing the requests in flight), or some component cannot serve (`checks` says which and why; Redis down under `fail_closed` is one)", body = NotReady),
    ),
)]
pub async fn readyz(State(state): State<ReadyState>) -> (StatusCode, Json<Value>) {
    if !state.readiness.is_ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "shutting_down",
                "detail": "ragway is shutting down: it finishes the requests in flight and takes no new ones",
            })),
        );
    }
    let registry = &state.registry;
    let checks = registry.check_components().await;
    if registry.auth.is_enabled() {
        return public_readiness(&checks);
    }
    let failing: Vec<String> = checks
        .iter()
        .filter(|check| check.blocks_readiness())
        .filter_map(|check| {
            let detail = check.detail.as_ref()?;
            Some(format!("{} \"{}\": {detail}", check.component, check.name))
        })
        .collect();
    for check in checks
        .iter()
        .filter(|c| !c.is_ok() && !c.blocks_readiness())
    {
        tracing::warn!(
            component = check.component,
            name = %check.name,
            detail = check.detail.as_deref().unwrap_or_default(),
            "degraded"
        );
    }
    if !failing.is_empty() {
        tracing::warn!(failing = %failing.join("; "), "not ready");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "not_ready",
                "detail": failing.join("; "),
                "checks": checks,
            })),
        );
    }
    (
        StatusCode::OK,
        Json(json!({
            "status": "ready",
            "llm_models": registry.llm_names(),
            "vector_dbs": registry.store_names(),
            "embedders": registry.embedder_names(),
            "checks": checks,
        })),
    )
}

/// `/readyz` when API keys guard everything else: anyone may ask it (load balancers do), so it
/// says ready or not and which components are not well, by kind and name, and no more; why
/// they are not (paths, credential-chain errors) goes to the log only.
fn public_readiness(checks: &[ComponentCheck]) -> (StatusCode, Json<Value>) {
    let unwell: Vec<&ComponentCheck> = checks.iter().filter(|check| !check.is_ok()).collect();
    for check in &unwell {
        tracing::warn!(
            component = check.component,
            name = %check.name,
            status = check.status,
            detail = check.detail.as_deref().unwrap_or_default(),
            "component not well"
        );
    }
    let listed: Vec<Value> = unwell
        .iter()
        .map(|check| json!({"component": check.component, "name": check.name, "status": check.status}))
        .collect();
    let failing: Vec<String> = unwell
        .iter()
        .filter(|check| check.blocks_readiness())
        .map(|check| format!("{} \"{}\"", check.component, check.name))
        .collect();
    if failing.is_empty() {
        return (
            StatusCode::OK,
            Json(json!({"status": "ready", "checks": listed})),
        );
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({
            "status": "not_ready",
            "detail": format!("not ready: {} cannot serve (the server's log says why)", failing.join(", ")),
            "checks": listed,
        })),
    )
}

/// `GET /models`: the names the caller's requests may use.
#[utoipa::path(
    get,
    path = "/models",
    tag = "generate",
    responses((status = 200, description = "Model and store names", body = ModelNames), Access),
)]
pub async fn models(
    State(registry): State<Arc<Gateway>>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Json<Value> {
    let llms: Vec<String> = registry
        .llm_names()
        .into_iter()
        .filter(|name| caller.may_use_model(name))
        .collect();
    let stores: Vec<String> = registry
        .store_names()
        .into_iter()
        .filter(|name| caller.may_use_store(name))
        .collect();
    Json(json!({ "llm_models": llms, "vector_dbs": stores }))
}
