//! ragway's HTTP server: the registry built from config, the pipeline that answers (with
//! retries, fallbacks and cooldowns), the routes behind API keys and limits, the single mapping
//! from errors to HTTP, their OpenAPI document, trace spans, and graceful shutdown.

pub mod auth;
pub mod error;
mod held_body;
pub mod json;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod pipeline;
pub mod rate_limit;
pub mod registry;
pub mod request_id;
pub mod resilience;
mod routes;
pub mod shutdown;
mod sse;
pub mod telemetry;
pub mod web;

use std::future::{Future, IntoFuture as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::ServiceExt as _;
use axum::serve::ListenerExt as _;
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
pub use registry::{Registry, StartupError};
pub use routes::app;
pub use shutdown::{InFlight, Readiness, Shutdown};

/// Serves only `GET /metrics` on `listener` (`[server] metrics_bind`), until the process ends.
pub async fn serve_metrics(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    metrics::install();
    axum::serve(listener, metrics::router()).await
}

/// Serves the API on `listener` until `signal` completes; then stops accepting connections,
/// makes `/readyz` answer 503, and lets the requests in flight (streams included) finish for
/// up to `grace`. Returns whether they all finished; those still running when the grace
/// period ends are cut when the caller's runtime shuts down.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    signal: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<Shutdown> {
    // Streamed answers are many small writes; without TCP_NODELAY each one after the first
    // waits for the client's delayed ACK (up to 40 ms), which bunches tokens together.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {error}");
        }
    });
    let readiness = Readiness::new();
    let in_flight = InFlight::new();
    let service = axum::middleware::from_fn_with_state(in_flight.clone(), shutdown::track)
        .layer(app(registry, readiness.clone()));
    let (signalled, on_signal) = tokio::sync::oneshot::channel();
    let draining = readiness.clone();
    let server = axum::serve(
        listener,
        service.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        signal.await;
        draining.start_draining();
        // The receiver lives as long as `serve` polls the server.
        let _ = signalled.send(());
    })
    .into_future();
    tokio::pin!(server);

    // axum waits for every connection without limit once signalled; the grace period is
    // applied here, starting when the signal arrives.
    tokio::select! {
        result = &mut server => return result.map(|()| Shutdown::Drained),
        _ = on_signal => {}
    }
    tracing::info!(
        in_flight = in_flight.count(),
        grace_secs = grace.as_secs_f64(),
        "shutting down: no longer accepting connections; /readyz now answers 503; \
         waiting for the requests in flight"
    );
    match tokio::time::timeout(grace, &mut server).await {
        Ok(result) => result.map(|()| Shutdown::Drained),
        Err(_) => Ok(Shutdown::GraceExpired {
            cut: in_flight.count(),
        }),
    }
}
