//! `[server.tracing]`: OpenTelemetry traces exported over OTLP/HTTP. Off unless this section
//! names an endpoint or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` /
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` variables are set; `OTEL_SDK_DISABLED=true` and
//! `enabled = false` turn it off whatever else is set.

use serde::Deserialize;

use crate::ConfigIssue;

/// The `[server.tracing]` section.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// `false` turns tracing off even when the `OTEL_EXPORTER_OTLP_*ENDPOINT` variables are
    /// set; `true` turns it on with the OTLP default endpoint (`http://localhost:4318`) when
    /// nothing else names one.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// The collector's OTLP/HTTP base URL, as in `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// (`http://collector:4318`); spans go to its `/v1/traces`. Wins over the variables.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `service.name` of the spans; `OTEL_SERVICE_NAME`, else `ragway`, when absent.
    #[serde(default)]
    pub service_name: Option<String>,
}

/// Environment variables that switch tracing on by naming a collector.
pub const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

impl TracingConfig {
    /// Whether spans are exported, given a way to read the environment (`std::env::var`).
    pub fn is_enabled(&self, env: impl Fn(&str) -> Option<String>) -> bool {
        let set = |name: &str| env(name).is_some_and(|value| !value.trim().is_empty());
        let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim() == "true")
            || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim() == "none");
        if disabled {
            return false;
        }
        match self.enabled {
            Some(enabled) => enabled,
            None => self.endpoint.is_some() || ENDPOINT_VARS.iter().any(|name| set(name)),
        }
    }

    /// The URL spans are posted to when [`Self::endpoint`] is set: its `/v1/traces`.
    pub fn traces_url(&self) -> Option<String> {
        self.endpoint.as_ref().map(|base| {
            let base = base.trim_end_matches('/');
            if base.ends_with("/v1/traces") {
                base.to_owned()
            } else {
                format!("{base}/v1/traces")
            }
        })
    }

    pub(crate) fn validate(&self, issues: &mut Vec<ConfigIssue>) {
        let mut issue = |path: &str, message: String| {
            issues.push(ConfigIssue {
                path: format!("server.tracing.{path}"),
                message,
            });
        };
        if let Some(endpoint) = &self.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            issue(
                "endpoint",
                format!("{endpoint:?} is not an http:// or https:// URL (OTLP/HTTP)"),
            );
        }
        if let Some(name) = &self.service_name
            && name.trim().is_empty()
        {
            issue("service_name", "must not be empty".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn off_by_default_on_with_an_endpoint_from_the_file_or_the_environment() {
        let none = TracingConfig::default();
        assert!(!none.is_enabled(env(&[])));
        assert!(!none.is_enabled(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(none.is_enabled(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")])));
        assert!(none.is_enabled(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4318/v1/traces"
        )])));
        let file = TracingConfig {
            endpoint: Some("http://c:4318".into()),
            ..TracingConfig::default()
        };
        assert!(file.is_enabled(env(&[])));
        assert_eq!(
            file.traces_url().as_deref(),
            Some("http://c:4318/v1/traces")
        );
        let full = TracingConfig {
            endpoint: Some("http://c:4318/v1/traces/".into()),
            ..TracingConfig::default()
        };
        assert_eq!(
            full.traces_url().as_deref(),
            Some("http://c:4318/v1/traces")
        );
    }

    #[test]
    fn the_standard_switches_turn_it_off() {
        let file = TracingConfig {
            endpoint: Some("http://c:4318".into()),
            ..TracingConfig::default()
        };
        assert!(!file.is_enabled(env(&[("OTEL_SDK_DISABLED", "true")])));
        assert!(!file.is_enabled(env(&[("OTEL_TRACES_EXPORTER", "none")])));
        let off = TracingConfig {
            enabled: Some(false),
            ..file
        };
        assert!(!off.is_enabled(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")])));
        let on = TracingConfig {
            enabled: Some(true),
            ..TracingConfig::default()
        };
        assert!(on.is_enabled(env(&[])));
        assert_eq!(on.traces_url(), None, "the SDK's default then");
    }

    #[test]
    fn bad_values_are_reported_with_their_paths() {
        let mut issues = Vec::new();
        TracingConfig {
            enabled: None,
            endpoint: Some("collector:4317".into()),
            service_name: Some(" ".into()),
        }
        .validate(&mut issues);
        let found: Vec<String> = issues.iter().map(ToString::to_string).collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("server.tracing.endpoint: \"collector:4317\" is not"));
        assert!(found[1].starts_with("server.tracing.service_name: must not be empty"));
    }
}
