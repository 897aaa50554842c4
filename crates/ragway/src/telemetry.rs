//! Logs and traces: logs on stderr (text or JSON, filtered by `RUST_LOG`), and, when
//! `[server.tracing]` or the standard `OTEL_EXPORTER_OTLP_*` variables ask for it, the server's
//! trace spans exported over OTLP/HTTP (protobuf) by a batch exporter on a thread of its own,
//! so that exporting never holds up a request and a collector that is down costs only a
//! warning.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData};
use ragway_core::telemetry::TracingConfig;
use ragway_server::telemetry::TARGET;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::LogFormat;

/// How long exporting the last spans may take when ragway stops.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// Keeps the trace exporter running; flushes and stops it when dropped.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown_with_timeout(FLUSH_TIMEOUT)
        {
            tracing::warn!("could not export the last trace spans: {error}");
        }
    }
}

/// Installs the log output and, if `tracing` is given and enabled, the trace exporter.
pub fn init(format: LogFormat, tracing: Option<&TracingConfig>) -> Telemetry {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,llama-cpp-2=warn"));
    // Trace spans are for the exporter only: they never decorate log lines.
    if let Ok(directive) = format!("{TARGET}=off").parse() {
        filter = filter.add_directive(directive);
    }
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    }
    .with_filter(filter);

    let enabled = tracing.filter(|config| config.is_enabled(|name| std::env::var(name).ok()));
    let (provider, failure) = match enabled.map(provider) {
        Some(Ok(provider)) => (Some(provider), None),
        Some(Err(error)) => (None, Some(error)),
        None => (None, None),
    };
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("ragway"))
            // The exporter sees ragway's trace spans and nothing else: no log events (which
            // could carry text), no spans of the libraries underneath.
            .with_filter(filter_fn(|metadata| {
                metadata.is_span() && metadata.target() == TARGET
            }))
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .init();
    if let Some(error) = failure {
        tracing::warn!("traces are off: cannot set up the OTLP exporter: {error}");
    }
    if let (Some(_), Some(config)) = (&provider, enabled) {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        ragway_server::telemetry::set_exporting(true);
        tracing::info!(
            endpoint = %endpoint(config, |name| std::env::var(name).ok()),
            "exporting traces over OTLP/HTTP"
        );
    }
    Telemetry { provider }
}

/// Where spans go, resolved as the exporter resolves it, for the log (without any
/// `user:password@` the URL may hold).
fn endpoint(config: &TracingConfig, env: impl Fn(&str) -> Option<String>) -> String {
    let set = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    let url = config
        .traces_url()
        .or_else(|| set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        .or_else(|| {
            set("OTEL_EXPORTER_OTLP_ENDPOINT")
                .map(|base| format!("{}/v1/traces", base.trim_end_matches('/')))
        })
        .unwrap_or_else(|| "http://localhost:4318/v1/traces".to_owned());
    // Drop a `user:password@` from the authority.
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
        if let Some(at) = authority.rfind('@') {
            return format!("{scheme}://{}", &rest[at + 1..]);
        }
    }
    url
}

/// The tracer provider: OTLP/HTTP protobuf, batched on its own thread; the `OTEL_*`
/// variables the SDK knows (headers, timeout, batch sizes, sampler, resource) apply.
fn provider(config: &TracingConfig) -> Result<SdkTracerProvider, String> {
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary);
    if let Some(url) = config.traces_url() {
        builder = builder.with_endpoint(url);
    }
    let exporter = builder.build().map_err(|error| error.to_string())?;
    let mut resource = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    if let Some(name) = &config.service_name {
        resource = resource.with_service_name(name.clone());
    } else if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("ragway");
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(Reporting {
            inner: exporter,
            failing: AtomicBool::new(false),
        })
        .with_resource(resource.build())
        .build())
}

/// The exporter, saying once when the collector stops taking spans and once when it takes
/// them again, rather than once per batch.
#[derive(Debug)]
struct Reporting<E> {
    inner: E,
    failing: AtomicBool,
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Reporting<E>
{
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        match &result {
            Err(error) if !self.failing.swap(true, Ordering::Relaxed) => tracing::warn!(
                spans,
                "cannot export traces: {error}; requests are served all the same, and spans \
                 are dropped until the collector answers"
            ),
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!("exporting traces again");
            }
            _ => {}
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn shutdown(&self) -> OTelSdkResult {
        self.inner.shutdown()
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_logged_endpoint_is_the_exporters_without_credentials() {
        let none = |_: &str| None;
        let file = TracingConfig {
            endpoint: Some("http://collector:4318".into()),
            ..TracingConfig::default()
        };
        assert_eq!(endpoint(&file, none), "http://collector:4318/v1/traces");
        let base = |name: &str| {
            (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "https://u:p@c:4318/".to_owned())
        };
        let from_env = TracingConfig::default();
        assert_eq!(endpoint(&from_env, base), "https://c:4318/v1/traces");
        assert_eq!(endpoint(&file, base), "http://collector:4318/v1/traces");
        assert_eq!(endpoint(&from_env, none), "http://localhost:4318/v1/traces");
    }
}
