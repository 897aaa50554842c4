//! Routes that describe the service: the welcome message, liveness and the model list.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::registry::Registry;

/// `GET /`: the seed's welcome message, plus where to go next.
pub async fn root() -> Json<Value> {
    Json(json!({
        "message": "Welcome to LLM Inference API",
        "service": "ragway",
        "version": env!("CARGO_PKG_VERSION"),
        "endpoints": ["/generate", "/models", "/search", "/stores", "/healthz", "/ui", "/v1/chat/completions", "/v1/models", "/v1/embeddings"],
    }))
}

/// `GET /healthz`: the process is up and serving.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /models`: the names requests may use.
pub async fn models(State(registry): State<Arc<Registry>>) -> Json<Value> {
    Json(json!({
        "llm_models": registry.llm_names(),
        "vector_dbs": registry.store_names(),
    }))
}
