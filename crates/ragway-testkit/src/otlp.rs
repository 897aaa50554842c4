//! A fake OpenTelemetry collector: `POST /v1/traces` with an OTLP/HTTP protobuf body (what
//! opentelemetry-otlp's `http-proto` exporter sends) is decoded with the OTLP protobuf types
//! and its spans kept for the test to read.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;
use tokio::sync::oneshot;

/// One attribute value as OTLP carries it.
#[derive(Clone, Debug, PartialEq)]
pub enum AttributeValue {
    String(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    /// Arrays, maps and bytes, in their debug form.
    Other(String),
}

impl AttributeValue {
    fn from_proto(value: Option<&AnyValue>) -> Self {
        match value.and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => Self::String(s.clone()),
            Some(any_value::Value::BoolValue(b)) => Self::Bool(*b),
            Some(any_value::Value::IntValue(i)) => Self::Int(*i),
            Some(any_value::Value::DoubleValue(d)) => Self::Double(*d),
            other => Self::Other(format!("{other:?}")),
        }
    }

    /// The value as text, whatever its type (for "does this text appear anywhere" checks).
    pub fn text(&self) -> String {
        match self {
            Self::String(s) | Self::Other(s) => s.clone(),
            Self::Bool(b) => b.to_string(),
            Self::Int(i) => i.to_string(),
            Self::Double(d) => d.to_string(),
        }
    }
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, AttributeValue> {
    list.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                AttributeValue::from_proto(kv.value.as_ref()),
            )
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One span as the collector received it.
#[derive(Clone, Debug)]
pub struct ExportedSpan {
    pub name: String,
    /// Lower-case hex.
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// `internal`, `server`, `client`, `producer`, `consumer` or `unspecified`.
    pub kind: &'static str,
    pub attributes: BTreeMap<String, AttributeValue>,
    /// The span's resource (`service.name`, ...).
    pub resource: BTreeMap<String, AttributeValue>,
    /// The instrumentation scope's name.
    pub scope: String,
    /// OTLP's status code: 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    /// Names of the span's events.
    pub events: Vec<String>,
}

impl ExportedSpan {
    /// A string attribute.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.attributes.get(key) {
            Some(AttributeValue::String(s)) => Some(s),
            _ => None,
        }
    }

    /// An integer attribute.
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.attributes.get(key) {
            Some(AttributeValue::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// A floating-point attribute.
    pub fn double(&self, key: &str) -> Option<f64> {
        match self.attributes.get(key) {
            Some(AttributeValue::Double(d)) => Some(*d),
            _ => None,
        }
    }
}

fn kind(value: i32) -> &'static str {
    match value {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
    /// Export requests, well formed or not.
    posts: Arc<Mutex<usize>>,
}

/// A fake collector listening on loopback; it stops when dropped.
pub struct Collector {
    addr: SocketAddr,
    received: Received,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Collector {
    /// Base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` takes it: `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ExportedSpan> {
        self.received
            .spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many export requests arrived.
    pub fn posts(&self) -> usize {
        *self
            .received
            .posts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `done` holds for the spans received, at most `within`; returns them either
    /// way.
    pub async fn wait_for(
        &self,
        within: Duration,
        done: impl Fn(&[ExportedSpan]) -> bool,
    ) -> Vec<ExportedSpan> {
        let started = Instant::now();
        loop {
            let spans = self.spans();
            if done(&spans) || started.elapsed() > within {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The server may already be gone; nothing is left to stop then.
            let _ = shutdown.send(());
        }
    }
}

/// Starts a collector on a free loopback port.
pub async fn start() -> anyhow::Result<Collector> {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .context("cannot bind the fake collector")?;
    let addr = listener.local_addr()?;
    let received = Received::default();
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .with_state(received.clone());
    let (shutdown, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(error) = server.await {
            tracing::warn!("the fake collector stopped: {error}");
        }
    });
    Ok(Collector {
        addr,
        received,
        shutdown: Some(shutdown),
    })
}

/// `POST /v1/traces`: an `ExportTraceServiceRequest` in protobuf.
async fn traces(State(received): State<Received>, headers: HeaderMap, body: Bytes) -> Response {
    *received
        .posts
        .lock()
        .unwrap_or_else(PoisonError::into_inner) += 1;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type != "application/x-protobuf" {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected application/x-protobuf, got {content_type:?}"),
        )
            .into_response();
    }
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(request) => request,
        Err(error) => {
            return (StatusCode::BAD_REQUEST, format!("not OTLP: {error}")).into_response();
        }
    };
    let mut spans = Vec::new();
    for resource_spans in &request.resource_spans {
        let resource = resource_spans
            .resource
            .as_ref()
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        for scope_spans in &resource_spans.scope_spans {
            let scope = scope_spans
                .scope
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default();
            for span in &scope_spans.spans {
                spans.push(ExportedSpan {
                    name: span.name.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    kind: kind(span.kind),
                    attributes: attributes(&span.attributes),
                    resource: resource.clone(),
                    scope: scope.clone(),
                    status_code: span.status.as_ref().map_or(0, |s| s.code),
                    events: span.events.iter().map(|e| e.name.clone()).collect(),
                });
            }
        }
    }
    received
        .spans
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .extend(spans);
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}
