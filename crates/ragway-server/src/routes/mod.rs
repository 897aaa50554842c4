//! The HTTP routes and the router that serves them.

// Visible to the crate so that `crate::openapi` can list the handlers' `#[utoipa::path]`s.
pub(crate) mod docs;
pub(crate) mod generate;
pub(crate) mod meta;
pub(crate) mod search;
pub(crate) mod stores;
pub(crate) mod ui;
pub(crate) mod v1;

use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, post};

use crate::registry::Registry;
use crate::shutdown::Readiness;

/// The whole API over a built registry; `/readyz` reports `readiness`.
pub fn app(registry: Arc<Registry>, readiness: Readiness) -> Router {
    let ready = Router::new()
        .route("/readyz", get(meta::readyz))
        .with_state(meta::ReadyState {
            registry: registry.clone(),
            readiness,
        });
    let router = Router::new()
        .route("/", get(meta::root))
        .route("/healthz", get(meta::healthz))
        .route("/ui", get(ui::playground))
        .route("/openapi.json", get(docs::openapi_json))
        .route("/docs", get(docs::swagger_ui))
        .route("/docs/{asset}", get(docs::asset))
        .route("/models", get(meta::models))
        .route("/generate", post(generate::generate))
        .route("/search", post(search::search))
        .route("/stores", get(stores::list))
        .route("/stores/{name}/documents", post(stores::add))
        .route("/stores/{name}/documents/{*id}", delete(stores::delete))
        .nest("/v1", v1::router())
        .with_state(registry)
        .merge(ready)
        // Timed per route: `route_layer` runs after routing, so the route pattern is known.
        .route_layer(axum::middleware::from_fn(crate::metrics::track))
        .route("/metrics", get(crate::metrics::render));
    crate::metrics::install();
    crate::request_id::layer(router)
}
