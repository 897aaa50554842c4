//! `ragway healthcheck`: one `GET /readyz` (or, with `--live`, `/healthz`) against a running
//! server, for a container's HEALTHCHECK (the image has no curl). Exit 0 when it answers 200, 1
//! with the reason on stderr.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};

#[derive(clap::Args)]
pub struct HealthcheckArgs {
    /// URL to probe. Default: `/readyz` (`/healthz` with --live) on the address `serve` listens
    /// on (`RAGWAY_BIND`, else `[server] bind` of the configuration), with an unspecified
    /// address (0.0.0.0 or ::) probed on loopback.
    #[arg(long)]
    url: Option<String>,

    /// Ask whether the process answers (`/healthz`), not whether its components are ready:
    /// what an orchestrator that restarts failing containers should ask, so that an outage of
    /// a database or a model does not make it restart every replica.
    #[arg(long, conflicts_with = "url")]
    live: bool,

    /// Address the server was told to listen on, as given to `serve --bind`.
    #[arg(long, env = "RAGWAY_BIND")]
    bind: Option<SocketAddr>,

    /// Give up after this many seconds (connecting and reading the answer).
    #[arg(long, default_value_t = 3.0)]
    timeout_secs: f64,
}

pub async fn run(args: HealthcheckArgs, config: Option<&Path>) -> Result<ExitCode> {
    let timeout = Duration::try_from_secs_f64(args.timeout_secs)
        .ok()
        .filter(|timeout| !timeout.is_zero())
        .with_context(|| {
            format!(
                "--timeout-secs must be a positive number of seconds, got {}",
                args.timeout_secs
            )
        })?;
    let url = match args.url {
        Some(url) => url,
        None => {
            let bind = match args.bind {
                Some(bind) => bind,
                None => crate::load(config)?.server.bind,
            };
            let path = if args.live { "/healthz" } else { "/readyz" };
            probe_url(bind, path)
        }
    };
    match probe(&url, timeout).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(why) => {
            let state = if args.live { "not live" } else { "not ready" };
            eprintln!("{state}: {why}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `http://ADDRESS/PATH`, with an unspecified listen address replaced by loopback.
fn probe_url(bind: SocketAddr, path: &str) -> String {
    let ip = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}{path}", SocketAddr::new(ip, bind.port()))
}

/// Ok when the URL answers 200; otherwise what went wrong, in words.
async fn probe(url: &str, timeout: Duration) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(|e| format!("cannot create an HTTP client: {e}"))?;
    let response = client.get(url).send().await.map_err(|e| {
        if e.is_timeout() {
            format!("{url} did not answer within {} s", timeout.as_secs_f64())
        } else if e.is_connect() {
            format!("cannot connect to {url}: {}", root_cause(&e))
        } else {
            format!("GET {url} failed: {}", root_cause(&e))
        }
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let body: String = body.trim().chars().take(300).collect();
    Err(format!("{url} answered {status}: {body}"))
}

/// The innermost error's message: reqwest's own top-level text is only "error sending request".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_bind_address_is_probed_on_loopback() {
        let url = |bind: &str| probe_url(bind.parse().unwrap(), "/readyz");
        assert_eq!(url("0.0.0.0:8000"), "http://127.0.0.1:8000/readyz");
        assert_eq!(url("[::]:9000"), "http://[::1]:9000/readyz");
        assert_eq!(url("10.1.2.3:8080"), "http://10.1.2.3:8080/readyz");
        assert_eq!(url("127.0.0.1:8000"), "http://127.0.0.1:8000/readyz");
        assert_eq!(
            probe_url("0.0.0.0:8000".parse().unwrap(), "/healthz"),
            "http://127.0.0.1:8000/healthz"
        );
    }
}
