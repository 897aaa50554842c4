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
use std::time::Instant;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, Uri};
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use axum::routing::{delete, get, post};
use ragway_engine::stream::Clock;
use ragway_engine::{Accounted, Answer, Answered, EngineError, Prepared};
use tower::ServiceBuilder;

use crate::Gateway;
use crate::HttpService;
use crate::auth::Caller;
use crate::cache::{self, AnswerCache, Key, Outcome, Pieces};
use crate::error::ApiError;
use crate::rate_limit::reservation;
use crate::shutdown::Readiness;
use crate::{auth, limits, metrics};

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

/// Answers `prepared` with `choices` choices for `caller`: from the cache when the model's
/// answers are kept and `cache` lets it read, at no cost; else from the model, with the most
/// it may cost reserved against the key's tokens-per-minute first and settled to what it
/// spent, also when the answer is refused for not following the request's `response_format`
/// (the tokens were spent all the same). Other failures give the reservation back.
pub(crate) async fn answer(
    gateway: &Arc<Gateway>,
    caller: &Caller,
    prepared: Prepared,
    choices: u32,
    cache: cache::Use,
) -> Result<(Answer, Option<Outcome>), ApiError> {
    let lookup = look_up(gateway, &prepared, choices, cache, false).await?;
    if let Some(entry) = lookup.hit {
        return Ok((entry.answer(prepared), Some(Outcome::Hit)));
    }
    let reservation = caller
        .reserve(tokens_needed(gateway, &prepared, choices))
        .await?;
    match gateway.answer(prepared, choices).await {
        Ok(answer) => {
            reservation.settle(answer.tokens_spent()).await;
            if let Some((key, ttl_secs)) = lookup.keep {
                let entry = cache::Entry::of_answer(&answer, ttl_secs);
                AnswerCache::keep(gateway, key, entry);
            }
            Ok((answer, lookup.outcome))
        }
        Err(error) => {
            if let EngineError::InvalidAnswer { tokens_spent, .. } = &error {
                reservation.settle(*tokens_spent).await;
            }
            Err(error.into())
        }
    }
}

/// What the cache has for one request.
struct Lookup {
    /// The kept answer.
    hit: Option<Arc<cache::Entry>>,
    /// Where and how long to keep the model's answer, when it is to be kept.
    keep: Option<(Key, u64)>,
    /// `x-ragway-cache`'s value: `None` for a model whose answers are not kept.
    outcome: Option<Outcome>,
}

/// Looks `prepared` up in the cache, when the model's answers are kept (a stream's only if
/// its `cache.streams` says so) and `cache` lets it. A request that skips the cache is a miss.
async fn look_up(
    gateway: &Gateway,
    prepared: &Prepared,
    choices: u32,
    cache: cache::Use,
    streamed: bool,
) -> Result<Lookup, EngineError> {
    let config = gateway
        .caching(&prepared.llm_name)
        .filter(|config| !streamed || config.streams);
    let Some(config) = config else {
        return Ok(Lookup {
            hit: None,
            keep: None,
            outcome: None,
        });
    };
    let llm = gateway.llm(&prepared.llm_name)?;
    let key = Key::of(&llm.name, &llm.model_id, &prepared.request, choices);
    let hit = if cache.read {
        let found = gateway.cache.get(&key).await;
        metrics::cache_lookup(&llm.name, found.is_some());
        found
    } else {
        None
    };
    Ok(Lookup {
        outcome: Some(if hit.is_some() {
            Outcome::Hit
        } else {
            Outcome::Miss
        }),
        keep: (hit.is_none() && cache.write).then_some((key, config.ttl_secs)),
        hit,
    })
}

/// Streams `prepared`'s answer for `caller` within the server's limits (an idle timeout and
/// the request's deadline), its tokens reserved first, metered as they come and settled when
/// it ends or the client leaves; or replays it from the cache, at no cost, when the model's
/// streamed answers are kept (`cache.streams`) and `cache` lets it read.
pub(crate) async fn stream(
    gateway: &Arc<Gateway>,
    caller: &Caller,
    prepared: &Prepared,
    cache: cache::Use,
) -> Result<(Pieces, Answered, Option<Outcome>), ApiError> {
    let lookup = look_up(gateway, prepared, 1, cache, true).await?;
    if let Some(entry) = lookup.hit {
        let clock = Clock {
            started: prepared.started,
            retrieval_ms: prepared.retrieval_ms,
            generation_started: Instant::now(),
        };
        let pieces: Pieces = Box::pin(Accounted::new(entry.deltas(), clock, None));
        return Ok((pieces, entry.answered(), Some(Outcome::Hit)));
    }
    let reservation = caller.reserve(tokens_needed(gateway, prepared, 1)).await?;
    let limits = &gateway.server.limits;
    let prompt_tokens = reservation::prompt_tokens(&prepared.request);
    let (pieces, answered) = gateway
        .stream(prepared, |deltas| {
            let bounded = limits::bound_stream(deltas, limits, prepared.started);
            reservation.meter(bounded, prompt_tokens)
        })
        .await?;
    let pieces: Pieces = Box::pin(pieces);
    let pieces = match lookup.keep {
        Some((key, ttl_secs)) => {
            cache::record(pieces, gateway.clone(), key, ttl_secs, answered.clone())
        }
        None => pieces,
    };
    Ok((pieces, answered, lookup.outcome))
}

/// `x-ragway-cache: hit|miss` on answers of models whose answers are kept.
pub(crate) fn name_cache(outcome: Option<Outcome>, mut response: Response) -> Response {
    if let Some(outcome) = outcome {
        response
            .headers_mut()
            .insert("x-ragway-cache", HeaderValue::from_static(outcome.as_str()));
    }
    response
}
