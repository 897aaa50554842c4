//! `POST /search`: retrieval alone, for inspecting what a store returns for a query.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::{Extension, Json};
use ragway_core::config::RetrievalMode;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::Gateway;
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::json::Body;
use crate::openapi::responses::{Access, BadBody, Upstream};
use crate::openapi::schemas::{ErrorMessage, SearchResults};
use ragway_engine::pipeline::{Search, millis};

/// A query for one store. Other fields are ignored.
#[derive(Deserialize, ToSchema)]
pub struct SearchRequest {
    /// Not blank.
    query: String,
    /// One of `GET /models`' `vector_dbs`, or "none" (no passages).
    vector_search_type: String,
    /// Passages to return: at least 1, at most the server's `max_top_k`.
    #[schema(minimum = 1)]
    top_k: Option<usize>,
    /// How the store searches: `dense`, `keyword` or `hybrid` (faiss stores have all three);
    /// the store's configured way when absent.
    #[serde(default)]
    retrieval: Option<RetrievalMode>,
    /// Only passages whose metadata passes this filter, as in `/generate`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    filter: Option<Value>,
}

/// `POST /search`.
#[utoipa::path(
    post,
    path = "/search",
    tag = "generate",
    request_body = SearchRequest,
    responses(
        (status = 200, description = "The passages, best first", body = SearchResults),
        (status = 400, description = "Unknown `vector_search_type` (the message lists the valid names)", body = ErrorMessage),
        BadBody,
        Upstream,
        Access,
    ),
)]
pub async fn search(
    State(registry): State<Arc<Gateway>>,
    Extension(caller): Extension<Arc<Caller>>,
    Body(request): Body<SearchRequest>,
) -> Result<Json<Value>, ApiError> {
    let mut errors = Vec::new();
    if request.query.trim().is_empty() {
        errors.push(FieldError::new(
            &["body", "query"],
            "String should have at least 1 character",
            "string_too_short",
        ));
    }
    errors.extend(ragway_requests::check_length(
        &["body", "query"],
        &request.query,
        registry.server.limits.max_prompt_chars,
    ));
    if let Some(error) = ragway_requests::check_top_k(request.top_k, registry.server.max_top_k) {
        errors.push(error);
    }
    let filter = ragway_requests::read_filter(request.filter.as_ref())
        .map_err(|e| errors.push(ragway_requests::filter_field_error(&e)))
        .unwrap_or_default();
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    caller.check_store(&request.vector_search_type)?;
    let started = Instant::now();
    let passages = match registry.store(&request.vector_search_type)? {
        Some(store) => {
            crate::metrics::label("", &store.name);
            let search = Search {
                top_k: request.top_k,
                mode: request.retrieval,
                filter: &filter,
            };
            registry.retrieve(store, &request.query, search).await?
        }
        None => Vec::new(),
    };
    Ok(Json(json!({
        "vector_search_type": request.vector_search_type,
        "passages": passages,
        "timings_ms": { "retrieval": millis(started) },
    })))
}
