//! The service's task count under Application Auto Scaling: a scalable target between
//! `[deploy.autoscaling] min` and `max`, and one target-tracking policy (`N-target-tracking`) on
//! the tasks' CPU or on the load balancer's requests per task. Registered, changed and removed
//! so that the config alone decides: without the section, a deployment has neither.

use aws_sdk_applicationautoscaling::Client as Scaling;
use aws_sdk_applicationautoscaling::types::{
    MetricType, PolicyType, PredefinedMetricSpecification, ScalableDimension, ScalableTarget,
    ScalingPolicy, ServiceNamespace, TargetTrackingScalingPolicyConfiguration,
};
use ragway_core::deploy::{AutoscalingConfig, ScalingMetric};

use crate::error::DeployError;
use crate::plan::{Action, Plan};

/// Application Auto Scaling's name for an ECS service: `service/CLUSTER/SERVICE`.
pub fn resource_id(cluster: &str, service: &str) -> String {
    format!("service/{cluster}/{service}")
}

/// The one policy deploy manages on the service.
pub fn policy_name(service: &str) -> String {
    format!("{service}-target-tracking")
}

/// `ALBRequestCountPerTarget`'s resource label, `app/LB/ID/targetgroup/TG/ID`: the tails of the
/// load balancer's and the target group's ARNs.
pub fn resource_label(load_balancer_arn: &str, target_group_arn: &str) -> Option<String> {
    let balancer = load_balancer_arn.split_once(":loadbalancer/")?.1;
    let group = target_group_arn.split_once(":targetgroup/")?.1;
    (balancer.starts_with("app/") && !group.is_empty())
        .then(|| format!("{balancer}/targetgroup/{group}"))
}

/// The policy's configuration as wanted; `label` is needed for the requests metric.
fn configuration(
    scaling: &AutoscalingConfig,
    label: Option<&str>,
) -> Result<TargetTrackingScalingPolicyConfiguration, DeployError> {
    let metric = match scaling.metric {
        ScalingMetric::Cpu => PredefinedMetricSpecification::builder()
            .predefined_metric_type(MetricType::EcsServiceAverageCpuUtilization),
        ScalingMetric::Requests => PredefinedMetricSpecification::builder()
            .predefined_metric_type(MetricType::AlbRequestCountPerTarget)
            .set_resource_label(label.map(str::to_owned)),
    }
    .build()
    .map_err(|e| DeployError::Invalid(format!("scaling policy metric: {e}")))?;
    TargetTrackingScalingPolicyConfiguration::builder()
        .target_value(scaling.target_value())
        .predefined_metric_specification(metric)
        .scale_in_cooldown(i32::try_from(scaling.scale_in_cooldown_secs).unwrap_or(i32::MAX))
        .scale_out_cooldown(i32::try_from(scaling.scale_out_cooldown_secs).unwrap_or(i32::MAX))
        .disable_scale_in(false)
        .build()
        .map_err(|e| DeployError::Invalid(format!("scaling policy: {e}")))
}

/// Whether a policy already holds the wanted configuration. Compared field by field: the
/// target is a float AWS echoes back, and fields it leaves out mean their defaults.
fn same_policy(
    current: &TargetTrackingScalingPolicyConfiguration,
    wanted: &TargetTrackingScalingPolicyConfiguration,
) -> bool {
    let metric = |c: &TargetTrackingScalingPolicyConfiguration| {
        c.predefined_metric_specification().map(|m| {
            (
                m.predefined_metric_type().clone(),
                m.resource_label().map(str::to_owned),
            )
        })
    };
    (current.target_value() - wanted.target_value()).abs() < 1e-9
        && metric(current) == metric(wanted)
        && current.scale_in_cooldown() == wanted.scale_in_cooldown()
        && current.scale_out_cooldown() == wanted.scale_out_cooldown()
        && current.disable_scale_in().unwrap_or(false) == wanted.disable_scale_in().unwrap_or(false)
}

/// The service's scalable target, if registered.
async fn scalable_target(
    client: &Scaling,
    resource: &str,
) -> Result<Option<ScalableTarget>, DeployError> {
    let output = client
        .describe_scalable_targets()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_ids(resource)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .send()
        .await
        .map_err(|e| {
            DeployError::aws(
                format!("application-autoscaling DescribeScalableTargets {resource}"),
                e,
            )
        })?;
    Ok(output
        .scalable_targets
        .unwrap_or_default()
        .into_iter()
        .find(|t| t.resource_id() == resource))
}

/// Deploy's policy on the service, if there is one.
async fn policy(
    client: &Scaling,
    resource: &str,
    name: &str,
) -> Result<Option<ScalingPolicy>, DeployError> {
    let output = client
        .describe_scaling_policies()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(resource)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .policy_names(name)
        .send()
        .await
        .map_err(|e| {
            DeployError::aws(
                format!("application-autoscaling DescribeScalingPolicies {resource}"),
                e,
            )
        })?;
    Ok(output
        .scaling_policies
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.policy_name() == name && p.resource_id() == resource))
}

/// Makes the service's scaling match `scaling`: registers or changes the scalable target and
/// puts the policy when they differ, or, with `None`, removes what an earlier deploy made.
/// `label` is the load balancer's resource label (needed for the requests metric; absent in a
/// dry run before the load balancer exists).
pub async fn ensure_autoscaling(
    client: &Scaling,
    cluster: &str,
    service: &str,
    scaling: Option<&AutoscalingConfig>,
    label: Option<&str>,
    plan: &mut Plan,
) -> Result<(), DeployError> {
    let Some(scaling) = scaling else {
        return delete_autoscaling(client, cluster, service, plan).await;
    };
    let resource = resource_id(cluster, service);
    let (min, max) = (
        i32::try_from(scaling.min).unwrap_or(i32::MAX),
        i32::try_from(scaling.max).unwrap_or(i32::MAX),
    );

    // The scalable target.
    let current = scalable_target(client, &resource).await?;
    let action = match &current {
        None => Action::Create,
        Some(target) if (target.min_capacity(), target.max_capacity()) == (min, max) => {
            Action::Reuse
        }
        Some(_) => Action::Update,
    };
    if action != Action::Reuse && !plan.dry_run {
        client
            .register_scalable_target()
            .service_namespace(ServiceNamespace::Ecs)
            .resource_id(&resource)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .min_capacity(min)
            .max_capacity(max)
            .send()
            .await
            .map_err(|e| {
                DeployError::aws(
                    format!("application-autoscaling RegisterScalableTarget {resource}"),
                    e,
                )
            })?;
    }
    let detail = match &current {
        Some(target) if action == Action::Update => format!(
            "{} to {} tasks -> {min} to {max}",
            target.min_capacity(),
            target.max_capacity()
        ),
        _ => format!("{min} to {max} tasks"),
    };
    plan.record("scalable target", resource.clone(), action, detail);

    // The policy.
    let name = policy_name(service);
    let label = match (scaling.metric, label) {
        (ScalingMetric::Cpu, _) => None,
        (ScalingMetric::Requests, Some(label)) => Some(label),
        (ScalingMetric::Requests, None) if plan.dry_run => Some("<new load balancer>"),
        (ScalingMetric::Requests, None) => {
            return Err(DeployError::Invalid(
                "scaling on requests per task needs the load balancer's and target group's \
                 ARNs, and they are not ARNs of an application load balancer"
                    .into(),
            ));
        }
    };
    let wanted = configuration(scaling, label)?;
    let current = policy(client, &resource, &name).await?;
    let action = match current
        .as_ref()
        .and_then(|p| p.target_tracking_scaling_policy_configuration())
    {
        None => Action::Create,
        Some(current) if same_policy(current, &wanted) => Action::Reuse,
        Some(_) => Action::Update,
    };
    if action != Action::Reuse && !plan.dry_run {
        client
            .put_scaling_policy()
            .policy_name(&name)
            .service_namespace(ServiceNamespace::Ecs)
            .resource_id(&resource)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .policy_type(PolicyType::TargetTrackingScaling)
            .target_tracking_scaling_policy_configuration(wanted)
            .send()
            .await
            .map_err(|e| {
                DeployError::aws(
                    format!("application-autoscaling PutScalingPolicy {name}"),
                    e,
                )
            })?;
    }
    let what = match scaling.metric {
        ScalingMetric::Cpu => "% CPU",
        ScalingMetric::Requests => " requests per task per minute",
    };
    plan.record(
        "scaling policy",
        name,
        action,
        format!("target tracking, {}{what}", scaling.target_value()),
    );
    Ok(())
}

/// Removes deploy's policy and the scalable target, if there (destroy, or a config that no
/// longer scales). The policy goes first: AWS would take it with the target, but not every
/// implementation of the API does.
pub async fn delete_autoscaling(
    client: &Scaling,
    cluster: &str,
    service: &str,
    plan: &mut Plan,
) -> Result<(), DeployError> {
    let resource = resource_id(cluster, service);
    let name = policy_name(service);
    if policy(client, &resource, &name).await?.is_some() {
        if !plan.dry_run {
            client
                .delete_scaling_policy()
                .policy_name(&name)
                .service_namespace(ServiceNamespace::Ecs)
                .resource_id(&resource)
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .send()
                .await
                .map_err(|e| {
                    DeployError::aws(
                        format!("application-autoscaling DeleteScalingPolicy {name}"),
                        e,
                    )
                })?;
        }
        plan.record("scaling policy", name, Action::Delete, "");
    }
    if scalable_target(client, &resource).await?.is_some() {
        if !plan.dry_run {
            client
                .deregister_scalable_target()
                .service_namespace(ServiceNamespace::Ecs)
                .resource_id(&resource)
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .send()
                .await
                .map_err(|e| {
                    DeployError::aws(
                        format!("application-autoscaling DeregisterScalableTarget {resource}"),
                        e,
                    )
                })?;
        }
        plan.record("scalable target", resource, Action::Delete, "");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaling(metric: ScalingMetric, target: Option<f64>) -> AutoscalingConfig {
        AutoscalingConfig {
            min: 2,
            max: 6,
            metric,
            target,
            scale_in_cooldown_secs: 300,
            scale_out_cooldown_secs: 60,
        }
    }

    #[test]
    fn the_requests_metric_is_labelled_with_the_load_balancer_and_target_group() {
        let label = resource_label(
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/demo/50dc6c495c0c9188",
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/demo/73e2d6bc24d8a067",
        );
        assert_eq!(
            label.as_deref(),
            Some("app/demo/50dc6c495c0c9188/targetgroup/demo/73e2d6bc24d8a067")
        );
        assert_eq!(resource_label("", "arn:x:targetgroup/demo/1"), None);
        assert_eq!(
            resource_label("arn:x:loadbalancer/net/demo/1", "arn:x:targetgroup/demo/1"),
            None,
            "only an application load balancer counts requests per target"
        );
        assert_eq!(resource_id("demo", "demo"), "service/demo/demo");
    }

    #[test]
    fn the_policy_tracks_the_configured_metric_and_its_default_target() {
        let cpu = configuration(&scaling(ScalingMetric::Cpu, None), None).unwrap();
        let metric = cpu.predefined_metric_specification().unwrap();
        assert_eq!(
            metric.predefined_metric_type(),
            &MetricType::EcsServiceAverageCpuUtilization
        );
        assert_eq!(metric.resource_label(), None);
        assert_eq!(cpu.target_value(), 60.0);
        assert_eq!(
            (cpu.scale_in_cooldown(), cpu.scale_out_cooldown()),
            (Some(300), Some(60))
        );

        let requests = configuration(
            &scaling(ScalingMetric::Requests, Some(250.0)),
            Some("app/demo/1/targetgroup/demo/2"),
        )
        .unwrap();
        let metric = requests.predefined_metric_specification().unwrap();
        assert_eq!(
            metric.predefined_metric_type(),
            &MetricType::AlbRequestCountPerTarget
        );
        assert_eq!(
            metric.resource_label(),
            Some("app/demo/1/targetgroup/demo/2")
        );
        assert_eq!(requests.target_value(), 250.0);
    }

    #[test]
    fn a_policy_is_put_again_only_when_it_differs() {
        let wanted = configuration(&scaling(ScalingMetric::Cpu, Some(60.0)), None).unwrap();
        assert!(same_policy(&wanted, &wanted));
        let other_target = configuration(&scaling(ScalingMetric::Cpu, Some(70.0)), None).unwrap();
        assert!(!same_policy(&other_target, &wanted));
        let other_metric = configuration(
            &scaling(ScalingMetric::Requests, Some(60.0)),
            Some("app/a/1/targetgroup/b/2"),
        )
        .unwrap();
        assert!(!same_policy(&other_metric, &wanted));
        // AWS leaves out `DisableScaleIn` when false.
        let echoed = TargetTrackingScalingPolicyConfiguration::builder()
            .target_value(60.0)
            .set_predefined_metric_specification(wanted.predefined_metric_specification().cloned())
            .scale_in_cooldown(300)
            .scale_out_cooldown(60)
            .build()
            .unwrap();
        assert!(same_policy(&echoed, &wanted));
    }
}
