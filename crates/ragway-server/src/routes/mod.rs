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
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, Uri};
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use axum::routing::{delete, get, post};
use ragway_engine::{Accounted, Answer, Answered, EngineError, Prepared};
use tower::ServiceBuilder;

use crate::Gateway;
use crate::HttpService;
use crate::error::ApiError;
use crate::rate_limit::reservation::{self, Reservation};
use crate::shutdown::Readiness;
use crate::{auth, limits};

/// The whole API over a built registry; `/readyz` reports `readiness`. `/metrics` is part of
/// it unless `[server] metrics_bind` puts it on its own address.
///
/// The layers every request passes through (its id and log span, CORS, the `Host` check, the
/// body limit) wrap the router as a whole; those that need the route (its metrics, and the API key and in-flight
/// slot of the routes that do work) are route layers inside it.
pub fn app(registry: Arc<Gateway>, readiness: Readiness) -> impl HttpService {
    let max_body_bytes = registry.server.limits.max_body_bytes;
    let hosts = Arc::new(crate::web::AllowedHosts::new(&registry.server));
    let cors = crate::web::cors(&registry.server.cors);
    let router = router(registry, readiness);
    // CORS first, so that a preflight from an allowed origin is answered as it is; then the
    // Host check, before anything else about the request is looked at.
    crate::request_id::layer(
        ServiceBuilder::new()
            .option_layer(cors)
            .layer(from_fn_with_state(hosts, crate::web::check_host))
            .layer(DefaultBodyLimit::max(max_body_bytes))
            .service(router),
    )
}

/// The routes, each with the route layers it needs.
fn router(registry: Arc<Gateway>, readiness: Readiness) -> Router {
    let server = &registry.server;
    // Everything that does work needs a key (when keys are configured), counts against the
    // key's limits, takes one of the in-flight slots and is bounded in time (and, like every
    // request, in size: see `app`). Layers added later run first: the key is checked before a
    // slot is taken.
    let api = Router::new()
        .route("/models", get(meta::models))
        .route("/generate", post(generate::generate))
        .route("/search", post(search::search))
        .route("/stores", get(stores::list))
        .route("/stores/{name}/documents", post(stores::add))
        .route("/stores/{name}/documents/{*id}", delete(stores::delete))
        .nest("/v1", v1::router())
        .with_state(registry.clone())
        .route_layer(from_fn_with_state(
            limits::Admission::new(&server.limits),
            limits::admit,
        ))
        .route_layer(from_fn_with_state(
            registry.auth.clone(),
            auth::authenticate,
        ));
    let ready = Router::new()
        .route("/readyz", get(meta::readyz))
        .with_state(meta::ReadyState {
            registry: registry.clone(),
            readiness,
        });
    let mut router = Router::new()
        .route("/", get(meta::root))
        .route("/healthz", get(meta::healthz))
        .route("/ui", get(ui::playground))
        .route("/openapi.json", get(docs::openapi_json))
        .route("/docs", get(docs::swagger_ui))
        .route("/docs/{asset}", get(docs::asset))
        .merge(ready)
        .merge(api)
        // Timed per route: `route_layer` runs after routing, so the route pattern is known.
        .route_layer(axum::middleware::from_fn(crate::metrics::track));
    if server.metrics_bind.is_none() {
        router = router.merge(crate::metrics::router());
    }
    // Any other URL: a 404 in the seed routes' `{"detail": ...}` shape naming what was asked
    // for (`/v1/...` has its own, in OpenAI's shape).
    crate::metrics::install();
    router.fallback(unknown_route)
}

async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::UnknownRoute {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

/// Names the model that answered in `response`: `x-ragway-model`, and after a fallback
/// `x-ragway-fallback-from` with the model asked for.
pub(crate) fn name_model(answered: &Answered, mut response: Response) -> Response {
    let names = [
        ("x-ragway-model", Some(&answered.model)),
        ("x-ragway-fallback-from", answered.fallback_from.as_ref()),
    ];
    for (header, name) in names {
        // Config names that are not valid header text are left out rather than failing.
        if let Some(value) = name.and_then(|n| HeaderValue::from_str(n).ok()) {
            response.headers_mut().insert(header, value);
        }
    }
    response
}

/// The most tokens answering `prepared` with `choices` choices may cost, to reserve against
/// the key's tokens-per-minute before the model is called: the prompt, and `max_tokens`, else
/// the model's default answer length, else `[server.prompt] answer_reserve`, for each choice.
pub(crate) fn tokens_needed(gateway: &Gateway, prepared: &Prepared, choices: u32) -> u64 {
    let default_answer = gateway
        .default_max_tokens(prepared)
        .unwrap_or(gateway.server.prompt.answer_reserve);
    reservation::estimate(&prepared.request, default_answer, choices)
}

/// Answers `prepared` with `choices` choices and settles `reservation` to what the model
/// spent, also when its answer is refused for not following the request's `response_format`
/// (the tokens were spent all the same). Other failures give the reservation back.
pub(crate) async fn answer(
    gateway: &Gateway,
    prepared: Prepared,
    choices: u32,
    reservation: Reservation,
) -> Result<Answer, EngineError> {
    match gateway.answer(prepared, choices).await {
        Ok(answer) => {
            reservation.settle(answer.tokens_spent()).await;
            Ok(answer)
        }
        Err(error) => {
            if let EngineError::InvalidAnswer { tokens_spent, .. } = &error {
                reservation.settle(*tokens_spent).await;
            }
            Err(error)
        }
    }
}

/// Streams `prepared`'s answer within the server's limits (an idle timeout and the request's
/// deadline), its tokens metered against `reservation` as they come and settled when it ends
/// or the client leaves.
pub(crate) async fn stream(
    gateway: &Gateway,
    prepared: &Prepared,
    reservation: Reservation,
) -> Result<(Accounted, Answered), EngineError> {
    let limits = &gateway.server.limits;
    let prompt_tokens = reservation::prompt_tokens(&prepared.request);
    gateway
        .stream(prepared, |deltas| {
            let bounded = limits::bound_stream(deltas, limits, prepared.started);
            reservation.meter(bounded, prompt_tokens)
        })
        .await
}
