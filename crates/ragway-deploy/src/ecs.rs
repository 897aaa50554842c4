//! Running the image: the ECS cluster, the CloudWatch log group, the Fargate task definition
//! (registered only when it differs from the one the service runs), the service with the
//! deployment circuit breaker and rollback, and the wait until the new deployment is primary
//! and healthy.

use std::time::{Duration, Instant};

use aws_sdk_cloudwatchlogs::Client as Logs;
use aws_sdk_ecs::Client as Ecs;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, Compatibility, ContainerDefinition, CpuArchitecture,
    DeploymentCircuitBreaker, DeploymentConfiguration, DeploymentRolloutState, HealthCheck,
    KeyValuePair, LaunchType, LoadBalancer as EcsLoadBalancer, LogConfiguration, LogDriver,
    NetworkConfiguration, NetworkMode, OsFamily, PortMapping, RuntimePlatform, Secret,
    TaskDefinition, TransportProtocol,
};
use ragway_core::deploy::DeployConfig;

use crate::error::{DeployError, code};
use crate::plan::{Action, Plan};

/// The container's name in the task definition.
pub const CONTAINER: &str = "ragway";

/// Makes sure the cluster exists.
pub async fn ensure_cluster(ecs: &Ecs, name: &str, plan: &mut Plan) -> Result<(), DeployError> {
    let output = ecs
        .describe_clusters()
        .clusters(name)
        .send()
        .await
        .map_err(|e| DeployError::aws(format!("ecs DescribeClusters {name}"), e))?;
    let active = output
        .clusters
        .unwrap_or_default()
        .iter()
        .any(|c| c.status.as_deref() == Some("ACTIVE"));
    if active {
        plan.record("ecs cluster", name, Action::Reuse, "");
        return Ok(());
    }
    if !plan.dry_run {
        ecs.create_cluster()
            .cluster_name(name)
            .send()
            .await
            .map_err(|e| DeployError::aws(format!("ecs CreateCluster {name}"), e))?;
    }
    plan.record("ecs cluster", name, Action::Create, "");
    Ok(())
}

/// Makes sure the log group exists and keeps logs `days` days.
pub async fn ensure_log_group(
    logs: &Logs,
    name: &str,
    days: i32,
    plan: &mut Plan,
) -> Result<(), DeployError> {
    let output = logs
        .describe_log_groups()
        .log_group_name_prefix(name)
        .send()
        .await
        .map_err(|e| DeployError::aws(format!("logs DescribeLogGroups {name}"), e))?;
    let found = output
        .log_groups
        .unwrap_or_default()
        .into_iter()
        .find(|g| g.log_group_name.as_deref() == Some(name));
    let action = match &found {
        None => Action::Create,
        Some(group) if group.retention_in_days == Some(days) => Action::Reuse,
        Some(_) => Action::Update,
    };
    if !plan.dry_run {
        if found.is_none() {
            match logs.create_log_group().log_group_name(name).send().await {
                Ok(_) => {}
                Err(error) if code(&error) == Some("ResourceAlreadyExistsException") => {}
                Err(error) => {
                    return Err(DeployError::aws(
                        format!("logs CreateLogGroup {name}"),
                        error,
                    ));
                }
            }
        }
        if action != Action::Reuse {
            logs.put_retention_policy()
                .log_group_name(name)
                .retention_in_days(days)
                .send()
                .await
                .map_err(|e| DeployError::aws(format!("logs PutRetentionPolicy {name}"), e))?;
        }
    }
    plan.record("log group", name, action, format!("retention {days} days"));
    Ok(())
}

/// Everything the task definition is made from. Serialised, it is also the definition's
/// fingerprint: the `ragway:spec` tag on a registered revision says what it was made from, so
/// a rerun with nothing changed registers nothing.
pub struct TaskSpec<'a> {
    pub family: &'a str,
    pub image: &'a str,
    pub region: &'a str,
    pub log_group: &'a str,
    pub execution_role_arn: &'a str,
    pub task_role_arn: &'a str,
    pub deploy: &'a DeployConfig,
}

/// The container's health check: liveness only (`/healthz`). ECS replaces a container whose
/// check fails, and a database or model outage must not make it replace every task at once;
/// readiness (`/readyz`) is the target group's check, which decides where traffic goes.
pub const HEALTH_CHECK: [&str; 4] = ["CMD", "/usr/local/bin/ragway", "healthcheck", "--live"];

/// The tag holding a task definition's fingerprint.
pub const SPEC_TAG: &str = "ragway:spec";

impl TaskSpec<'_> {
    pub fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        let deploy = self.deploy;
        // Only what reaches the task definition; the service's count and network are not in it.
        let shape = serde_json::json!({
            "family": self.family, "image": self.image, "region": self.region,
            "log_group": self.log_group, "execution_role": self.execution_role_arn,
            "task_role": self.task_role_arn, "cpu": deploy.cpu, "memory": deploy.memory,
            "port": deploy.port, "stop_timeout": deploy.stop_timeout_secs,
            "secrets": deploy.secrets, "environment": deploy.environment,
            "health_check": HEALTH_CHECK,
        });
        let digest = sha2::Sha256::digest(shape.to_string().as_bytes());
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }
}

fn invalid(what: &str, error: impl std::fmt::Display) -> DeployError {
    DeployError::Invalid(format!("task definition {what}: {error}"))
}

/// The container definition as wanted.
fn container(spec: &TaskSpec<'_>) -> Result<ContainerDefinition, DeployError> {
    let deploy = spec.deploy;
    let mut secrets = Vec::new();
    for (name, arn) in &deploy.secrets {
        secrets.push(
            Secret::builder()
                .name(name)
                .value_from(arn)
                .build()
                .map_err(|e| invalid("secret", e))?,
        );
    }
    Ok(ContainerDefinition::builder()
        .name(CONTAINER)
        .image(spec.image)
        .essential(true)
        .port_mappings(
            PortMapping::builder()
                .container_port(i32::from(deploy.port))
                .protocol(TransportProtocol::Tcp)
                .build(),
        )
        .set_environment(Some(
            deploy
                .environment
                .iter()
                .map(|(name, value)| KeyValuePair::builder().name(name).value(value).build())
                .collect(),
        ))
        .set_secrets(Some(secrets))
        .log_configuration(
            LogConfiguration::builder()
                .log_driver(LogDriver::Awslogs)
                .options("awslogs-group", spec.log_group)
                .options("awslogs-region", spec.region)
                .options("awslogs-stream-prefix", CONTAINER)
                .build()
                .map_err(|e| invalid("log configuration", e))?,
        )
        .health_check(
            HealthCheck::builder()
                .set_command(Some(HEALTH_CHECK.map(str::to_owned).to_vec()))
                .interval(15)
                .timeout(5)
                .retries(3)
                .start_period(60)
                .build()
                .map_err(|e| invalid("health check", e))?,
        )
        .stop_timeout(i32::try_from(deploy.stop_timeout_secs).unwrap_or(30))
        .build())
}

/// The service as it runs now, if it exists (not INACTIVE or DRAINING).
pub async fn current_service(
    ecs: &Ecs,
    cluster: &str,
    service: &str,
) -> Result<Option<aws_sdk_ecs::types::Service>, DeployError> {
    let output = match ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
    {
        Ok(output) => output,
        Err(error) if code(&error) == Some("ClusterNotFoundException") => return Ok(None),
        Err(error) => {
            return Err(DeployError::aws(
                format!("ecs DescribeServices {service}"),
                error,
            ));
        }
    };
    Ok(output
        .services
        .unwrap_or_default()
        .into_iter()
        .find(|s| s.status.as_deref() == Some("ACTIVE")))
}

/// Registers a new revision of the task definition unless the service's current one (or, with
/// no service yet, the family's latest) was made from the same spec. Returns its ARN.
pub async fn ensure_task_definition(
    ecs: &Ecs,
    spec: &TaskSpec<'_>,
    current_arn: Option<&str>,
    plan: &mut Plan,
) -> Result<String, DeployError> {
    let fingerprint = spec.fingerprint();
    let candidate = current_arn.unwrap_or(spec.family);
    let existing = match ecs
        .describe_task_definition()
        .task_definition(candidate)
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .send()
        .await
    {
        Ok(output) => Some(output),
        Err(error) if matches!(code(&error), Some("ClientException" | "ClientError")) => None,
        Err(error) => {
            return Err(DeployError::aws(
                format!("ecs DescribeTaskDefinition {candidate}"),
                error,
            ));
        }
    };
    if let Some(output) = &existing {
        let same = output.tags().iter().any(|t| {
            t.key.as_deref() == Some(SPEC_TAG) && t.value.as_deref() == Some(&fingerprint)
        });
        let arn = output
            .task_definition
            .as_ref()
            .and_then(|d: &TaskDefinition| d.task_definition_arn.clone());
        if let (true, Some(arn)) = (same, arn) {
            plan.record("task definition", arn.clone(), Action::Reuse, "");
            return Ok(arn);
        }
    }
    if plan.dry_run {
        plan.record(
            "task definition",
            spec.family,
            Action::Create,
            format!("new revision, image {}", spec.image),
        );
        return Ok(format!("{}:<next>", spec.family));
    }
    let deploy = spec.deploy;
    let output = ecs
        .register_task_definition()
        .family(spec.family)
        .requires_compatibilities(Compatibility::Fargate)
        .network_mode(NetworkMode::Awsvpc)
        .cpu(deploy.cpu.to_string())
        .memory(deploy.memory.to_string())
        .execution_role_arn(spec.execution_role_arn)
        .task_role_arn(spec.task_role_arn)
        .runtime_platform(
            RuntimePlatform::builder()
                .operating_system_family(OsFamily::Linux)
                .cpu_architecture(CpuArchitecture::X8664)
                .build(),
        )
        .container_definitions(container(spec)?)
        .tags(
            aws_sdk_ecs::types::Tag::builder()
                .key(SPEC_TAG)
                .value(&fingerprint)
                .build(),
        )
        .send()
        .await
        .map_err(|e| DeployError::aws(format!("ecs RegisterTaskDefinition {}", spec.family), e))?;
    let arn = output
        .task_definition
        .and_then(|d| d.task_definition_arn)
        .ok_or_else(|| DeployError::Aws {
            step: format!("ecs RegisterTaskDefinition {}", spec.family),
            message: "the answer names no task definition".into(),
        })?;
    plan.record(
        "task definition",
        arn.clone(),
        Action::Create,
        format!("image {}", spec.image),
    );
    Ok(arn)
}

/// Where and how the service runs its tasks.
pub struct ServiceSpec<'a> {
    pub cluster: &'a str,
    pub name: &'a str,
    pub task_definition: &'a str,
    pub desired_count: u32,
    pub subnets: &'a [String],
    pub task_group: &'a str,
    pub target_group_arn: &'a str,
    pub port: u16,
    /// The task counts autoscaling may choose between: a count inside them is the scaler's
    /// and is left alone; `desired_count` then only starts the service.
    pub scaling: Option<(u32, u32)>,
}

impl ServiceSpec<'_> {
    /// The count to set on an existing service running `current` tasks, if it must change.
    fn count_change(&self, current: i32) -> Option<i32> {
        let desired = i32::try_from(self.desired_count).unwrap_or(i32::MAX);
        let keep = match self.scaling {
            Some((min, max)) => u32::try_from(current).is_ok_and(|c| (min..=max).contains(&c)),
            None => current == desired,
        };
        (!keep).then_some(desired)
    }
}

fn deployment_configuration() -> DeploymentConfiguration {
    DeploymentConfiguration::builder()
        .deployment_circuit_breaker(
            DeploymentCircuitBreaker::builder()
                .enable(true)
                .rollback(true)
                .build(),
        )
        .maximum_percent(200)
        .minimum_healthy_percent(100)
        .build()
}

/// Creates the service or points it at the wanted task definition and count. Returns whether
/// a new deployment was started.
pub async fn ensure_service(
    ecs: &Ecs,
    spec: &ServiceSpec<'_>,
    current: Option<&aws_sdk_ecs::types::Service>,
    plan: &mut Plan,
) -> Result<bool, DeployError> {
    let desired = i32::try_from(spec.desired_count).unwrap_or(i32::MAX);
    if let Some(service) = current {
        let same_task = service.task_definition.as_deref() == Some(spec.task_definition);
        let count = spec.count_change(service.desired_count);
        let same_count = count.is_none();
        // ECS always reports the deployment configuration; an emulator that does not (moto)
        // is taken at its word that nothing needs changing.
        let breaker = service.deployment_configuration.as_ref().is_none_or(|c| {
            c.deployment_circuit_breaker
                .as_ref()
                .is_some_and(|b| b.enable && b.rollback)
        });
        if same_task && same_count && breaker {
            plan.record("ecs service", spec.name, Action::Reuse, "");
            return Ok(false);
        }
        let mut changes = Vec::new();
        if !same_task {
            changes.push(format!("task definition {}", spec.task_definition));
        }
        if let Some(count) = count {
            changes.push(format!("desired count {count}"));
        }
        if !breaker {
            changes.push("circuit breaker with rollback".to_owned());
        }
        if !plan.dry_run {
            ecs.update_service()
                .cluster(spec.cluster)
                .service(spec.name)
                .task_definition(spec.task_definition)
                .set_desired_count(count)
                .deployment_configuration(deployment_configuration())
                .send()
                .await
                .map_err(|e| DeployError::aws(format!("ecs UpdateService {}", spec.name), e))?;
        }
        plan.record("ecs service", spec.name, Action::Update, changes.join(", "));
        return Ok(!same_task);
    }
    if !plan.dry_run {
        let network = AwsVpcConfiguration::builder()
            .set_subnets(Some(spec.subnets.to_vec()))
            .security_groups(spec.task_group)
            .assign_public_ip(AssignPublicIp::Enabled)
            .build()
            .map_err(|e| invalid("network", e))?;
        ecs.create_service()
            .cluster(spec.cluster)
            .service_name(spec.name)
            .task_definition(spec.task_definition)
            .desired_count(desired)
            .launch_type(LaunchType::Fargate)
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(network)
                    .build(),
            )
            .load_balancers(
                EcsLoadBalancer::builder()
                    .target_group_arn(spec.target_group_arn)
                    .container_name(CONTAINER)
                    .container_port(i32::from(spec.port))
                    .build(),
            )
            .health_check_grace_period_seconds(60)
            .deployment_configuration(deployment_configuration())
            .send()
            .await
            .map_err(|e| DeployError::aws(format!("ecs CreateService {}", spec.name), e))?;
    }
    plan.record(
        "ecs service",
        spec.name,
        Action::Create,
        format!("{desired} task(s) on Fargate"),
    );
    Ok(true)
}

/// Where a deployment stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    Stable,
    Waiting,
    Failed(String),
}

/// Judges one look at the service: stable only when a single, completed deployment runs the
/// task definition just made with every task up. ECS's circuit breaker, when it rolls back,
/// marks the deployment FAILED and puts the old task definition back on the service; either
/// is a failure here (the stability waiter alone reports success after a rollback).
pub fn judge(service: &aws_sdk_ecs::types::Service, task_definition: &str) -> Progress {
    let deployments = service.deployments();
    let failed = deployments.iter().find(|d| {
        d.rollout_state == Some(DeploymentRolloutState::Failed)
            && (d.status.as_deref() == Some("PRIMARY")
                || d.task_definition.as_deref() == Some(task_definition))
    });
    if let Some(failed) = failed {
        return Progress::Failed(format!(
            "ECS marked the deployment of {task_definition} FAILED ({}); the circuit breaker \
             rolls the service back to the previous task definition — see the task logs in \
             CloudWatch",
            failed
                .rollout_state_reason
                .as_deref()
                .unwrap_or("no reason given")
        ));
    }
    if service.task_definition.as_deref() != Some(task_definition) {
        return Progress::Failed(format!(
            "the service runs {}, not {task_definition}: ECS rolled the deployment back, or \
             another deploy replaced it",
            service.task_definition.as_deref().unwrap_or("nothing")
        ));
    }
    let primary_done = deployments.iter().any(|d| {
        d.status.as_deref() == Some("PRIMARY")
            && matches!(
                d.rollout_state,
                None | Some(DeploymentRolloutState::Completed)
            )
    });
    if deployments.len() == 1 && primary_done && service.running_count == service.desired_count {
        Progress::Stable
    } else {
        Progress::Waiting
    }
}

/// Looks at the service every `poll` until [`judge`] says stable or failed, or `timeout`.
pub async fn wait_until_stable(
    ecs: &Ecs,
    cluster: &str,
    service: &str,
    task_definition: &str,
    timeout: Duration,
    poll: Duration,
) -> Result<(), DeployError> {
    let started = Instant::now();
    loop {
        let current = current_service(ecs, cluster, service)
            .await?
            .ok_or_else(|| {
                DeployError::Rollout(format!("service {service} disappeared while deploying"))
            })?;
        match judge(&current, task_definition) {
            Progress::Stable => return Ok(()),
            Progress::Failed(why) => return Err(DeployError::Rollout(why)),
            Progress::Waiting => {}
        }
        if started.elapsed() >= timeout {
            return Err(DeployError::Rollout(format!(
                "service {service} was not stable after {} s ({} of {} tasks running, {} \
                 deployment(s)); the deployment goes on in ECS, and rerunning deploy picks it up",
                timeout.as_secs(),
                current.running_count,
                current.desired_count,
                current.deployments().len()
            )));
        }
        tokio::time::sleep(poll).await;
    }
}

/// Removes the service (scaled to zero first, as ECS asks) and the cluster if empty.
pub async fn delete_service(
    ecs: &Ecs,
    cluster: &str,
    service: &str,
    plan: &mut Plan,
) -> Result<(), DeployError> {
    if current_service(ecs, cluster, service).await?.is_none() {
        plan.record("ecs service", service, Action::Absent, "");
    } else {
        if !plan.dry_run {
            ecs.delete_service()
                .cluster(cluster)
                .service(service)
                .force(true)
                .send()
                .await
                .map_err(|e| DeployError::aws(format!("ecs DeleteService {service}"), e))?;
        }
        plan.record("ecs service", service, Action::Delete, "");
    }
    let output = ecs
        .describe_clusters()
        .clusters(cluster)
        .send()
        .await
        .map_err(|e| DeployError::aws(format!("ecs DescribeClusters {cluster}"), e))?;
    let active = output
        .clusters()
        .iter()
        .any(|c| c.status.as_deref() == Some("ACTIVE"));
    if !active {
        plan.record("ecs cluster", cluster, Action::Absent, "");
        return Ok(());
    }
    if !plan.dry_run {
        ecs.delete_cluster()
            .cluster(cluster)
            .send()
            .await
            .map_err(|e| DeployError::aws(format!("ecs DeleteCluster {cluster}"), e))?;
    }
    plan.record("ecs cluster", cluster, Action::Delete, "");
    Ok(())
}

/// Removes the log group (destroy).
pub async fn delete_log_group(logs: &Logs, name: &str, plan: &mut Plan) -> Result<(), DeployError> {
    if plan.dry_run {
        plan.record("log group", name, Action::Delete, "");
        return Ok(());
    }
    match logs.delete_log_group().log_group_name(name).send().await {
        Ok(_) => plan.record("log group", name, Action::Delete, ""),
        Err(error) if code(&error) == Some("ResourceNotFoundException") => {
            plan.record("log group", name, Action::Absent, "")
        }
        Err(error) => {
            return Err(DeployError::aws(
                format!("logs DeleteLogGroup {name}"),
                error,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_roll_back_on_failure_and_keep_capacity() {
        let config = deployment_configuration();
        let breaker = config.deployment_circuit_breaker().unwrap();
        assert!(breaker.enable() && breaker.rollback());
        assert_eq!(config.minimum_healthy_percent(), Some(100));
        assert_eq!(config.maximum_percent(), Some(200));
    }

    #[test]
    fn a_count_autoscaling_chose_is_left_alone() {
        let spec = |scaling| ServiceSpec {
            cluster: "demo",
            name: "demo",
            task_definition: "td",
            desired_count: 2,
            subnets: &[],
            task_group: "sg",
            target_group_arn: "tg",
            port: 8000,
            scaling,
        };
        // Fixed: the config's count, always.
        assert_eq!(spec(None).count_change(2), None);
        assert_eq!(spec(None).count_change(5), Some(2));
        // Scaled: any count within the bounds is the scaler's; outside, the config's.
        assert_eq!(spec(Some((2, 6))).count_change(5), None);
        assert_eq!(spec(Some((2, 6))).count_change(9), Some(2));
        assert_eq!(spec(Some((2, 6))).count_change(0), Some(2));
    }

    #[test]
    fn the_container_health_check_asks_for_liveness_only() {
        let deploy = DeployConfig::default();
        let spec = TaskSpec {
            family: "demo",
            image: "repo@sha256:a",
            region: "us-east-1",
            log_group: "/ecs/demo",
            execution_role_arn: "arn:e",
            task_role_arn: "arn:t",
            deploy: &deploy,
        };
        let container = container(&spec).unwrap();
        assert_eq!(
            container.health_check().unwrap().command(),
            ["CMD", "/usr/local/bin/ragway", "healthcheck", "--live"]
        );
    }

    #[test]
    fn the_fingerprint_follows_what_the_task_definition_holds() {
        fn spec<'a>(image: &'a str, deploy: &'a DeployConfig) -> TaskSpec<'a> {
            TaskSpec {
                family: "demo",
                image,
                region: "us-east-1",
                log_group: "/ecs/demo",
                execution_role_arn: "arn:e",
                task_role_arn: "arn:t",
                deploy,
            }
        }
        let deploy = &DeployConfig::default();
        let changed = &DeployConfig {
            desired_count: 5,
            ..DeployConfig::default()
        };
        let more_memory = &DeployConfig {
            memory: 4096,
            ..DeployConfig::default()
        };
        let base = spec("repo@sha256:a", deploy).fingerprint();
        assert_eq!(base, spec("repo@sha256:a", deploy).fingerprint());
        assert_ne!(base, spec("repo@sha256:b", deploy).fingerprint());
        assert_ne!(base, spec("repo@sha256:a", more_memory).fingerprint());
        // The service's task count is not part of the task definition.
        assert_eq!(base, spec("repo@sha256:a", changed).fingerprint());
    }

    fn service(
        task_definition: &str,
        running: i32,
        deployments: &[(&str, &str, DeploymentRolloutState)],
    ) -> aws_sdk_ecs::types::Service {
        let mut builder = aws_sdk_ecs::types::Service::builder()
            .task_definition(task_definition)
            .desired_count(2)
            .running_count(running);
        for (status, definition, state) in deployments {
            builder = builder.deployments(
                aws_sdk_ecs::types::Deployment::builder()
                    .status(*status)
                    .task_definition(*definition)
                    .rollout_state(state.clone())
                    .rollout_state_reason("tasks failed to start")
                    .build(),
            );
        }
        builder.build()
    }

    #[test]
    fn a_rollout_is_judged_by_what_runs_not_only_by_stability() {
        use DeploymentRolloutState::{Completed, Failed, InProgress};
        let new = "arn:td/demo:2";
        let old = "arn:td/demo:1";
        // Done: one completed deployment of the new definition, every task up.
        assert_eq!(
            judge(&service(new, 2, &[("PRIMARY", new, Completed)]), new),
            Progress::Stable
        );
        // Still rolling: two deployments, or tasks missing.
        assert_eq!(
            judge(
                &service(
                    new,
                    2,
                    &[("PRIMARY", new, InProgress), ("ACTIVE", old, Completed)]
                ),
                new
            ),
            Progress::Waiting
        );
        assert_eq!(
            judge(&service(new, 1, &[("PRIMARY", new, Completed)]), new),
            Progress::Waiting
        );
        // The circuit breaker failed the new deployment …
        let failed = judge(
            &service(
                new,
                2,
                &[("PRIMARY", new, Failed), ("ACTIVE", old, Completed)],
            ),
            new,
        );
        assert!(
            matches!(&failed, Progress::Failed(why) if why.contains("tasks failed to start")),
            "{failed:?}"
        );
        // … and once rolled back the service is stable again, on the old definition: a failure.
        let rolled_back = judge(&service(old, 2, &[("PRIMARY", old, Completed)]), new);
        assert!(
            matches!(&rolled_back, Progress::Failed(why) if why.contains("rolled the deployment back")),
            "{rolled_back:?}"
        );
    }
}
