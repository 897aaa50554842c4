//! `ragway deploy`: one idempotent command that runs a ragway configuration on AWS.
//!
//! In order: the ECR repository (created if missing); the image, by a tag that hashes its
//! inputs — if ECR already has that tag, it is reused and nothing is built or pushed, else it
//! is assembled without a Docker daemon (`ragway-image`) and pushed; the IAM roles; the log
//! group; the network (default VPC unless given), security groups and the ALB with its
//! listeners (HTTPS with the config's certificate, port 80 redirecting to it; plain HTTP only
//! when asked for); the ECS cluster, a task definition (a new revision only when something
//! changed) and the service; its autoscaling; then a wait until the new deployment is primary
//! and healthy. Every step is recorded in a [`Plan`]; `--dry-run` makes the same decisions with
//! read-only calls and prints them.
//!
//! Before any call, the config is held to what a service on the internet needs: API keys,
//! HTTPS (or an explicit `--plain-http`), every `env::` secret from `[deploy.secrets]`, and
//! timeouts the load balancer and ECS agree with.
//!
//! Every resource is named after the deployment name `N`: repository, cluster, service,
//! task family and load balancer `N`; roles `N-execution` and `N-task`; security groups
//! `N-alb` and `N-tasks`; log group `/ecs/N`; scaling policy `N-target-tracking`.

pub mod autoscaling;
pub mod docker;
pub mod ecr;
pub mod ecs;
pub mod error;
pub mod iam;
pub mod image;
pub mod listeners;
pub mod network;
pub mod plan;

use std::path::PathBuf;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials as _;
use aws_types::SdkConfig;
use aws_types::region::Region;
use ragway_core::config::Config;
use ragway_core::deploy::{DeployConfig, fargate_size};
use ragway_core::{EnvKind, EnvReference};

pub use error::DeployError;
pub use listeners::Listening;
pub use plan::{Action, Plan, Step};

/// The tag deploy puts on what it creates, with the deployment name as its value.
pub const TAG_KEY: &str = "ragway:deployment";

/// How the image is made when it is not registered yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builder {
    /// Docker when its daemon answers, else the daemonless OCI assembly.
    Auto,
    /// `docker build` of the Dockerfile in `context`, then `docker push`.
    Docker,
    /// The image assembled from the binary, its libraries, the models and the config.
    Oci,
}

/// What to deploy and how; the CLI fills it from its flags.
#[derive(Clone, Debug)]
pub struct DeployOptions {
    pub config: Config,
    /// The config file, copied into the image.
    pub config_path: PathBuf,
    /// The deployment name: every resource's name starts with it.
    pub name: String,
    pub region: Option<String>,
    pub cpu: Option<u32>,
    pub memory: Option<u32>,
    pub desired_count: Option<u32>,
    /// Push to this registry (`host:port`, `http://host:port` for plain HTTP) instead of ECR's
    /// own endpoint; ECR still records the manifest.
    pub registry: Option<String>,
    /// Build and push even when ECR has the tag.
    pub rebuild: bool,
    pub dry_run: bool,
    /// The ragway binary to put in the image (the running one by default).
    pub binary: PathBuf,
    /// The image tag; a hash of the image's inputs when absent.
    pub tag: Option<String>,
    pub builder: Builder,
    /// The folder holding the Dockerfile (the Docker path only).
    pub context: PathBuf,
    /// How long to wait for the service to become stable.
    pub wait: Duration,
    /// How often to look while waiting.
    pub poll: Duration,
    /// Print each step as it happens.
    pub verbose: bool,
    /// Run the service without API keys (something else must decide who may call it).
    pub insecure_no_auth: bool,
    /// Listen on plain HTTP without a certificate (something in front speaks TLS for it).
    pub plain_http: bool,
}

/// The service faces the internet through its load balancer, so it needs API keys. Without
/// keys, only `--insecure-no-auth` lets it run, and the task is told so.
fn check_access(
    config: &Config,
    settings: &mut DeployConfig,
    insecure_no_auth: bool,
) -> Result<(), DeployError> {
    if config.server.auth.is_enabled() {
        return Ok(());
    }
    if !insecure_no_auth {
        return Err(DeployError::Invalid(
            "the service would answer anyone who reaches its load balancer: configure API \
             keys in [server.auth] (as `env::` references listed in [deploy.secrets], as \
             sha256 hashes, or a keys_file), or pass --insecure-no-auth if something in \
             front of it decides who may call it"
                .into(),
        ));
    }
    settings
        .environment
        .insert("RAGWAY_INSECURE_NO_AUTH".into(), "true".into());
    Ok(())
}

/// The task has no environment but the one its definition gives, so every `env::` the config
/// reads must be in it: a secret (an API key, a DSN, a Redis URL) from `[deploy.secrets]` —
/// in `[deploy.environment]` it would sit in plain text in the task definition, readable by
/// anyone who may describe it — and a plain setting (a Kendra index id) from either.
fn check_env(references: &[EnvReference], settings: &DeployConfig) -> Result<(), DeployError> {
    let mut problems = Vec::new();
    for reference in references {
        let (path, var) = (&reference.path, &reference.var);
        let in_secrets = settings.secrets.contains_key(var);
        let in_environment = settings.environment.contains_key(var);
        match reference.kind {
            EnvKind::Secret if in_environment => problems.push(format!(
                "{path} is a secret (env::{var}), but {var} is in [deploy.environment], which \
                 the task definition shows in plain text: remove it there and add `{var} = \
                 \"<ARN of a Secrets Manager secret or SSM SecureString parameter>\"` to \
                 [deploy.secrets]"
            )),
            EnvKind::Secret if !in_secrets => problems.push(format!(
                "{path} reads {var}, which the task would not have: add `{var} = \"<ARN of a \
                 Secrets Manager secret or SSM SecureString parameter>\"` to [deploy.secrets]"
            )),
            EnvKind::Setting if !in_secrets && !in_environment => problems.push(format!(
                "{path} reads {var}, which the task would not have: add `{var} = \"...\"` to \
                 [deploy.environment] (or its ARN to [deploy.secrets])"
            )),
            EnvKind::Secret | EnvKind::Setting => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(DeployError::Invalid(problems.join("; ")))
    }
}

/// How the load balancer listens. API keys, prompts and answers cross the internet, so HTTPS
/// unless plain HTTP is asked for by name.
fn listening(settings: &DeployConfig, plain_http_flag: bool) -> Result<Listening, DeployError> {
    let plain = plain_http_flag || settings.plain_http;
    match (&settings.certificate_arn, plain) {
        (Some(certificate_arn), false) => Ok(Listening::Https {
            certificate_arn: certificate_arn.clone(),
        }),
        (None, true) => Ok(Listening::PlainHttp),
        (Some(_), true) => Err(DeployError::Invalid(
            "--plain-http (or deploy.plain_http) asks for plain HTTP, but deploy.certificate_arn \
             asks for HTTPS: drop one of them"
                .into(),
        )),
        (None, false) => Err(DeployError::Invalid(
            "the load balancer would carry API keys, prompts and answers over the internet in \
             clear text: give it a TLS certificate with `certificate_arn = \
             \"arn:aws:acm:REGION:ACCOUNT:certificate/ID\"` in [deploy] (an ACM certificate in \
             the deploy's region, e.g. from `aws acm request-certificate --domain-name \
             api.example.com --validation-method DNS`), or pass --plain-http (or set \
             deploy.plain_http = true) if something in front of the load balancer speaks TLS \
             for it"
                .into(),
        )),
    }
}

/// An ALB takes only an ACM certificate of its own region (IAM server certificates are
/// global).
fn check_certificate_region(listening: &Listening, region: &str) -> Result<(), DeployError> {
    let Listening::Https { certificate_arn } = listening else {
        return Ok(());
    };
    match certificate_arn.split(':').collect::<Vec<_>>().as_slice() {
        ["arn", _, "acm", certificate_region, ..] if *certificate_region != region => {
            Err(DeployError::Invalid(format!(
                "deploy.certificate_arn is an ACM certificate of {certificate_region}, but the \
                 deployment runs in {region}, and a load balancer takes only a certificate of \
                 its own region: request or import one in {region}"
            )))
        }
        _ => Ok(()),
    }
}

/// The ALB closes a connection silent for longer than its idle timeout (1 to 4000 s).
const MAX_IDLE_TIMEOUT_SECS: u32 = 4000;
/// Seconds the ALB waits beyond the server's request timeout, so that a request that runs out
/// ends with ragway's own 504 (or a stream's error event), not with the ALB cutting it.
const IDLE_TIMEOUT_MARGIN_SECS: u32 = 5;

/// What the load balancer's and ECS's timers must be for this server: the ALB's idle timeout
/// and the target group's deregistration delay. Refuses settings that would cut requests the
/// server means to finish.
fn timings(config: &Config, settings: &DeployConfig) -> Result<(u32, u32), DeployError> {
    let mut problems = Vec::new();
    let request_timeout = config.server.limits.request_timeout_secs;
    // Validated to be within (0, 86400]: the conversion is exact enough and cannot overflow.
    let idle = (request_timeout.ceil() as u32).saturating_add(IDLE_TIMEOUT_MARGIN_SECS);
    if idle > MAX_IDLE_TIMEOUT_SECS {
        problems.push(format!(
            "server.limits.request_timeout_secs is {request_timeout} s, but a load balancer \
             closes a connection that is silent for {MAX_IDLE_TIMEOUT_SECS} s at most: lower it \
             to {} or less",
            MAX_IDLE_TIMEOUT_SECS - IDLE_TIMEOUT_MARGIN_SECS
        ));
    }
    let grace = config.server.shutdown_grace_secs;
    // Validated to be within [0, 3600], the deregistration delay's own range.
    let delay = grace.ceil() as u32;
    if f64::from(settings.stop_timeout_secs) <= grace {
        problems.push(format!(
            "deploy.stop_timeout_secs ({} s) must be longer than server.shutdown_grace_secs \
             ({grace} s): ECS kills the container when its stop timeout runs out, cutting the \
             requests ragway is still finishing",
            settings.stop_timeout_secs
        ));
    }
    if problems.is_empty() {
        Ok((idle, delay))
    } else {
        Err(DeployError::Invalid(problems.join("; ")))
    }
}

/// `--desired-count` must leave the count within `[deploy.autoscaling]`'s bounds (the config's
/// own `desired_count` was checked with it).
fn check_count(settings: &DeployConfig) -> Result<(), DeployError> {
    match &settings.autoscaling {
        Some(scaling) if !(scaling.min..=scaling.max).contains(&settings.desired_count) => {
            Err(DeployError::Invalid(format!(
                "--desired-count {} is outside [deploy.autoscaling] min and max ({} to {})",
                settings.desired_count, scaling.min, scaling.max
            )))
        }
        _ => Ok(()),
    }
}

/// What a deploy did.
#[derive(Debug)]
pub struct Outcome {
    pub plan: Plan,
    /// `https://` (`http://` with plain HTTP) + the load balancer's DNS name.
    pub url: String,
    /// The image the task definition runs, by digest.
    pub image: String,
    /// Blobs pushed and skipped, when an image was pushed.
    pub push: Option<ragway_image::PushReport>,
}

/// Checks a deployment name: it becomes part of ECR, IAM, ELB and ECS names, whose rules are
/// narrowest for load balancers (32 characters, letters, digits and hyphens).
pub fn check_name(name: &str) -> Result<(), DeployError> {
    let valid = !name.is_empty()
        && name.len() <= 24
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(DeployError::Invalid(format!(
            "deployment name \"{name}\": use 1 to 24 lowercase letters, digits and single \
             hyphens, starting with a letter (it prefixes ECR, IAM, ECS and load balancer names)"
        )))
    }
}

/// The AWS clients deploy uses, all from one configuration (standard credential chain,
/// `AWS_ENDPOINT_URL` honoured).
pub struct Clients {
    pub region: String,
    pub ecr: aws_sdk_ecr::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub iam: aws_sdk_iam::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub scaling: aws_sdk_applicationautoscaling::Client,
}

impl Clients {
    /// Loads the AWS configuration and checks that a region and credentials exist before any
    /// call is made.
    pub async fn load(region: Option<String>) -> Result<Self, DeployError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = region {
            loader = loader.region(Region::new(region));
        }
        let config: SdkConfig = loader.load().await;
        config.region().ok_or_else(|| {
            DeployError::Setup(
                "no AWS region: pass --region, set deploy.region in the config, or set AWS_REGION"
                    .into(),
            )
        })?;
        let provider = config.credentials_provider().ok_or_else(|| {
            DeployError::Setup("no AWS credentials provider is configured".into())
        })?;
        provider.provide_credentials().await.map_err(|e| {
            DeployError::Setup(format!(
                "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
                 AWS_PROFILE, or run where a role is available ({e})"
            ))
        })?;
        Self::new(&config)
    }

    /// Clients from an SDK configuration that has a region.
    pub fn new(config: &SdkConfig) -> Result<Self, DeployError> {
        let region = config
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| DeployError::Setup("no AWS region".into()))?;
        Ok(Self {
            region,
            ecr: aws_sdk_ecr::Client::new(config),
            ecs: aws_sdk_ecs::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(config),
            ec2: aws_sdk_ec2::Client::new(config),
            logs: aws_sdk_cloudwatchlogs::Client::new(config),
            scaling: aws_sdk_applicationautoscaling::Client::new(config),
        })
    }
}

/// Names of everything a deployment makes.
pub struct Names {
    pub base: String,
    pub execution_role: String,
    pub task_role: String,
    pub alb_group: String,
    pub task_group: String,
    pub log_group: String,
}

impl Names {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            execution_role: format!("{base}-execution"),
            task_role: format!("{base}-task"),
            alb_group: format!("{base}-alb"),
            task_group: format!("{base}-tasks"),
            log_group: format!("/ecs/{base}"),
        }
    }
}

/// Deploys (or, with `dry_run`, plans) `options`. Rerunning after a failure picks up where it
/// stopped: every step first looks at what exists.
pub async fn deploy(options: &DeployOptions) -> Result<Outcome, DeployError> {
    check_name(&options.name)?;
    let mut settings = options.config.deploy.clone();
    if let Some(cpu) = options.cpu {
        settings.cpu = cpu;
    }
    if let Some(memory) = options.memory {
        settings.memory = memory;
    }
    if let Some(count) = options.desired_count {
        settings.desired_count = count;
    }
    fargate_size(settings.cpu, settings.memory)
        .map_err(|why| DeployError::Invalid(format!("--cpu/--memory: {why}")))?;
    check_count(&settings)?;
    let listening = listening(&settings, options.plain_http)?;
    check_access(&options.config, &mut settings, options.insecure_no_auth)?;
    check_env(&options.config.env_references(), &settings)?;
    let (idle_timeout_secs, deregistration_delay_secs) = timings(&options.config, &settings)?;
    let image_spec = image::spec(
        &options.config,
        &options.config_path,
        &options.binary,
        settings.port,
    )?;

    let clients = Clients::load(options.region.clone().or_else(|| settings.region.clone())).await?;
    check_certificate_region(&listening, &clients.region)?;
    let names = Names::new(&options.name);
    let mut plan = Plan::new(options.dry_run, options.verbose);

    // The image.
    let (ecr_host, user, password) = ecr::push_credentials(&clients.ecr).await?;
    let account = ecr_host.split('.').next().unwrap_or_default().to_owned();
    let repository = ecr::ensure_repository(
        &clients.ecr,
        &names.base,
        settings.tag_immutability,
        &mut plan,
    )
    .await?;
    let tag = match &options.tag {
        Some(tag) => tag.clone(),
        None => image::content_tag(&image_spec)?,
    };
    let registered = ecr::image_digest(&clients.ecr, &repository, &tag).await?;
    let mut push = None;
    let digest = match registered {
        Some(digest) if !options.rebuild => {
            plan.record(
                "image",
                format!("{}:{tag}", names.base),
                Action::Reuse,
                format!("already registered, {digest}"),
            );
            digest
        }
        _ if options.dry_run => {
            plan.record(
                "image",
                format!("{}:{tag}", names.base),
                Action::Create,
                "build and push",
            );
            "sha256:<new>".to_owned()
        }
        _ if use_docker(options.builder).await => {
            // The Docker path: the registry holds the image; ECR's own registry records it
            // by itself (with --registry, the mirror alone has it).
            let (host, auth) = match &options.registry {
                Some(registry) => (registry_host(registry), None),
                None => (ecr_host.clone(), Some((user.as_str(), password.as_str()))),
            };
            let reference = format!("{host}/{}:{tag}", names.base);
            let digest = docker::build_and_push(&options.context, &reference, &host, auth).await?;
            plan.record(
                "image",
                format!("{}:{tag}", names.base),
                Action::Create,
                format!("docker build and push, {digest}"),
            );
            digest
        }
        _ => {
            let work = tempfile::tempdir()
                .map_err(|e| DeployError::Image(format!("cannot make a work folder: {e}")))?;
            let built = ragway_image::build(&image_spec, work.path())
                .map_err(|e| DeployError::Image(e.to_string()))?;
            let target = match &options.registry {
                Some(registry) => {
                    let insecure = registry.starts_with("http://");
                    ragway_image::Target {
                        registry: registry_host(registry),
                        repository: names.base.clone(),
                        tag: tag.clone(),
                        auth: None,
                        insecure,
                    }
                }
                None => ragway_image::Target {
                    registry: ecr_host.clone(),
                    repository: names.base.clone(),
                    tag: tag.clone(),
                    auth: Some((user.clone(), password.clone())),
                    insecure: false,
                },
            };
            let report = ragway_image::push(&built, &target)
                .await
                .map_err(|e| DeployError::Image(e.to_string()))?;
            if options.registry.is_some() {
                ecr::register_manifest(
                    &clients.ecr,
                    &repository,
                    &tag,
                    &built.manifest,
                    ragway_image::MANIFEST_MEDIA_TYPE,
                    &report.digest,
                )
                .await?;
            }
            plan.record(
                "image",
                format!("{}:{tag}", names.base),
                Action::Create,
                format!(
                    "{} pushed ({} bytes), {} already there, {}",
                    report.blobs_pushed, report.bytes_pushed, report.blobs_skipped, report.digest
                ),
            );
            let digest = report.digest.clone();
            push = Some(report);
            digest
        }
    };
    let image_ref = format!("{}@{digest}", repository.uri);

    // Who the task is.
    let execution_policy = iam::secrets_policy(
        &settings
            .secrets
            .values()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let execution_role_arn = iam::ensure_role(
        &clients.iam,
        &iam::RoleSpec {
            name: &names.execution_role,
            managed: &[iam::EXECUTION_MANAGED_POLICY],
            inline: execution_policy,
        },
        &names.base,
        &mut plan,
    )
    .await?;
    let task_policy = iam::task_policy(&options.config, &clients.region, &account)?;
    let task_role_arn = iam::ensure_role(
        &clients.iam,
        &iam::RoleSpec {
            name: &names.task_role,
            managed: &[],
            inline: task_policy,
        },
        &names.base,
        &mut plan,
    )
    .await?;
    ecs::ensure_log_group(
        &clients.logs,
        &names.log_group,
        settings.log_retention_days,
        &mut plan,
    )
    .await?;

    // Where it runs and how traffic reaches it.
    let network = network::network(&clients.ec2, &settings).await?;
    let alb_group = network::ensure_security_group(
        &clients.ec2,
        &names.alb_group,
        &network.vpc_id,
        listening.ports(),
        "0.0.0.0/0",
        &mut plan,
    )
    .await?;
    let task_group = network::ensure_security_group(
        &clients.ec2,
        &names.task_group,
        &network.vpc_id,
        &[i32::from(settings.port)],
        &alb_group,
        &mut plan,
    )
    .await?;
    let balancer = network::ensure_load_balancer(
        &clients.elb,
        &network::BalancerSpec {
            name: &names.base,
            network: &network,
            alb_group: &alb_group,
            port: settings.port,
            idle_timeout_secs,
            deregistration_delay_secs,
        },
        &mut plan,
    )
    .await?;
    listeners::ensure_listeners(
        &clients.elb,
        &names.base,
        &balancer.arn,
        &balancer.target_group_arn,
        &listening,
        &mut plan,
    )
    .await?;

    // The service.
    ecs::ensure_cluster(&clients.ecs, &names.base, &mut plan).await?;
    let current = ecs::current_service(&clients.ecs, &names.base, &names.base).await?;
    let task_spec = ecs::TaskSpec {
        family: &names.base,
        image: &image_ref,
        region: &clients.region,
        log_group: &names.log_group,
        execution_role_arn: &execution_role_arn,
        task_role_arn: &task_role_arn,
        deploy: &settings,
    };
    let task_definition = ecs::ensure_task_definition(
        &clients.ecs,
        &task_spec,
        current.as_ref().and_then(|s| s.task_definition.as_deref()),
        &mut plan,
    )
    .await?;
    let service_spec = ecs::ServiceSpec {
        cluster: &names.base,
        name: &names.base,
        task_definition: &task_definition,
        desired_count: settings.desired_count,
        subnets: &network.subnets,
        task_group: &task_group,
        target_group_arn: &balancer.target_group_arn,
        port: settings.port,
        scaling: settings.autoscaling.as_ref().map(|a| (a.min, a.max)),
    };
    ecs::ensure_service(&clients.ecs, &service_spec, current.as_ref(), &mut plan).await?;
    autoscaling::ensure_autoscaling(
        &clients.scaling,
        &names.base,
        &names.base,
        settings.autoscaling.as_ref(),
        autoscaling::resource_label(&balancer.arn, &balancer.target_group_arn).as_deref(),
        &mut plan,
    )
    .await?;
    if !options.dry_run {
        ecs::wait_until_stable(
            &clients.ecs,
            &names.base,
            &names.base,
            &task_definition,
            options.wait,
            options.poll,
        )
        .await?;
    }
    Ok(Outcome {
        plan,
        url: format!("{}://{}", listening.scheme(), balancer.dns_name),
        image: image_ref,
        push,
    })
}

/// Whether this run builds with Docker.
async fn use_docker(builder: Builder) -> bool {
    match builder {
        Builder::Docker => true,
        Builder::Oci => false,
        Builder::Auto => docker::daemon_answers().await,
    }
}

/// `host:port` of a `--registry` value given with or without a scheme.
fn registry_host(registry: &str) -> String {
    registry
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned()
}

/// Removes what deploy made for `name` with `deploy` (for its VPC): the service's autoscaling,
/// the service and cluster, the load balancer with its listeners and target group, the
/// security groups, the roles and the log group. The ECR repository and its images stay unless
/// `purge_images`.
pub async fn destroy(
    name: &str,
    region: Option<String>,
    deploy: &DeployConfig,
    purge_images: bool,
    dry_run: bool,
    verbose: bool,
) -> Result<Plan, DeployError> {
    check_name(name)?;
    let clients = Clients::load(region).await?;
    let names = Names::new(name);
    let mut plan = Plan::new(dry_run, verbose);
    // The scaler first, so that it does not start tasks for a service being removed.
    autoscaling::delete_autoscaling(&clients.scaling, &names.base, &names.base, &mut plan).await?;
    ecs::delete_service(&clients.ecs, &names.base, &names.base, &mut plan).await?;
    network::delete_load_balancer(&clients.elb, &names.base, &mut plan).await?;
    // The groups live in the config's VPC (the default one unless it names another); the
    // tasks' group goes first, as it refers to the load balancer's.
    let vpc_id = network::vpc_id(&clients.ec2, deploy).await?;
    network::delete_security_group(&clients.ec2, &names.task_group, &vpc_id, &mut plan).await?;
    network::delete_security_group(&clients.ec2, &names.alb_group, &vpc_id, &mut plan).await?;
    iam::delete_role(&clients.iam, &names.task_role, &mut plan).await?;
    iam::delete_role(&clients.iam, &names.execution_role, &mut plan).await?;
    ecs::delete_log_group(&clients.logs, &names.log_group, &mut plan).await?;
    if purge_images {
        ecr::delete_repository(&clients.ecr, &names.base, &mut plan).await?;
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text, "test").unwrap()
    }

    #[test]
    fn a_service_without_keys_needs_insecure_no_auth_and_is_told_so() {
        let open = config("");
        let mut settings = open.deploy.clone();
        let refused = check_access(&open, &mut settings, false)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("--insecure-no-auth"), "{refused}");
        check_access(&open, &mut settings, true).unwrap();
        assert_eq!(settings.environment["RAGWAY_INSECURE_NO_AUTH"], "true");
    }

    #[test]
    fn env_keys_must_come_from_deploy_secrets() {
        let keyed = config(
            "[[server.auth.keys]]\nname = \"app\"\nkey = \"env::APP_KEY\"\n\
             [[server.auth.keys]]\nname = \"ops\"\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n",
        );
        let mut settings = keyed.deploy.clone();
        check_access(&keyed, &mut settings, false).unwrap();
        let refused = check_env(&keyed.env_references(), &settings)
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("server.auth.keys[0].key reads APP_KEY")
                && refused.contains("[deploy.secrets]"),
            "{refused}"
        );
        settings
            .secrets
            .insert("APP_KEY".into(), "arn:aws:secretsmanager:::secret:k".into());
        check_env(&keyed.env_references(), &settings).unwrap();
        assert!(!settings.environment.contains_key("RAGWAY_INSECURE_NO_AUTH"));
    }

    /// Every kind of `env::` field the config has today; the list comes from
    /// `Config::env_references`, so a field added there is held to the same rule.
    const EVERY_REFERENCE: &str = r#"
        [[server.auth.keys]]
        name = "app"
        key = "env::APP_KEY"
        [[llm]]
        name = "gpt"
        type = "openai"
        model = "gpt-4o"
        api_key = "env::OPENAI_API_KEY"
        [[embedder]]
        name = "small"
        type = "openai"
        model = "text-embedding-3-small"
        dimensions = 512
        api_key = "env::EMBEDDINGS_KEY"
        [[vector_store]]
        name = "kendra"
        type = "kendra"
        index_id = "env::KENDRA_INDEX_ID"
    "#;

    #[test]
    fn every_env_secret_of_the_config_is_refused_in_the_plain_environment() {
        let config = config(EVERY_REFERENCE);
        let references = config.env_references();
        // Written in the file, [deploy.environment] with a secret is a config error already;
        // a DeployConfig built in code goes through deploy's own check.
        let mut settings = DeployConfig::default();
        for var in [
            "APP_KEY",
            "OPENAI_API_KEY",
            "EMBEDDINGS_KEY",
            "KENDRA_INDEX_ID",
        ] {
            settings.environment.insert(var.into(), "the-value".into());
        }
        let refused = check_env(&references, &settings).unwrap_err().to_string();
        for (path, var) in [
            ("server.auth.keys[0].key", "APP_KEY"),
            ("llm[0].api_key", "OPENAI_API_KEY"),
            ("embedder[0].api_key", "EMBEDDINGS_KEY"),
        ] {
            assert!(
                refused.contains(&format!(
                    "{path} is a secret (env::{var}), but {var} is in [deploy.environment]"
                )) && refused.contains(&format!("add `{var} = \"<ARN of")),
                "{var}: {refused}"
            );
        }
        assert!(!refused.contains("the-value"), "{refused}");
        // The Kendra index id is a setting: the plain environment is where it belongs.
        assert!(!refused.contains("KENDRA_INDEX_ID"), "{refused}");

        // Missing altogether: a secret asks for [deploy.secrets], a setting for either.
        let refused = check_env(&references, &DeployConfig::default())
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("llm[0].api_key reads OPENAI_API_KEY, which the task would not have: add `OPENAI_API_KEY = \"<ARN"),
            "{refused}"
        );
        assert!(
            refused.contains("vector_store[0].index_id reads KENDRA_INDEX_ID, which the task would not have: add `KENDRA_INDEX_ID = \"...\"` to [deploy.environment]"),
            "{refused}"
        );

        let mut settings = DeployConfig::default();
        for var in ["APP_KEY", "OPENAI_API_KEY", "EMBEDDINGS_KEY"] {
            settings.secrets.insert(
                var.into(),
                format!("arn:aws:secretsmanager:us-east-1:1:secret:{var}"),
            );
        }
        settings
            .environment
            .insert("KENDRA_INDEX_ID".into(), "0123".into());
        check_env(&references, &settings).unwrap();
    }

    #[test]
    fn without_a_certificate_deploy_refuses_unless_plain_http_is_asked_for() {
        let mut settings = DeployConfig::default();
        let refused = listening(&settings, false).unwrap_err().to_string();
        assert!(
            refused.contains("clear text")
                && refused.contains("certificate_arn = ")
                && refused.contains("--plain-http"),
            "{refused}"
        );
        assert_eq!(listening(&settings, true).unwrap(), Listening::PlainHttp);
        settings.plain_http = true;
        assert_eq!(listening(&settings, false).unwrap(), Listening::PlainHttp);

        let certificate = "arn:aws:acm:us-east-1:123456789012:certificate/abc";
        let settings = DeployConfig {
            certificate_arn: Some(certificate.into()),
            ..DeployConfig::default()
        };
        let https = listening(&settings, false).unwrap();
        assert_eq!(
            https,
            Listening::Https {
                certificate_arn: certificate.into()
            }
        );
        let refused = listening(&settings, true).unwrap_err().to_string();
        assert!(refused.contains("drop one of them"), "{refused}");

        check_certificate_region(&https, "us-east-1").unwrap();
        let refused = check_certificate_region(&https, "eu-west-1")
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("of us-east-1") && refused.contains("in eu-west-1"),
            "{refused}"
        );
        let iam = Listening::Https {
            certificate_arn: "arn:aws:iam::123456789012:server-certificate/api".into(),
        };
        check_certificate_region(&iam, "eu-west-1").unwrap();
    }

    #[test]
    fn the_load_balancer_waits_longer_than_a_request_and_drains_longer_than_the_grace() {
        let defaults = config("");
        let (idle, delay) = timings(&defaults, &defaults.deploy).unwrap();
        // request_timeout_secs 300 + 5; shutdown_grace_secs 25.
        assert_eq!((idle, delay), (305, 25));

        let tuned = config(
            "[server]\nshutdown_grace_secs = 12.5\n[server.limits]\nrequest_timeout_secs = 59.2\n",
        );
        assert_eq!(timings(&tuned, &tuned.deploy).unwrap(), (65, 13));

        let too_long = config(
            "[server]\nshutdown_grace_secs = 45\n[server.limits]\nrequest_timeout_secs = 7200\n",
        );
        let refused = timings(&too_long, &too_long.deploy)
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("request_timeout_secs is 7200 s") && refused.contains("3995"),
            "{refused}"
        );
        assert!(
            refused.contains("deploy.stop_timeout_secs (30 s) must be longer than server.shutdown_grace_secs (45 s)"),
            "{refused}"
        );
    }

    #[test]
    fn a_desired_count_override_stays_within_the_autoscaling_bounds() {
        let scaled =
            config("[deploy]\ndesired_count = 2\n[deploy.autoscaling]\nmin = 2\nmax = 4\n");
        let mut settings = scaled.deploy.clone();
        check_count(&settings).unwrap();
        settings.desired_count = 5;
        let refused = check_count(&settings).unwrap_err().to_string();
        assert!(
            refused.contains("--desired-count 5 is outside"),
            "{refused}"
        );
    }

    #[test]
    fn deployment_names_fit_every_service() {
        for good in ["demo", "rag-prod-1", "a"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Demo",
            "1demo",
            "demo-",
            "de--mo",
            "demo_1",
            "a-very-long-deployment-name",
        ] {
            let error = check_name(bad).unwrap_err().to_string();
            assert!(error.contains("lowercase letters"), "{bad}: {error}");
        }
    }
}
