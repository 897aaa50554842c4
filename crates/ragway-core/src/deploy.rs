//! `[deploy]`: how `ragway deploy` runs this configuration on AWS ECS Fargate (size, count,
//! network, log retention, and the secrets the task reads). Only the deploy command reads it;
//! `serve` ignores it.

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
