//! ragway's HTTP server over the engine (`ragway_engine`): the routes behind API keys and
//! limits, rendering the engine's answers as `/generate` and OpenAI's `/v1`, the single mapping
//! from errors to HTTP, their OpenAPI document, metrics, trace spans, and graceful shutdown.

pub mod auth;
pub mod cache;
pub mod connections;
pub mod error;
pub mod gateway;
mod held_body;
pub mod json;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod rate_limit;
pub mod request_id;
mod routes;
pub mod shutdown;
mod sse;
pub mod telemetry;
pub mod web;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tower::Layer as _;

/// A service that answers every HTTP request (errors are responses), as `axum::serve` and the
/// layers around the router need it: what [`app`] returns and what [`request_id::layer`] wraps.
pub trait HttpService:
    tower::Service<
        axum::extract::Request,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> HttpService for S where
    S: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

pub use error::ApiError;
pub use gateway::Gateway;
pub use ragway_engine::{Registry, StartupError};
pub use routes::app;
pub use shutdown::{InFlight, Readiness, Shutdown};

/// Serves only `GET /metrics` on `listener` (`[server] metrics_bind`), until the process ends.
/// Its connections have the API's default limits: a port of its own is no reason to let a
/// client hold one forever.
pub async fn serve_metrics(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    metrics::install();
    let defaults = ragway_core::limits::LimitsConfig::default();
    let limits = connections::ConnectionLimits {
        header_read_timeout: defaults.header_read_timeout(),
        max_connections: defaults.max_connections,
    };
    // Never stopped: it serves until the process ends.
    let (_never, running) = tokio::sync::watch::channel(false);
    connections::accept(listener, metrics::router(), limits, running).await;
    Ok(())
}

/// Serves the API on `listener` until `signal` completes; then stops accepting connections,
/// makes `/readyz` answer 503, and lets the requests in flight (streams included) finish for
/// up to `grace`. Returns whether they all finished; those still running when the grace
/// period ends are cut when the caller's runtime shuts down. Connections are held to
/// `[server.limits]`'s header-read timeout and connection cap (see [`connections`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Gateway>,
    signal: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<Shutdown> {
    let limits = connections::ConnectionLimits {
        header_read_timeout: registry.server.limits.header_read_timeout(),
        max_connections: registry.server.limits.max_connections,
    };
    metrics::show_key_names(registry.server.metrics_bind.is_some());
    let readiness = Readiness::new();
    let in_flight = InFlight::new();
    let service = axum::middleware::from_fn_with_state(in_flight.clone(), shutdown::track)
        .layer(app(registry, readiness.clone()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let accepting = tokio::spawn(connections::accept(listener, service, limits, stopped));
    signal.await;
    readiness.start_draining();
    let _ = stop.send(true);
    tracing::info!(
        in_flight = in_flight.count(),
        grace_secs = grace.as_secs_f64(),
        "shutting down: no longer accepting connections; /readyz now answers 503; \
         waiting for the requests in flight"
    );
    let connections = accepting.await.map_err(std::io::Error::other)?;
    // Each connection ends after the request it is serving; the grace period bounds the wait.
    match tokio::time::timeout(grace, connections.closed()).await {
        Ok(()) => Ok(Shutdown::Drained),
        Err(_) => Ok(Shutdown::GraceExpired {
            cut: in_flight.count(),
        }),
    }
}
