//! Graceful shutdown: the readiness that `/readyz` reports, the count of requests in flight
//! (streams included, until their last byte), and the grace period after which what is still
//! in flight is cut.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// Whether the server takes new work. It starts ready (the registry is built before the
/// router exists) and turns to draining, for good, when the shutdown signal arrives.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    draining: Arc<AtomicBool>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// False once shutdown has begun.
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::SeqCst)
    }

    /// From now on `/readyz` answers 503.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }
}

/// Requests whose response has not been fully sent yet (a stream counts until it ends or its
/// client leaves).
#[derive(Clone, Debug, Default)]
pub struct InFlight {
    count: Arc<AtomicUsize>,
}

impl InFlight {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    fn enter(&self) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }
}

/// One request in flight; leaving is dropping it.
#[derive(Debug)]
struct InFlightGuard(InFlight);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Middleware: counts the request from its arrival until its response body is done or dropped.
pub(crate) async fn track(
    State(in_flight): State<InFlight>,
    request: Request,
    next: Next,
) -> Response {
    let guard = in_flight.enter();
    let response = next.run(request).await;
    response.map(|body| crate::held_body::hold(body, guard))
}

/// How serving ended after the shutdown signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// Every request in flight finished within the grace period.
    Drained,
    /// The grace period ran out with this many requests still in flight; they are cut when
    /// the process exits.
    GraceExpired { cut: usize },
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use ragway_core::config::ServerConfig;
    use tower::{Layer as _, ServiceExt as _};

    use super::*;
    use crate::{Gateway, app};

    fn registry() -> Arc<Gateway> {
        Arc::new(Gateway::from_parts(ServerConfig::default(), vec![], vec![]))
    }

    async fn readyz(readiness: &Readiness) -> (StatusCode, serde_json::Value) {
        let response = app(registry(), readiness.clone())
            .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn readyz_is_200_until_shutdown_begins_then_503() {
        let readiness = Readiness::new();
        let (status, body) = readyz(&readiness).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "ready");
        assert_eq!(body["vector_dbs"], serde_json::json!(["none"]));
        assert!(body["llm_models"].is_array(), "{body}");

        readiness.start_draining();
        let (status, body) = readyz(&readiness).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["status"], "shutting_down");
        assert!(
            body["detail"].as_str().unwrap().contains("shutting down"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn a_request_is_in_flight_until_its_body_is_done() {
        let in_flight = InFlight::new();
        let service = axum::middleware::from_fn_with_state(in_flight.clone(), track)
            .layer(app(registry(), Readiness::new()));
        let response = service
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(in_flight.count(), 1, "the body is not sent yet");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(!body.is_empty());
        assert_eq!(in_flight.count(), 0);
    }

    #[tokio::test]
    async fn serving_stops_accepting_on_the_signal_and_reports_a_drained_shutdown() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::serve(
            listener,
            registry(),
            async move {
                let _ = stopped.await;
            },
            Duration::from_secs(5),
        ));
        let ready = reqwest::get(format!("http://{address}/readyz"))
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
        stop.send(()).unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("serve did not return after the signal")
            .unwrap()
            .unwrap();
        assert_eq!(outcome, Shutdown::Drained);
        assert!(
            tokio::net::TcpStream::connect(address).await.is_err(),
            "the listener is closed after shutdown"
        );
    }
}
