//! The server's side of [`ragway_core::web`]: a request whose `Host` the server does not
//! answer to is a 421 before anything else runs, and CORS headers go only to the origins
//! `[server.cors]` lists.
//!
//! Unless `[server] allowed_hosts` says otherwise, a server with API keys answers to any name
//! (the keys decide who may call), and one without keys, the offline default on loopback, only
//! to `localhost` and to addresses: a page the user visits cannot then reach it under a name of
//! its own through DNS rebinding. `ragway serve --insecure-no-auth` on another address sets
//! `allowed_hosts = ["*"]` unless it is configured, since something in front decides there.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use ragway_core::config::ServerConfig;
use ragway_core::web::{CorsConfig, HostPattern, LOOPBACK_HOSTS};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::{ApiError, in_route_shape};

/// The `Host` names the server answers to.
#[derive(Clone, Debug)]
pub struct AllowedHosts {
    /// `None`: any.
    patterns: Option<Vec<HostPattern>>,
    /// Whether any IP address is accepted too (the loopback default).
    addresses: bool,
}

impl AllowedHosts {
    /// From `[server] allowed_hosts`, or the default for a server with or without keys.
    pub fn new(server: &ServerConfig) -> Self {
        match &server.allowed_hosts {
            Some(entries) => Self {
                patterns: Some(
                    entries
                        .iter()
                        .filter_map(|e| HostPattern::parse(e))
                        .collect(),
                ),
                addresses: false,
            },
            None if server.auth.is_enabled() => Self {
                patterns: None,
                addresses: false,
            },
            None => Self {
                patterns: Some(
                    LOOPBACK_HOSTS
                        .iter()
                        .filter_map(|e| HostPattern::parse(e))
                        .collect(),
                ),
                addresses: true,
            },
        }
    }

    /// Whether a request with this `Host` value (`name[:port]`) is answered.
    pub fn allows(&self, host: &str) -> bool {
        let Some(patterns) = &self.patterns else {
            return true;
        };
        let Some(name) = host_name(host) else {
            return false;
        };
        if patterns.iter().any(|pattern| pattern.matches(&name)) {
            return true;
        }
        self.addresses && name.parse::<std::net::IpAddr>().is_ok()
    }
}

/// The name in a `Host` value, lower-cased, without port, IPv6 brackets or a final dot.
fn host_name(host: &str) -> Option<String> {
    let authority: axum::http::uri::Authority = host.parse().ok()?;
    // A Host header carries no user information; one that does is not a name we serve.
    if authority.as_str().contains('@') {
        return None;
    }
    let name = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

/// Middleware: a request whose `Host` (or HTTP/2 `:authority`) is not allowed gets a 421 in its
/// route's shape. A request without either (HTTP/1.0) is let through: browsers always send one.
/// So are the probes, `/healthz` and `/readyz`: load balancers and orchestrators ask them under
/// the task's address, which a configured list rarely names, and they do no work.
pub async fn check_host(
    State(allowed): State<Arc<AllowedHosts>>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(request.uri().path(), "/healthz" | "/readyz") {
        return next.run(request).await;
    }
    let host = match request.headers().get(header::HOST) {
        Some(value) => Some(value.to_str().unwrap_or("").to_owned()),
        None => request.uri().authority().map(|a| a.as_str().to_owned()),
    };
    match host {
        Some(host) if !allowed.allows(&host) => {
            tracing::warn!(host = %host.escape_debug(), "refused a request for a host this server does not answer to");
            in_route_shape(request.uri().path(), ApiError::HostNotAllowed { host })
        }
        _ => next.run(request).await,
    }
}

/// The CORS layer for `[server.cors]`, or `None` when no origin is listed (then no CORS header
/// is ever sent, and browsers let no other origin's page read an answer).
pub fn cors(config: &CorsConfig) -> Option<CorsLayer> {
    if !config.is_enabled() {
        return None;
    }
    let origins = if config.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            config
                .allowed_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-api-key"),
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER])
            .max_age(Duration::from_secs(config.max_age_secs)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `[server]` section of a config holding `server` (and a model, which every config
    /// needs).
    fn server(server: &str) -> ServerConfig {
        let text = format!(
            "[server]\n{server}\n[[llm]]\nname = \"m\"\ntype = \"openai\"\nmodel = \"m\"\n"
        );
        ragway_core::config::Config::parse(&text, "test")
            .unwrap_or_else(|e| panic!("{e}"))
            .server
    }

    #[test]
    fn without_keys_only_loopback_names_and_addresses_are_answered() {
        let allowed = AllowedHosts::new(&server(""));
        for host in [
            "localhost",
            "localhost:8000",
            "LOCALHOST.:8000",
            "app.localhost:3000",
            "127.0.0.1:8000",
            "[::1]:8000",
            "10.0.0.7",
        ] {
            assert!(allowed.allows(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8000",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "user@localhost",
            "",
            "local host",
        ] {
            assert!(!allowed.allows(host), "{host}");
        }
    }

    #[test]
    fn keys_allow_any_host_unless_a_list_is_configured() {
        let keyed = "[[server.auth.keys]]\nname = \"a\"\nsha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n";
        assert!(AllowedHosts::new(&server(keyed)).allows("api.example.com"));
        let listed = format!("allowed_hosts = [\"api.example.com\", \"*.internal\"]\n{keyed}");
        let allowed = AllowedHosts::new(&server(&listed));
        assert!(allowed.allows("api.example.com:443"));
        assert!(allowed.allows("ragway.svc.internal"));
        assert!(!allowed.allows("localhost"));
        assert!(!allowed.allows("127.0.0.1"), "addresses only by default");
        let any = AllowedHosts::new(&server("allowed_hosts = [\"*\"]"));
        assert!(any.allows("whatever.example"));
    }
}
