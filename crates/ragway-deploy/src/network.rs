//! Where the tasks run and how traffic reaches them: the VPC and subnets (the default VPC
//! unless the config names them), two security groups (the load balancer's, open on port 80;
//! the tasks', open only to the load balancer), and the ALB with its `ip` target group
//! (health check `/healthz`, deregistration delay 10 s) and HTTP listener.

use aws_sdk_ec2::Client as Ec2;
use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, UserIdGroupPair};
use aws_sdk_elasticloadbalancingv2::Client as Elb;
use aws_sdk_elasticloadbalancingv2::types::{
    Action as ListenerAction, ActionTypeEnum, IpAddressType, LoadBalancerSchemeEnum,
    LoadBalancerTypeEnum, Matcher, ProtocolEnum, TargetGroupAttribute, TargetTypeEnum,
};
use ragway_core::deploy::DeployConfig;

use crate::error::{DeployError, code};
use crate::plan::{Action, Plan};

/// The port the load balancer listens on.
pub const LISTENER_PORT: i32 = 80;
/// Seconds the target group waits for in-flight requests of a deregistered task.
pub const DEREGISTRATION_DELAY: &str = "10";

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

/// Makes sure a security group named `name` exists in the VPC and allows `port` from `source`
/// (a CIDR, or another group's id when it starts with `sg-`). Returns its id.
pub async fn ensure_security_group(
    ec2: &Ec2,
    name: &str,
    vpc_id: &str,
    port: i32,
    source: &str,
    plan: &mut Plan,
) -> Result<String, DeployError> {
    let existing = security_groups(ec2, name, vpc_id).await?.into_iter().next();
    let (id, created) = match existing {
        Some(group) => {
            let allowed = group.ip_permissions().iter().any(|p| {
                p.from_port == Some(port)
                    && p.to_port == Some(port)
                    && (p
                        .ip_ranges()
                        .iter()
                        .any(|r| r.cidr_ip.as_deref() == Some(source))
                        || p.user_id_group_pairs()
                            .iter()
                            .any(|g| g.group_id.as_deref() == Some(source)))
            });
            let id = group.group_id.unwrap_or_default();
            if allowed {
                plan.record("security group", name, Action::Reuse, id.clone());
                return Ok(id);
            }
            (id, false)
        }
        None if plan.dry_run => {
            plan.record(
                "security group",
                name,
                Action::Create,
                format!("port {port} from {source}"),
            );
            return Ok(format!("<{name}>"));
        }
        None => {
            let created = ec2
                .create_security_group()
                .group_name(name)
                .description(format!("ragway {name}: port {port} from {source}"))
                .vpc_id(vpc_id)
                .send()
                .await
                .map_err(|e| DeployError::aws(format!("ec2 CreateSecurityGroup {name}"), e))?;
            (created.group_id.unwrap_or_default(), true)
        }
    };
    if !plan.dry_run {
        let permission = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(port)
            .to_port(port);
        let permission = if source.starts_with("sg-") {
            permission.user_id_group_pairs(UserIdGroupPair::builder().group_id(source).build())
        } else {
            permission.ip_ranges(IpRange::builder().cidr_ip(source).build())
        };
        ec2.authorize_security_group_ingress()
            .group_id(&id)
            .ip_permissions(permission.build())
            .send()
            .await
            .map_err(|e| {
                DeployError::aws(format!("ec2 AuthorizeSecurityGroupIngress {name}"), e)
            })?;
    }
    let action = if created {
        Action::Create
    } else {
        Action::Update
    };
    plan.record(
        "security group",
        name,
        action,
        format!("port {port} from {source}"),
    );
    Ok(id)
}

/// The load balancer: its ARN and public DNS name.
#[derive(Clone, Debug)]
pub struct LoadBalancer {
    pub arn: String,
    pub dns_name: String,
    pub target_group_arn: String,
}

/// Makes sure the ALB, its target group and its listener exist as wanted.
pub async fn ensure_load_balancer(
    elb: &Elb,
    name: &str,
    network: &Network,
    alb_group: &str,
    port: u16,
    plan: &mut Plan,
) -> Result<LoadBalancer, DeployError> {
    // The load balancer.
    let found = load_balancers(elb, name).await?.into_iter().next();
    let (arn, dns_name) = match found {
        Some(lb) => {
            plan.record(
                "load balancer",
                name,
                Action::Reuse,
                lb.dns_name.clone().unwrap_or_default(),
            );
            (
                lb.load_balancer_arn.unwrap_or_default(),
                lb.dns_name.unwrap_or_default(),
            )
        }
        None if plan.dry_run => {
            plan.record("load balancer", name, Action::Create, "internet-facing ALB");
            (String::new(), format!("<{name}>.elb.amazonaws.com"))
        }
        None => {
            let output = elb
                .create_load_balancer()
                .name(name)
                .set_subnets(Some(network.subnets.clone()))
                .security_groups(alb_group)
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
            let dns = lb.dns_name.unwrap_or_default();
            plan.record("load balancer", name, Action::Create, dns.clone());
            (lb.load_balancer_arn.unwrap_or_default(), dns)
        }
    };

    // The target group.
    let found = target_groups(elb, name).await?.into_iter().next();
    let (target_group_arn, created) = match found {
        Some(group) => (group.target_group_arn.unwrap_or_default(), false),
        None if plan.dry_run => {
            plan.record(
                "target group",
                name,
                Action::Create,
                format!("ip targets on port {port}, health /healthz"),
            );
            plan.record(
                "listener",
                format!("{name}:{LISTENER_PORT}"),
                Action::Create,
                "forward to the target group",
            );
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
                .port(i32::from(port))
                .vpc_id(&network.vpc_id)
                .target_type(TargetTypeEnum::Ip)
                .health_check_protocol(ProtocolEnum::Http)
                .health_check_path("/healthz")
                .health_check_interval_seconds(15)
                .healthy_threshold_count(2)
                .matcher(Matcher::builder().http_code("200").build())
                .tags(elb_tag(name))
                .send()
                .await
                .map_err(|e| DeployError::aws(format!("elbv2 CreateTargetGroup {name}"), e))?;
            let group = output.target_groups.unwrap_or_default().into_iter().next();
            (
                group.and_then(|g| g.target_group_arn).unwrap_or_default(),
                true,
            )
        }
    };
    let attributes = elb
        .describe_target_group_attributes()
        .target_group_arn(&target_group_arn)
        .send()
        .await
        .map_err(|e| DeployError::aws(format!("elbv2 DescribeTargetGroupAttributes {name}"), e))?;
    let delay_ok = attributes.attributes().iter().any(|a| {
        a.key.as_deref() == Some("deregistration_delay.timeout_seconds")
            && a.value.as_deref() == Some(DEREGISTRATION_DELAY)
    });
    if !delay_ok && !plan.dry_run {
        elb.modify_target_group_attributes()
            .target_group_arn(&target_group_arn)
            .attributes(
                TargetGroupAttribute::builder()
                    .key("deregistration_delay.timeout_seconds")
                    .value(DEREGISTRATION_DELAY)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                DeployError::aws(format!("elbv2 ModifyTargetGroupAttributes {name}"), e)
            })?;
    }
    let action = match (created, delay_ok) {
        (true, _) => Action::Create,
        (false, true) => Action::Reuse,
        (false, false) => Action::Update,
    };
    plan.record(
        "target group",
        name,
        action,
        "deregistration delay 10 s, health /healthz",
    );

    // The listener.
    if arn.is_empty() {
        plan.record(
            "listener",
            format!("{name}:{LISTENER_PORT}"),
            Action::Create,
            "forward to the target group",
        );
        return Ok(LoadBalancer {
            arn,
            dns_name,
            target_group_arn,
        });
    }
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(&arn)
        .send()
        .await
        .map_err(|e| DeployError::aws(format!("elbv2 DescribeListeners {name}"), e))?;
    let listener = listeners
        .listeners
        .unwrap_or_default()
        .into_iter()
        .find(|l| l.port == Some(LISTENER_PORT));
    let forward = ListenerAction::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(&target_group_arn)
        .build();
    match listener {
        Some(listener)
            if listener
                .default_actions()
                .iter()
                .any(|a| a.target_group_arn.as_deref() == Some(target_group_arn.as_str())) =>
        {
            plan.record(
                "listener",
                format!("{name}:{LISTENER_PORT}"),
                Action::Reuse,
                "",
            );
        }
        Some(listener) => {
            if !plan.dry_run {
                elb.modify_listener()
                    .listener_arn(listener.listener_arn.unwrap_or_default())
                    .default_actions(forward)
                    .send()
                    .await
                    .map_err(|e| DeployError::aws(format!("elbv2 ModifyListener {name}"), e))?;
            }
            plan.record(
                "listener",
                format!("{name}:{LISTENER_PORT}"),
                Action::Update,
                "forward to the target group",
            );
        }
        None => {
            if !plan.dry_run {
                elb.create_listener()
                    .load_balancer_arn(&arn)
                    .protocol(ProtocolEnum::Http)
                    .port(LISTENER_PORT)
                    .default_actions(forward)
                    .send()
                    .await
                    .map_err(|e| DeployError::aws(format!("elbv2 CreateListener {name}"), e))?;
            }
            plan.record(
                "listener",
                format!("{name}:{LISTENER_PORT}"),
                Action::Create,
                "forward to the target group",
            );
        }
    }
    Ok(LoadBalancer {
        arn,
        dns_name,
        target_group_arn,
    })
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
