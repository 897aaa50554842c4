//! Where the tasks run and how traffic reaches them: the VPC and subnets (the default VPC
//! unless the config names them), two security groups (the load balancer's, open on its
//! listener ports; the tasks', open only to the load balancer), and the ALB (idle timeout from
//! the server's request timeout) with its `ip` target group (health check `/readyz`,
//! deregistration delay from the server's shutdown grace). The listeners are `listeners.rs`'s.

use aws_sdk_ec2::Client as Ec2;
use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, UserIdGroupPair};
use aws_sdk_elasticloadbalancingv2::Client as Elb;
use aws_sdk_elasticloadbalancingv2::types::{
    IpAddressType, LoadBalancerAttribute, LoadBalancerSchemeEnum, LoadBalancerTypeEnum, Matcher,
    ProtocolEnum, TargetGroupAttribute, TargetTypeEnum,
};
use ragway_core::deploy::DeployConfig;

use crate::error::{DeployError, code};
use crate::plan::{Action, Plan};

/// The VPC and subnets to use.
#[derive(Clone, Debug)]
pub struct Network {
    pub vpc_id: String,
    pub subnets: Vec<String>,
}

/// The config's VPC, or the account's default VPC.
pub async fn vpc_id(ec2: &Ec2, deploy: &DeployConfig) -> Result<String, DeployError> {
    if let Some(id) = &deploy.vpc_id {
        return Ok(id.clone());
    }
    let vpcs = ec2
        .describe_vpcs()
        .filters(Filter::builder().name("isDefault").values("true").build())
        .send()
        .await
        .map_err(|e| DeployError::aws("ec2 DescribeVpcs (default VPC)", e))?;
    vpcs.vpcs
        .unwrap_or_default()
        .into_iter()
        .find_map(|v| v.vpc_id)
        .ok_or_else(|| {
            DeployError::Invalid(
                "this account and region have no default VPC: set deploy.vpc_id and \
                 deploy.subnets in the config"
                    .into(),
            )
        })
}

/// The config's VPC and subnets, or the default VPC and all its subnets.
pub async fn network(ec2: &Ec2, deploy: &DeployConfig) -> Result<Network, DeployError> {
    let vpc_id = vpc_id(ec2, deploy).await?;
    let subnets = if deploy.subnets.is_empty() {
        let output = ec2
            .describe_subnets()
            .filters(Filter::builder().name("vpc-id").values(&vpc_id).build())
            .send()
            .await
            .map_err(|e| DeployError::aws(format!("ec2 DescribeSubnets {vpc_id}"), e))?;
        let mut subnets: Vec<String> = output
            .subnets
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| s.subnet_id)
            .collect();
        subnets.sort();
        subnets
    } else {
        deploy.subnets.clone()
    };
    if subnets.len() < 2 {
        return Err(DeployError::Invalid(format!(
            "an application load balancer needs subnets in at least two availability zones; \
             VPC {vpc_id} gives {}: list them in deploy.subnets",
            subnets.len()
        )));
    }
    Ok(Network { vpc_id, subnets })
}

/// Makes sure a security group named `name` exists in the VPC and allows exactly `ports` from
/// `source` (a CIDR, or another group's id when it starts with `sg-`): a port wanted no more
/// (443 after a switch to plain HTTP, an old container port) is closed again. Rules from other
/// sources, or over port ranges, are someone else's and stay. Returns the group's id.
pub async fn ensure_security_group(
    ec2: &Ec2,
    name: &str,
    vpc_id: &str,
    ports: &[i32],
    source: &str,
    plan: &mut Plan,
) -> Result<String, DeployError> {
    let existing = security_groups(ec2, name, vpc_id).await?.into_iter().next();
    let wanted = describe_ports(ports, source);
    let (id, open, created) = match existing {
        Some(group) => {
            let open = open_ports(&group, source);
            (group.group_id.unwrap_or_default(), open, false)
        }
        None if plan.dry_run => {
            plan.record("security group", name, Action::Create, wanted);
            return Ok(format!("<{name}>"));
        }
        None => {
            let created = ec2
                .create_security_group()
                .group_name(name)
                .description(format!("ragway {name}: {wanted}"))
                .vpc_id(vpc_id)
                .send()
                .await
                .map_err(|e| DeployError::aws(format!("ec2 CreateSecurityGroup {name}"), e))?;
            (created.group_id.unwrap_or_default(), Vec::new(), true)
        }
    };
    let to_open: Vec<i32> = ports
        .iter()
        .copied()
        .filter(|p| !open.contains(p))
        .collect();
    let to_close: Vec<i32> = open
        .iter()
        .copied()
        .filter(|p| !ports.contains(p))
        .collect();
    if to_open.is_empty() && to_close.is_empty() {
        plan.record("security group", name, Action::Reuse, id.clone());
        return Ok(id);
    }
    if !plan.dry_run {
        if !to_open.is_empty() {
            ec2.authorize_security_group_ingress()
                .group_id(&id)
                .set_ip_permissions(Some(permissions(&to_open, source)))
                .send()
                .await
                .map_err(|e| {
                    DeployError::aws(format!("ec2 AuthorizeSecurityGroupIngress {name}"), e)
                })?;
        }
        if !to_close.is_empty() {
            ec2.revoke_security_group_ingress()
                .group_id(&id)
                .set_ip_permissions(Some(permissions(&to_close, source)))
                .send()
                .await
                .map_err(|e| {
                    DeployError::aws(format!("ec2 RevokeSecurityGroupIngress {name}"), e)
                })?;
        }
    }
    let detail = if created {
        wanted
    } else {
        let mut changes = Vec::new();
        if !to_open.is_empty() {
            changes.push(format!("open {}", describe_ports(&to_open, source)));
        }
        if !to_close.is_empty() {
            changes.push(format!("close {}", describe_ports(&to_close, source)));
        }
        changes.join(", ")
    };
    let action = if created {
        Action::Create
    } else {
        Action::Update
    };
    plan.record("security group", name, action, detail);
    Ok(id)
}

/// "port 80 from X" / "ports 80, 443 from X".
fn describe_ports(ports: &[i32], source: &str) -> String {
    let list: Vec<String> = ports.iter().map(i32::to_string).collect();
    let word = if ports.len() == 1 { "port" } else { "ports" };
    format!("{word} {} from {source}", list.join(", "))
}

/// The single TCP ports the group opens to `source`.
fn open_ports(group: &aws_sdk_ec2::types::SecurityGroup, source: &str) -> Vec<i32> {
    let mut ports: Vec<i32> = group
        .ip_permissions()
        .iter()
        .filter(|p| p.ip_protocol.as_deref() == Some("tcp"))
        .filter(|p| {
            p.ip_ranges()
                .iter()
                .any(|r| r.cidr_ip.as_deref() == Some(source))
                || p.user_id_group_pairs()
                    .iter()
                    .any(|g| g.group_id.as_deref() == Some(source))
        })
        .filter_map(|p| match (p.from_port, p.to_port) {
            (Some(from), Some(to)) if from == to => Some(from),
            _ => None,
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// One ingress rule per port from `source`.
fn permissions(ports: &[i32], source: &str) -> Vec<IpPermission> {
    ports
        .iter()
        .map(|&port| {
            let permission = IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(port)
                .to_port(port);
            let permission = if source.starts_with("sg-") {
                permission.user_id_group_pairs(UserIdGroupPair::builder().group_id(source).build())
            } else {
                permission.ip_ranges(IpRange::builder().cidr_ip(source).build())
            };
            permission.build()
        })
        .collect()
}

/// The load balancer: its ARN and public DNS name.
#[derive(Clone, Debug)]
pub struct LoadBalancer {
    pub arn: String,
    pub dns_name: String,
    pub target_group_arn: String,
}

/// What the load balancer and its target group are made to.
pub struct BalancerSpec<'a> {
    pub name: &'a str,
    pub network: &'a Network,
    pub alb_group: &'a str,
    /// The container port the target group forwards to.
    pub port: u16,
    /// How long a connection may stay silent before the ALB closes it; at least the server's
    /// request timeout, so that a slow answer ends with ragway's own 504, not the ALB's.
    pub idle_timeout_secs: u32,
    /// How long a deregistered task keeps its requests in flight before ECS stops it; at least
    /// the server's shutdown grace.
    pub deregistration_delay_secs: u32,
}

/// The target group's health check: readiness, so that the ALB routes only to a task whose
/// components answer (and not to one that is shutting down). Four failures 15 s apart before a
/// task is marked unhealthy, so a dependency's blip of under a minute takes no task out of
/// rotation, and ECS does not replace tasks for it.
pub const HEALTH_CHECK_PATH: &str = "/readyz";
const HEALTH_CHECK_INTERVAL_SECS: i32 = 15;
const HEALTHY_THRESHOLD: i32 = 2;
const UNHEALTHY_THRESHOLD: i32 = 4;

/// ALB attribute names.
const IDLE_TIMEOUT: &str = "idle_timeout.timeout_seconds";
const DEREGISTRATION_DELAY: &str = "deregistration_delay.timeout_seconds";
/// What an ALB's idle timeout is when it was never set.
const DEFAULT_IDLE_TIMEOUT: &str = "60";

/// Makes sure the ALB and its target group exist as wanted (the listeners are
/// [`crate::listeners`]'s).
pub async fn ensure_load_balancer(
    elb: &Elb,
    spec: &BalancerSpec<'_>,
    plan: &mut Plan,
) -> Result<LoadBalancer, DeployError> {
    let name = spec.name;
    let idle = spec.idle_timeout_secs.to_string();

    // The load balancer.
    let found = load_balancers(elb, name).await?.into_iter().next();
    let (arn, dns_name, created) = match found {
        Some(lb) => (
            lb.load_balancer_arn.unwrap_or_default(),
            lb.dns_name.unwrap_or_default(),
            false,
        ),
        None if plan.dry_run => {
            plan.record(
                "load balancer",
                name,
                Action::Create,
                format!("internet-facing ALB, idle timeout {idle} s"),
            );
            (String::new(), format!("<{name}>.elb.amazonaws.com"), true)
        }
        None => {
            let output = elb
                .create_load_balancer()
                .name(name)
                .set_subnets(Some(spec.network.subnets.clone()))
                .security_groups(spec.alb_group)
                .scheme(LoadBalancerSchemeEnum::InternetFacing)
                .r#type(LoadBalancerTypeEnum::Application)
                .ip_address_type(IpAddressType::Ipv4)
                .tags(elb_tag(name))
                .send()
                .await
                .map_err(|e| DeployError::aws(format!("elbv2 CreateLoadBalancer {name}"), e))?;
            let lb = output
                .load_balancers
                .unwrap_or_default()
                .into_iter()
                .next()
                .ok_or_else(|| DeployError::Aws {
                    step: format!("elbv2 CreateLoadBalancer {name}"),
                    message: "the answer names no load balancer".into(),
                })?;
            (
                lb.load_balancer_arn.unwrap_or_default(),
                lb.dns_name.unwrap_or_default(),
                true,
            )
        }
    };
    if !arn.is_empty() {
        let attributes = elb
            .describe_load_balancer_attributes()
            .load_balancer_arn(&arn)
            .send()
            .await
            .map_err(|e| {
                DeployError::aws(format!("elbv2 DescribeLoadBalancerAttributes {name}"), e)
            })?;
        let current = attributes
            .attributes()
            .iter()
            .find(|a| a.key.as_deref() == Some(IDLE_TIMEOUT))
            .and_then(|a| a.value.as_deref())
            .unwrap_or(DEFAULT_IDLE_TIMEOUT);
        let same = current == idle;
        if !same && !plan.dry_run {
            elb.modify_load_balancer_attributes()
                .load_balancer_arn(&arn)
                .attributes(
                    LoadBalancerAttribute::builder()
                        .key(IDLE_TIMEOUT)
                        .value(&idle)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| {
                    DeployError::aws(format!("elbv2 ModifyLoadBalancerAttributes {name}"), e)
                })?;
        }
        let (action, detail) = match (created, same) {
            (true, _) => (Action::Create, format!("{dns_name}, idle timeout {idle} s")),
            (false, true) => (Action::Reuse, dns_name.clone()),
            (false, false) => (
                Action::Update,
                format!("idle timeout {current} s -> {idle} s"),
            ),
        };
        plan.record("load balancer", name, action, detail);
    }

    // The target group.
    let delay = spec.deregistration_delay_secs.to_string();
    let wanted = format!(
        "ip targets on port {}, health {HEALTH_CHECK_PATH}, deregistration delay {delay} s",
        spec.port
    );
    let found = target_groups(elb, name).await?.into_iter().next();
    let (target_group_arn, mut changes, created) = match found {
        Some(group) => {
            let changes = health_check_changes(&group);
            (group.target_group_arn.unwrap_or_default(), changes, false)
        }
        None if plan.dry_run => {
            plan.record("target group", name, Action::Create, wanted);
            return Ok(LoadBalancer {
                arn,
                dns_name,
                target_group_arn: String::new(),
            });
        }
        None => {
            let output = elb
                .create_target_group()
                .name(name)
                .protocol(ProtocolEnum::Http)
                .port(i32::from(spec.port))
                .vpc_id(&spec.network.vpc_id)
                .target_type(TargetTypeEnum::Ip)
                .health_check_protocol(ProtocolEnum::Http)
                .health_check_path(HEALTH_CHECK_PATH)
                .health_check_interval_seconds(HEALTH_CHECK_INTERVAL_SECS)
                .healthy_threshold_count(HEALTHY_THRESHOLD)
                .unhealthy_threshold_count(UNHEALTHY_THRESHOLD)
                .matcher(Matcher::builder().http_code("200").build())
                .tags(elb_tag(name))
                .send()
                .await
                .map_err(|e| DeployError::aws(format!("elbv2 CreateTargetGroup {name}"), e))?;
            let group = output.target_groups.unwrap_or_default().into_iter().next();
            (
                group.and_then(|g| g.target_group_arn).unwrap_or_default(),
                Vec::new(),
                true,
            )
        }
    };
    if !changes.is_empty() && !plan.dry_run {
        elb.modify_target_group()
            .target_group_arn(&target_group_arn)
            .health_check_protocol(ProtocolEnum::Http)
            .health_check_path(HEALTH_CHECK_PATH)
            .health_check_interval_seconds(HEALTH_CHECK_INTERVAL_SECS)
            .healthy_threshold_count(HEALTHY_THRESHOLD)
            .unhealthy_threshold_count(UNHEALTHY_THRESHOLD)
            .matcher(Matcher::builder().http_code("200").build())
            .send()
            .await
            .map_err(|e| DeployError::aws(format!("elbv2 ModifyTargetGroup {name}"), e))?;
    }
    let attributes = elb
        .describe_target_group_attributes()
        .target_group_arn(&target_group_arn)
        .send()
        .await
        .map_err(|e| DeployError::aws(format!("elbv2 DescribeTargetGroupAttributes {name}"), e))?;
    let current_delay = attributes
        .attributes()
        .iter()
        .find(|a| a.key.as_deref() == Some(DEREGISTRATION_DELAY))
        .and_then(|a| a.value.clone());
    if current_delay.as_deref() != Some(delay.as_str()) {
        if !plan.dry_run {
            elb.modify_target_group_attributes()
                .target_group_arn(&target_group_arn)
                .attributes(
                    TargetGroupAttribute::builder()
                        .key(DEREGISTRATION_DELAY)
                        .value(&delay)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| {
                    DeployError::aws(format!("elbv2 ModifyTargetGroupAttributes {name}"), e)
                })?;
        }
        changes.push(format!(
            "deregistration delay {} s -> {delay} s",
            current_delay.as_deref().unwrap_or("?")
        ));
    }
    let (action, detail) = match (created, changes.is_empty()) {
        (true, _) => (Action::Create, wanted),
        (false, true) => (Action::Reuse, String::new()),
        (false, false) => (Action::Update, changes.join(", ")),
    };
    plan.record("target group", name, action, detail);
    Ok(LoadBalancer {
        arn,
        dns_name,
        target_group_arn,
    })
}

/// How an existing target group's health check differs from the wanted one.
fn health_check_changes(group: &aws_sdk_elasticloadbalancingv2::types::TargetGroup) -> Vec<String> {
    let mut changes = Vec::new();
    if group.health_check_path.as_deref() != Some(HEALTH_CHECK_PATH) {
        changes.push(format!(
            "health {} -> {HEALTH_CHECK_PATH}",
            group.health_check_path.as_deref().unwrap_or("?")
        ));
    }
    let thresholds = (
        group.health_check_interval_seconds,
        group.healthy_threshold_count,
        group.unhealthy_threshold_count,
    );
    let wanted = (
        Some(HEALTH_CHECK_INTERVAL_SECS),
        Some(HEALTHY_THRESHOLD),
        Some(UNHEALTHY_THRESHOLD),
    );
    if thresholds != wanted {
        changes.push(format!(
            "health every {HEALTH_CHECK_INTERVAL_SECS} s, healthy after {HEALTHY_THRESHOLD}, \
             unhealthy after {UNHEALTHY_THRESHOLD}"
        ));
    }
    changes
}

fn elb_tag(deployment: &str) -> aws_sdk_elasticloadbalancingv2::types::Tag {
    aws_sdk_elasticloadbalancingv2::types::Tag::builder()
        .key(crate::TAG_KEY)
        .value(deployment)
        .build()
}

/// Removes the listener, load balancer and target group (in that order: a target group in use
/// cannot go).
pub async fn delete_load_balancer(
    elb: &Elb,
    name: &str,
    plan: &mut Plan,
) -> Result<(), DeployError> {
    let balancers = load_balancers(elb, name).await?;
    if balancers.is_empty() {
        plan.record("load balancer", name, Action::Absent, "");
    }
    for lb in balancers {
        let arn = lb.load_balancer_arn.unwrap_or_default();
        if !plan.dry_run {
            let listeners = elb
                .describe_listeners()
                .load_balancer_arn(&arn)
                .send()
                .await
                .map_err(|e| DeployError::aws(format!("elbv2 DescribeListeners {name}"), e))?;
            for listener in listeners.listeners.unwrap_or_default() {
                elb.delete_listener()
                    .listener_arn(listener.listener_arn.unwrap_or_default())
                    .send()
                    .await
                    .map_err(|e| DeployError::aws(format!("elbv2 DeleteListener {name}"), e))?;
            }
            elb.delete_load_balancer()
                .load_balancer_arn(&arn)
                .send()
                .await
                .map_err(|e| DeployError::aws(format!("elbv2 DeleteLoadBalancer {name}"), e))?;
        }
        plan.record("load balancer", name, Action::Delete, "and its listeners");
    }
    let groups = target_groups(elb, name).await?;
    if groups.is_empty() {
        plan.record("target group", name, Action::Absent, "");
    }
    for group in groups {
        if !plan.dry_run {
            elb.delete_target_group()
                .target_group_arn(group.target_group_arn.unwrap_or_default())
                .send()
                .await
                .map_err(|e| DeployError::aws(format!("elbv2 DeleteTargetGroup {name}"), e))?;
        }
        plan.record("target group", name, Action::Delete, "");
    }
    Ok(())
}

/// The security groups named `name` in the VPC.
async fn security_groups(
    ec2: &Ec2,
    name: &str,
    vpc_id: &str,
) -> Result<Vec<aws_sdk_ec2::types::SecurityGroup>, DeployError> {
    let output = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("group-name").values(name).build())
        .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
        .send()
        .await
        .map_err(|e| DeployError::aws(format!("ec2 DescribeSecurityGroups {name}"), e))?;
    Ok(output.security_groups.unwrap_or_default())
}

/// The load balancers named `name` (none or one).
async fn load_balancers(
    elb: &Elb,
    name: &str,
) -> Result<Vec<aws_sdk_elasticloadbalancingv2::types::LoadBalancer>, DeployError> {
    match elb.describe_load_balancers().names(name).send().await {
        Ok(output) => Ok(output.load_balancers.unwrap_or_default()),
        Err(error) if code(&error) == Some("LoadBalancerNotFound") => Ok(Vec::new()),
        Err(error) => Err(DeployError::aws(
            format!("elbv2 DescribeLoadBalancers {name}"),
            error,
        )),
    }
}

/// The target groups named `name` (none or one).
async fn target_groups(
    elb: &Elb,
    name: &str,
) -> Result<Vec<aws_sdk_elasticloadbalancingv2::types::TargetGroup>, DeployError> {
    match elb.describe_target_groups().names(name).send().await {
        Ok(output) => Ok(output.target_groups.unwrap_or_default()),
        Err(error) if code(&error) == Some("TargetGroupNotFound") => Ok(Vec::new()),
        Err(error) => Err(DeployError::aws(
            format!("elbv2 DescribeTargetGroups {name}"),
            error,
        )),
    }
}

/// Removes a security group deploy made, if it is there.
pub async fn delete_security_group(
    ec2: &Ec2,
    name: &str,
    vpc_id: &str,
    plan: &mut Plan,
) -> Result<(), DeployError> {
    let groups = security_groups(ec2, name, vpc_id).await?;
    if groups.is_empty() {
        plan.record("security group", name, Action::Absent, "");
    }
    for group in groups {
        if !plan.dry_run {
            let id = group.group_id.unwrap_or_default();
            // The network interfaces of stopped tasks and of the deleted load balancer hold
            // the group for a minute or two after they go.
            let mut attempt = 0;
            loop {
                match ec2.delete_security_group().group_id(&id).send().await {
                    Ok(_) => break,
                    Err(error) if code(&error) == Some("DependencyViolation") && attempt < 36 => {
                        attempt += 1;
                        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    }
                    Err(error) => {
                        return Err(DeployError::aws(
                            format!("ec2 DeleteSecurityGroup {name}"),
                            error,
                        ));
                    }
                }
            }
        }
        plan.record("security group", name, Action::Delete, "");
    }
    Ok(())
}
