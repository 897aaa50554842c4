//! Accepting and keeping connections, with limits a slow or idle client cannot outlast.
//!
//! `axum::serve` gives hyper no timer, so a client that sends half a request header, or keeps
//! a connection open doing nothing, holds its socket forever; a few thousand of them exhaust
//! the process's file descriptors and even `/healthz` goes unanswered. Here every connection
//! is served by hyper with a timer:
//!
//! - a request's headers must arrive within `[server.limits] header_read_timeout_secs`,
//!   counted from when the server starts waiting for them: on a new connection and, between
//!   requests, on a kept-alive one, so the same limit closes idle keep-alive connections;
//! - HTTP/2 has no such timer in hyper (its keep-alive pings find dead peers, not idle ones),
//!   so every connection counts its running requests (a stream until its last byte) and one
//!   with none for `header_read_timeout_secs` is asked to close (HTTP/2 `GOAWAY`), and cut
//!   after as long again if it has not closed by then;
//! - at most `max_connections` are open at once; past it, a new connection is answered `503`
//!   with `Retry-After: 1` and closed at once, so it costs a descriptor for a moment only and
//!   the kernel's backlog never fills with connections nobody will serve.
//!
//! On shutdown the listener closes, each connection finishes the request it is serving
//! (keep-alive is switched off), and [`serve`](crate::serve) waits for them within its grace.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

use crate::HttpService;

/// What a connection past `max_connections` is told before it is closed.
const FULL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\nconnection: close\r\n\
content-type: application/json\r\ncontent-length: 73\r\n\r\n\
{\"detail\":\"ragway has its limit of open connections; retry in a second\"}\n";

/// How long writing that answer may take.
const FULL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Limits on connections, from `[server.limits]`.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

/// Accepts connections on `listener` and serves each with `service` until `stop` turns true;
/// then stops accepting and asks every open connection to close after its current request.
/// Returns a receiver whose [`watch::Sender::closed`] side completes when the last one has.
pub async fn accept(
    listener: TcpListener,
    service: impl HttpService,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) -> watch::Sender<()> {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    // Every connection holds a receiver; the sender's `closed()` completes when all are gone.
    let (all_closed, connection_alive) = watch::channel(());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let (tcp, _) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors (EMFILE) or a connection reset before it was taken:
                // wait a moment rather than spin, and go on.
                tracing::warn!("cannot accept a connection: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Streamed answers are many small writes; without TCP_NODELAY each one after the
        // first waits for the client's delayed ACK (up to 40 ms), which bunches tokens.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {error}");
        }
        let Ok(permit) = open.clone().try_acquire_owned() else {
            crate::metrics::connection_refused();
            tokio::spawn(refuse(tcp));
            continue;
        };
        let service = service.clone();
        let (stop, alive) = (stop.clone(), connection_alive.clone());
        tokio::spawn(async move {
            serve_connection(tcp, service, limits, stop).await;
            drop((permit, alive));
        });
    }
    drop(listener);
    all_closed
}

/// Serves one connection to its end, or to the end of its current request after `stop`.
async fn serve_connection(
    tcp: TcpStream,
    service: impl HttpService,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) {
    let (activity, mut running) = watch::channel(0usize);
    let activity = Arc::new(activity);
    let service = service
        .map_request(|request: hyper::Request<Incoming>| request.map(Body::new))
        .map_future(move |answer| {
            let request = Running::start(&activity);
            async move {
                let response: axum::response::Response = answer.await?;
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| crate::held_body::hold(body, request)),
                )
            }
        });
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let connection = builder
        .serve_connection_with_upgrades(TokioIo::new(tcp), TowerToHyperService::new(service));
    let mut connection = std::pin::pin!(connection);
    let mut stopping = false;
    // Set when an idle connection was asked to close: HTTP/2's orderly close waits for the
    // client to answer a ping, and a client that never does is cut at this time.
    let mut cut_at = None;
    loop {
        let idle = *running.borrow_and_update() == 0;
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::trace!("connection ended: {error:#}");
                }
                return;
            }
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
            // A request started or ended: the idle time counts from now.
            Ok(()) = running.changed() => {}
            () = tokio::time::sleep(limits.header_read_timeout), if idle && !stopping => {
                tracing::trace!("closing a connection idle for its header-read timeout");
                stopping = true;
                cut_at = Some(tokio::time::Instant::now() + limits.header_read_timeout);
                connection.as_mut().graceful_shutdown();
            }
            () = sleep_until(cut_at), if cut_at.is_some() && idle => {
                tracing::trace!("cutting an idle connection that did not close when asked");
                return;
            }
        }
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One request running on a connection, from its headers to its answer's last byte (or its
/// drop): counted in the connection's `running` while it lives.
struct Running(Arc<watch::Sender<usize>>);

impl Running {
    fn start(activity: &Arc<watch::Sender<usize>>) -> Self {
        activity.send_modify(|running| *running += 1);
        Self(Arc::clone(activity))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0
            .send_modify(|running| *running = running.saturating_sub(1));
    }
}

/// Tells a connection past the limit to come back, and closes it.
async fn refuse(mut tcp: TcpStream) {
    let _ = tokio::time::timeout(FULL_WRITE_TIMEOUT, async {
        tcp.write_all(FULL).await?;
        tcp.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::FULL;

    #[test]
    fn the_full_answer_declares_its_length() {
        let text = std::str::from_utf8(FULL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{text}"
        );
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
