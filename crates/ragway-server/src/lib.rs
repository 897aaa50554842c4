//! ragway's HTTP server: the registry built from config, the pipeline that answers, the
//! routes, and the single mapping from errors to HTTP.

pub mod error;
pub mod json;
pub mod pipeline;
pub mod registry;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt as _;

pub use error::ApiError;
pub use registry::{Registry, StartupError};
pub use routes::app;

/// Serves the API on `listener` until `shutdown` completes, then lets in-flight requests end.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Streamed answers are many small writes; without TCP_NODELAY each one after the first
    // waits for the client's delayed ACK (up to 40 ms), which bunches tokens together.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {error}");
        }
    });
    axum::serve(
        listener,
        app(registry).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
