//! What ragway's AWS clients share: the SDK configuration loaded once through the standard
//! credential chain, per-component overrides (region, endpoint, retries, timeouts), one
//! mapping from SDK errors to `ProviderError`, and JSON <-> smithy `Document` conversion.

mod credentials;

pub use credentials::CredentialsCheck;

use std::error::Error as StdError;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::event_stream::RawMessage;
use aws_smithy_types::{Document, Number};
use aws_types::SdkConfig;
use aws_types::region::Region;
use ragway_core::ProviderError;

/// Loads the shared SDK configuration (credentials, region, profile) once at start-up.
///
/// `region`, when some component names one, saves the region lookup (which may probe the
/// instance metadata service); components still override it with their own.
pub async fn load_sdk_config(region: Option<String>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    loader.load().await
}

/// One component's view of AWS: where it is and how patient it is.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub max_attempts: u32,
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

/// The shared configuration with one component's overrides applied. Fails when no region is
/// known, naming how to give one.
pub fn client_config(shared: &SdkConfig, settings: &ClientSettings) -> Result<SdkConfig, String> {
    let region = settings
        .region
        .clone()
        .map(Region::new)
        .or_else(|| shared.region().cloned());
    let Some(region) = region else {
        return Err(
            "no AWS region: set region = \"us-east-1\" (or another) here, or AWS_REGION".to_owned(),
        );
    };
    let mut builder = shared.to_builder();
    builder.set_region(Some(region));
    // Building a client without a behavior version panics inside the SDK; never allow that.
    if shared.behavior_version().is_none() {
        builder.set_behavior_version(Some(BehaviorVersion::latest()));
    }
    if let Some(url) = &settings.endpoint_url {
        builder.set_endpoint_url(Some(url.clone()));
    }
    builder.set_retry_config(Some(
        RetryConfig::standard().with_max_attempts(settings.max_attempts),
    ));
    builder.set_timeout_config(Some(
        TimeoutConfig::builder()
            .connect_timeout(settings.connect_timeout)
            .operation_timeout(settings.timeout)
            .build(),
    ));
    Ok(builder.build())
}

/// Error codes AWS uses when the caller should slow down and try again later.
const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "TooManyRequestsException",
    "ModelNotReadyException",
    "ServiceQuotaExceededException",
];

/// The HTTP status behind a raw SDK response, where there is one.
pub trait RawStatus {
    fn status(&self) -> Option<u16>;
}

impl RawStatus for HttpResponse {
    fn status(&self) -> Option<u16> {
        Some(self.status().as_u16())
    }
}

impl RawStatus for RawMessage {
    fn status(&self) -> Option<u16> {
        None
    }
}

/// Maps any SDK error to a `ProviderError`, keeping AWS's code and message (which never hold
/// credentials) and classifying throttling, timeouts and unreachable endpoints.
pub fn map_sdk_error<E, R>(
    provider: &str,
    error: SdkError<E, R>,
    timeout: Duration,
) -> ProviderError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: RawStatus + std::fmt::Debug,
{
    match &error {
        SdkError::TimeoutError(_) => ProviderError::Timeout {
            provider: provider.to_owned(),
            after: timeout,
        },
        SdkError::DispatchFailure(failure) if failure.is_timeout() => ProviderError::Timeout {
            provider: provider.to_owned(),
            after: timeout,
        },
        SdkError::DispatchFailure(_) => {
            ProviderError::unreachable(provider, DisplayErrorContext(&error).to_string())
        }
        SdkError::ResponseError(_) => {
            ProviderError::invalid_response(provider, DisplayErrorContext(&error).to_string())
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status();
            let code = error.code().unwrap_or("UnknownError").to_owned();
            let message = error.message().unwrap_or("no message").to_owned();
            let throttled = status == Some(429)
                || THROTTLING_CODES
                    .iter()
                    .any(|known| known.eq_ignore_ascii_case(&code));
            if throttled {
                ProviderError::Throttled {
                    provider: provider.to_owned(),
                    message: format!("{code}: {message}"),
                    retry_after: None,
                }
            } else {
                ProviderError::upstream(provider, status, format!("{code}: {message}"))
            }
        }
        _ => ProviderError::upstream(provider, None, DisplayErrorContext(&error).to_string()),
    }
}

/// A JSON value as the SDKs' `Document` (tool schemas, tool inputs).
pub fn document_from_json(value: serde_json::Value) -> Document {
    use serde_json::Value;
    match value {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(b),
        Value::Number(n) => Document::Number(if let Some(u) = n.as_u64() {
            Number::PosInt(u)
        } else if let Some(i) = n.as_i64() {
            Number::NegInt(i)
        } else {
            Number::Float(n.as_f64().unwrap_or(0.0))
        }),
        Value::String(s) => Document::String(s),
        Value::Array(items) => Document::Array(items.into_iter().map(document_from_json).collect()),
        Value::Object(fields) => Document::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, document_from_json(v)))
                .collect(),
        ),
    }
}

/// A `Document` as JSON; non-finite floats (which JSON cannot hold) become null.
pub fn json_from_document(document: &Document) -> serde_json::Value {
    use serde_json::Value;
    match document {
        Document::Null => Value::Null,
        Document::Bool(b) => Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => Value::from(*u),
        Document::Number(Number::NegInt(i)) => Value::from(*i),
        Document::Number(Number::Float(f)) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        Document::String(s) => Value::String(s.clone()),
        Document::Array(items) => Value::Array(items.iter().map(json_from_document).collect()),
        Document::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), json_from_document(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(region: Option<&str>) -> ClientSettings {
        ClientSettings {
            region: region.map(str::to_owned),
            endpoint_url: Some("http://127.0.0.1:9".into()),
            max_attempts: 2,
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn a_component_region_overrides_the_shared_one() {
        let shared = SdkConfig::builder()
            .region(Region::new("eu-west-1"))
            .build();
        let config = client_config(&shared, &settings(Some("us-west-2"))).unwrap();
        assert_eq!(config.region().map(|r| r.as_ref()), Some("us-west-2"));
        assert_eq!(config.endpoint_url(), Some("http://127.0.0.1:9"));
        assert_eq!(config.retry_config().map(|r| r.max_attempts()), Some(2));
    }

    #[test]
    fn no_region_anywhere_is_a_clear_error() {
        let shared = SdkConfig::builder().build();
        let err = client_config(&shared, &settings(None)).unwrap_err();
        assert!(err.contains("AWS_REGION"), "{err}");
    }

    #[test]
    fn json_survives_a_round_trip_through_document() {
        let value = serde_json::json!({
            "type": "object",
            "properties": { "city": { "type": "string" }, "days": { "type": "integer", "minimum": -3 } },
            "required": ["city"],
            "weight": 0.5,
            "nothing": null,
            "flag": true,
        });
        assert_eq!(
            json_from_document(&document_from_json(value.clone())),
            value
        );
    }
}
