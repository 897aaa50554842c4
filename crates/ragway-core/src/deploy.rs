//! `[deploy]`: how `ragway deploy` runs this configuration on AWS ECS Fargate (size, count and
//! autoscaling, network, HTTPS, log retention, and the secrets the task reads). Only the deploy
//! command reads it; `serve` ignores it.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::ConfigIssue;

/// The `[deploy]` section. Every field has a default, so a config without it deploys too.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    /// AWS region; `--region`, then the standard chain (AWS_REGION, profile) when absent.
    #[serde(default)]
    pub region: Option<String>,
    /// Fargate CPU units (256, 512, 1024, 2048, 4096, 8192, 16384).
    #[serde(default = "default_cpu")]
    pub cpu: u32,
    /// Task memory in MiB; must suit `cpu` (Fargate's table).
    #[serde(default = "default_memory")]
    pub memory: u32,
    /// Tasks the service keeps running.
    #[serde(default = "default_desired_count")]
    pub desired_count: u32,
    /// The port the container serves on (and the target group forwards to).
    #[serde(default = "default_port")]
    pub port: u16,
    /// ECR tags cannot be overwritten once pushed.
    #[serde(default)]
    pub tag_immutability: bool,
    /// Days CloudWatch keeps the task logs.
    #[serde(default = "default_log_retention")]
    pub log_retention_days: i32,
    /// The VPC to run in; the account's default VPC when absent.
    #[serde(default)]
    pub vpc_id: Option<String>,
    /// Subnets for the tasks and the load balancer (at least two zones); every subnet of the
    /// VPC when absent.
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Seconds ECS waits after SIGTERM before killing the container (ragway's own grace period
    /// must be shorter).
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout_secs: u32,
    /// Environment variables the task reads from SSM Parameter Store or Secrets Manager: name
    /// to the parameter's or secret's ARN (ECS `secrets[].valueFrom`).
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Plain environment variables for the task (not secret).
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// The ACM certificate (in the deploy's region) of the HTTPS listener on port 443; port 80
    /// then redirects to it. An IAM server certificate's ARN works too.
    #[serde(default)]
    pub certificate_arn: Option<String>,
    /// Listen on plain HTTP (port 80) only, with no certificate: for a load balancer that
    /// something else in front of it terminates TLS for, or a test. Deploy refuses to run
    /// without either this or `certificate_arn`.
    #[serde(default)]
    pub plain_http: bool,
    /// Application Auto Scaling of the service's task count; a fixed `desired_count` without it.
    #[serde(default)]
    pub autoscaling: Option<AutoscalingConfig>,
}

/// `[deploy.autoscaling]`: target tracking of the service's task count between `min` and
/// `max`, on the tasks' average CPU or on the requests each task gets from the load balancer.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AutoscalingConfig {
    /// Fewest tasks: at least 1 (with none, nothing would report the load that scales it out).
    pub min: u32,
    /// Most tasks.
    pub max: u32,
    #[serde(default)]
    pub metric: ScalingMetric,
    /// The value the metric is held at; [`ScalingMetric::default_target`] when absent.
    #[serde(default)]
    pub target: Option<f64>,
    /// Seconds after a scale-in before another may start.
    #[serde(default = "default_scale_in_cooldown")]
    pub scale_in_cooldown_secs: u32,
    /// Seconds after a scale-out before another may start.
    #[serde(default = "default_scale_out_cooldown")]
    pub scale_out_cooldown_secs: u32,
}

/// What target tracking follows.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ScalingMetric {
    /// The tasks' average CPU utilisation, in percent (`ECSServiceAverageCPUUtilization`).
    #[default]
    Cpu,
    /// Requests per task per minute counted by the load balancer (`ALBRequestCountPerTarget`):
    /// a gateway mostly waits on its models, so its CPU may say little about its load.
    Requests,
}

impl ScalingMetric {
    /// 60 % CPU leaves a task room for a burst while a new one starts (about a minute on
    /// Fargate); 1,000 requests a minute is a starting point to measure and adjust — what one
    /// task serves depends on the models and streams far more than on ragway.
    pub fn default_target(self) -> f64 {
        match self {
            Self::Cpu => 60.0,
            Self::Requests => 1000.0,
        }
    }
}

impl AutoscalingConfig {
    /// The configured target, or the metric's default.
    pub fn target_value(&self) -> f64 {
        self.target.unwrap_or(self.metric.default_target())
    }
}

fn default_scale_in_cooldown() -> u32 {
    300
}
fn default_scale_out_cooldown() -> u32 {
    60
}

impl Default for DeployConfig {
    fn default() -> Self {
        Self {
            region: None,
            cpu: default_cpu(),
            memory: default_memory(),
            desired_count: default_desired_count(),
            port: default_port(),
            tag_immutability: false,
            log_retention_days: default_log_retention(),
            vpc_id: None,
            subnets: Vec::new(),
            stop_timeout_secs: default_stop_timeout(),
            secrets: BTreeMap::new(),
            environment: BTreeMap::new(),
            certificate_arn: None,
            plain_http: false,
            autoscaling: None,
        }
    }
}

fn default_cpu() -> u32 {
    1024
}
fn default_memory() -> u32 {
    2048
}
fn default_desired_count() -> u32 {
    1
}
fn default_port() -> u16 {
    8000
}
fn default_log_retention() -> i32 {
    14
}
fn default_stop_timeout() -> u32 {
    30
}

/// Retention periods CloudWatch Logs accepts.
const LOG_RETENTION_DAYS: [i32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// Whether Fargate runs a task of `cpu` units with `memory` MiB; when not, what it accepts.
pub fn fargate_size(cpu: u32, memory: u32) -> Result<(), String> {
    let (low, high, step) = match cpu {
        256 => {
            return if [512, 1024, 2048].contains(&memory) {
                Ok(())
            } else {
                Err("cpu 256 takes memory 512, 1024 or 2048".to_owned())
            };
        }
        512 => (1024, 4096, 1024),
        1024 => (2048, 8192, 1024),
        2048 => (4096, 16384, 1024),
        4096 => (8192, 30720, 1024),
        8192 => (16384, 61440, 4096),
        16384 => (32768, 122_880, 8192),
        other => {
            return Err(format!(
                "cpu {other} is not a Fargate size; use 256, 512, 1024, 2048, 4096, 8192 or 16384"
            ));
        }
    };
    if (low..=high).contains(&memory) && (memory - low).is_multiple_of(step) {
        Ok(())
    } else {
        Err(format!(
            "cpu {cpu} takes memory from {low} to {high} MiB in steps of {step}, not {memory}"
        ))
    }
}

impl DeployConfig {
    /// Reports every invalid setting under `deploy.`.
    pub fn validate(&self, issues: &mut Vec<ConfigIssue>) {
        let mut issue = |path: &str, message: String| {
            issues.push(ConfigIssue {
                path: format!("deploy.{path}"),
                message,
            })
        };
        if let Err(message) = fargate_size(self.cpu, self.memory) {
            issue("memory", message);
        }
        if self.port == 0 {
            issue("port", "must be a port number from 1 to 65535".into());
        }
        if !LOG_RETENTION_DAYS.contains(&self.log_retention_days) {
            issue(
                "log_retention_days",
                format!(
                    "CloudWatch keeps logs for one of {LOG_RETENTION_DAYS:?} days, not {}",
                    self.log_retention_days
                ),
            );
        }
        if !(2..=120).contains(&self.stop_timeout_secs) {
            issue(
                "stop_timeout_secs",
                format!(
                    "ECS allows 2 to 120 seconds, got {}",
                    self.stop_timeout_secs
                ),
            );
        }
        if let Some(arn) = &self.certificate_arn {
            if !is_certificate_arn(arn) {
                issue(
                    "certificate_arn",
                    format!(
                        "\"{arn}\" is not the ARN of an ACM certificate \
                         (arn:aws:acm:REGION:ACCOUNT:certificate/ID) or an IAM server certificate"
                    ),
                );
            }
            if self.plain_http {
                issue(
                    "plain_http",
                    "asks for plain HTTP, but certificate_arn asks for HTTPS: give one of them"
                        .into(),
                );
            }
        }
        if let Some(scaling) = &self.autoscaling {
            scaling.validate(self.desired_count, &mut issue);
        }
        for (name, arn) in &self.secrets {
            let service = arn.split(':').nth(2);
            if !arn.starts_with("arn:") || !matches!(service, Some("ssm" | "secretsmanager")) {
                issue(
                    &format!("secrets.{name}"),
                    format!(
                        "\"{arn}\" is not the ARN of an SSM parameter or a Secrets Manager secret \
                         (arn:aws:ssm:REGION:ACCOUNT:parameter/NAME or \
                         arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)"
                    ),
                );
            }
            if self.environment.contains_key(name) {
                issue(
                    &format!("secrets.{name}"),
                    "is also in deploy.environment; give it in one place".into(),
                );
            }
        }
    }
}

/// Whether `arn` names an ACM certificate or an IAM server certificate, the two kinds an ALB's
/// HTTPS listener takes.
fn is_certificate_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "acm", region, account, resource] => {
            partition.starts_with("aws")
                && !region.is_empty()
                && !account.is_empty()
                && resource
                    .strip_prefix("certificate/")
                    .is_some_and(|id| !id.is_empty())
        }
        ["arn", partition, "iam", "", account, resource] => {
            partition.starts_with("aws")
                && !account.is_empty()
                && resource
                    .strip_prefix("server-certificate/")
                    .is_some_and(|name| !name.is_empty())
        }
        _ => false,
    }
}

impl AutoscalingConfig {
    fn validate(&self, desired_count: u32, issue: &mut impl FnMut(&str, String)) {
        if self.min == 0 {
            issue(
                "autoscaling.min",
                "must be at least 1: with no task running, nothing reports the load that would \
                 scale the service out again"
                    .into(),
            );
        }
        if self.max < self.min {
            issue(
                "autoscaling.max",
                format!("must be at least min ({}), got {}", self.min, self.max),
            );
        } else if !(self.min..=self.max).contains(&desired_count) {
            issue(
                "desired_count",
                format!(
                    "must be between autoscaling.min and autoscaling.max ({} to {}), got \
                     {desired_count}: it is the task count the service starts with",
                    self.min, self.max
                ),
            );
        }
        if let Some(target) = self.target {
            let fits = match self.metric {
                ScalingMetric::Cpu => target > 0.0 && target <= 100.0,
                ScalingMetric::Requests => target.is_finite() && target > 0.0,
            };
            if !fits {
                let range = match self.metric {
                    ScalingMetric::Cpu => "a CPU percentage above 0 and at most 100",
                    ScalingMetric::Requests => "a number of requests per task per minute above 0",
                };
                issue(
                    "autoscaling.target",
                    format!("must be {range}, got {target}"),
                );
            }
        }
        for (name, value) in [
            (
                "autoscaling.scale_in_cooldown_secs",
                self.scale_in_cooldown_secs,
            ),
            (
                "autoscaling.scale_out_cooldown_secs",
                self.scale_out_cooldown_secs,
            ),
        ] {
            if value > 86_400 {
                issue(name, format!("must be at most 86400 seconds, got {value}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fargate_sizes_follow_the_table() {
        assert!(fargate_size(256, 512).is_ok());
        assert!(fargate_size(1024, 2048).is_ok());
        assert!(fargate_size(4096, 30720).is_ok());
        assert!(fargate_size(8192, 20480).is_ok());
        let err = fargate_size(1024, 1024).unwrap_err();
        assert!(err.contains("2048 to 8192"), "{err}");
        assert!(fargate_size(8192, 18432).is_err());
        assert!(
            fargate_size(300, 1024)
                .unwrap_err()
                .contains("not a Fargate size")
        );
    }

    #[test]
    fn bad_settings_are_reported_with_their_path() {
        let config = DeployConfig {
            memory: 100,
            log_retention_days: 10,
            secrets: BTreeMap::from([("KEY".to_owned(), "my-secret".to_owned())]),
            ..DeployConfig::default()
        };
        let mut issues = Vec::new();
        config.validate(&mut issues);
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "deploy.memory",
                "deploy.log_retention_days",
                "deploy.secrets.KEY"
            ]
        );
    }

    fn issues(text: &str) -> Vec<String> {
        match crate::config::Config::parse(text, "t") {
            Ok(_) => Vec::new(),
            Err(e) => e.issues.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn autoscaling_parses_with_defaults_for_what_it_does_not_say() {
        let config = crate::config::Config::parse(
            "[deploy]\ndesired_count = 2\n[deploy.autoscaling]\nmin = 2\nmax = 8\n",
            "t",
        )
        .unwrap();
        let scaling = config.deploy.autoscaling.unwrap();
        assert_eq!((scaling.min, scaling.max), (2, 8));
        assert_eq!(scaling.metric, ScalingMetric::Cpu);
        assert_eq!(scaling.target_value(), 60.0);
        assert_eq!(
            (
                scaling.scale_in_cooldown_secs,
                scaling.scale_out_cooldown_secs
            ),
            (300, 60)
        );
        let config = crate::config::Config::parse(
            "[deploy.autoscaling]\nmin = 1\nmax = 3\nmetric = \"requests\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(config.deploy.autoscaling.unwrap().target_value(), 1000.0);
        // A whole number is a target too (as docs/deploy.md's example writes it).
        let config = crate::config::Config::parse(
            "[deploy.autoscaling]\nmin = 1\nmax = 3\nmetric = \"requests\"\ntarget = 600\n",
            "t",
        )
        .unwrap();
        assert_eq!(config.deploy.autoscaling.unwrap().target_value(), 600.0);
    }

    #[test]
    fn autoscaling_bounds_are_checked_against_each_other_and_the_desired_count() {
        let cases: [(&str, &[&str]); 6] = [
            (
                "min = 0\nmax = 2",
                &["deploy.autoscaling.min: must be at least 1"],
            ),
            (
                "min = 3\nmax = 2",
                &["deploy.autoscaling.max: must be at least min (3), got 2"],
            ),
            (
                "min = 2\nmax = 4",
                &[
                    "deploy.desired_count: must be between autoscaling.min and autoscaling.max (2 to 4), got 1",
                ],
            ),
            (
                "min = 1\nmax = 4\ntarget = 150.0",
                &["deploy.autoscaling.target: must be a CPU percentage"],
            ),
            (
                "min = 1\nmax = 4\nmetric = \"requests\"\ntarget = 0.0",
                &["deploy.autoscaling.target: must be a number of requests per task per minute"],
            ),
            (
                "min = 1\nmax = 4\nsteps = 2",
                &["deploy.autoscaling.steps: unknown field"],
            ),
        ];
        for (body, expected) in cases {
            let found = issues(&format!("[deploy.autoscaling]\n{body}\n"));
            assert_eq!(found.len(), expected.len(), "{body}: {found:#?}");
            for (found, expected) in found.iter().zip(expected) {
                assert!(found.starts_with(expected), "{body}: {found}");
            }
        }
        assert!(
            issues("[deploy]\ndesired_count = 4\n[deploy.autoscaling]\nmin = 1\nmax = 4\n")
                .is_empty()
        );
    }

    #[test]
    fn the_certificate_is_an_acm_or_iam_arn_and_excludes_plain_http() {
        for good in [
            "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666",
            "arn:aws-us-gov:acm:us-gov-west-1:123456789012:certificate/abc",
            "arn:aws:iam::123456789012:server-certificate/api-example-com",
        ] {
            assert!(is_certificate_arn(good), "{good}");
        }
        for bad in [
            "api.example.com",
            "arn:aws:acm:us-east-1:123456789012:certificate/",
            "arn:aws:iam:us-east-1:123456789012:server-certificate/x",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:x",
        ] {
            assert!(!is_certificate_arn(bad), "{bad}");
        }
        let found = issues("[deploy]\ncertificate_arn = \"api.example.com\"\nplain_http = true\n");
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found[0].starts_with("deploy.certificate_arn: \"api.example.com\" is not the ARN"),
            "{}",
            found[0]
        );
        assert!(
            found[1].starts_with("deploy.plain_http: asks for plain HTTP"),
            "{}",
            found[1]
        );
    }

    #[test]
    fn the_section_parses_with_the_rest_of_the_config() {
        let config = crate::config::Config::parse(
            "[deploy]\ncpu = 512\nmemory = 2048\n[deploy.secrets]\nKEY = \"arn:aws:ssm:us-east-1:1:parameter/k\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(config.deploy.cpu, 512);
        assert_eq!(config.deploy.desired_count, 1);
        assert_eq!(config.deploy.secrets.len(), 1);

        let error =
            crate::config::Config::parse("[deploy]\ncpu = 256\nmemory = 4096\nzone = 1\n", "t")
                .unwrap_err()
                .to_string();
        assert!(
            error.contains("deploy") && error.contains("zone"),
            "{error}"
        );
        let error = crate::config::Config::parse("[deploy]\ncpu = 256\nmemory = 4096\n", "t")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("deploy.memory") && error.contains("cpu 256"),
            "{error}"
        );
    }
}
