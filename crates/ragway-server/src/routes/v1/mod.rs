//! The OpenAI-compatible API under `/v1`: chat completions (with optional retrieval), the model
//! list and embeddings. Errors use OpenAI's shape so the official SDKs raise the right classes.

pub(crate) mod chat;
pub(crate) mod embeddings;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use ragway_engine::EngineError;
use serde_json::{Value, json};

use crate::Gateway;
use crate::auth::Caller;
use crate::error::{ApiError, OpenAiError};
use crate::openapi::responses::OpenAiAccess;
use crate::openapi::schemas::{ModelList, ModelObject, OpenAiErrorBody};

/// The `/v1` routes, to be nested under `/v1`.
pub fn router() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/chat/completions", post(chat::completions))
        .route("/embeddings", post(embeddings::embeddings))
        .route("/models", get(models))
        .route("/models/{*id}", get(model))
        .fallback(unknown_route)
}

/// Seconds since the Unix epoch, OpenAI's `created`.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The model objects the caller may use: chat models first, then embedding models.
fn model_objects(registry: &Gateway, caller: &Caller) -> Vec<Value> {
    let chat = registry
        .llms()
        .map(|llm| (llm.name.clone(), format!("ragway:{}", llm.kind)));
    let embedders = registry
        .embedder_names()
        .into_iter()
        .map(|name| (name, "ragway:embedder".to_owned()));
    chat.chain(embedders)
        .filter(|(id, _)| caller.may_use_model(id))
        .map(|(id, owned_by)| {
            json!({ "id": id, "object": "model", "created": 0, "owned_by": owned_by })
        })
        .collect()
}

/// `GET /v1/models`.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "openai",
    responses(
        (status = 200, description = "Every chat model, then every embedding model", body = ModelList),
        OpenAiAccess,
    ),
)]
pub async fn models(
    State(registry): State<Arc<Gateway>>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Response {
    axum::Json(json!({ "object": "list", "data": model_objects(&registry, &caller) }))
        .into_response()
}

/// `GET /v1/models/{id}`.
#[utoipa::path(
    get,
    path = "/v1/models/{id}",
    tag = "openai",
    params(("id" = String, Path, description = "A model's name")),
    responses(
        (status = 200, description = "The model", body = ModelObject),
        (status = 404, description = "No model of that name (`code: model_not_found`)", body = OpenAiErrorBody),
        OpenAiAccess,
    ),
)]
pub async fn model(
    State(registry): State<Arc<Gateway>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(id): Path<String>,
) -> Result<Response, OpenAiError> {
    model_objects(&registry, &caller)
        .into_iter()
        .find(|m| m["id"] == id.as_str())
        .map(|m| axum::Json(m).into_response())
        .ok_or_else(|| {
            OpenAiError(ApiError::Engine(EngineError::UnknownModel {
                name: id,
                known: registry
                    .llm_names()
                    .into_iter()
                    .chain(registry.embedder_names())
                    .collect(),
            }))
        })
}

async fn unknown_route(method: Method, uri: Uri) -> OpenAiError {
    OpenAiError(ApiError::UnknownRoute {
        method: method.to_string(),
        path: uri.path().to_owned(),
    })
}
