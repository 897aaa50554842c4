//! `ragway deploy`: one idempotent command that runs a ragway configuration on AWS.
//!
//! In order: the ECR repository (created if missing); the image, by a tag that hashes its
//! inputs — if ECR already has that tag, it is reused and nothing is built or pushed, else it
//! is assembled without a Docker daemon (`ragway-image`) and pushed; the IAM roles; the log
//! group; the network (default VPC unless given), security groups and the ALB; the ECS cluster,
//! a task definition (a new revision only when something changed) and the service; then a wait
//! until the new deployment is primary and healthy. Every step is recorded in a [`Plan`];
//! `--dry-run` makes the same decisions with read-only calls and prints them.
//!
//! Every resource is named after the deployment name `N`: repository, cluster, service,
//! task family and load balancer `N`; roles `N-execution` and `N-task`; security groups
//! `N-alb` and `N-tasks`; log group `/ecs/N`.

pub mod docker;
pub mod ecr;
pub mod ecs;
pub mod error;
pub mod iam;
pub mod image;
pub mod network;
pub mod plan;

use std::path::PathBuf;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials as _;
use aws_types::SdkConfig;
use aws_types::region::Region;
use ragway_core::config::Config;
use ragway_core::deploy::fargate_size;

pub use error::DeployError;
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
}

/// The service faces the internet through its load balancer, so it needs API keys, and the
/// task must be able to read them: every `env::` key must come from `[deploy] secrets` (a key
/// in the plain environment would be visible in the task definition). Without keys, only
/// `--insecure-no-auth` lets it run, and the task is told so.
fn check_access(
    config: &Config,
    settings: &mut ragway_core::deploy::DeployConfig,
    insecure_no_auth: bool,
) -> Result<(), DeployError> {
    let auth = &config.server.auth;
    if !auth.is_enabled() {
        if !insecure_no_auth {
            return Err(DeployError::Invalid(
                "the service would answer anyone who reaches its load balancer: configure API \
                 keys in [server.auth] (as `env::` references listed in [deploy] secrets, as \
                 sha256 hashes, or a keys_file), or pass --insecure-no-auth if something in \
                 front of it decides who may call it"
                    .into(),
            ));
        }
        settings
            .environment
            .insert("RAGWAY_INSECURE_NO_AUTH".into(), "true".into());
        return Ok(());
    }
    let missing: Vec<String> = auth
        .keys
        .iter()
        .enumerate()
        .filter_map(|(i, key)| {
            let var = key.key.as_ref()?.var();
            (!settings.secrets.contains_key(var)).then(|| {
                format!(
                    "server.auth.keys[{i}].key reads {var}, which the task would not have: add \
                     `{var} = \"<ARN of the secret>\"` to [deploy.secrets]"
                )
            })
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(DeployError::Invalid(missing.join("; ")))
    }
}

/// What a deploy did.
#[derive(Debug)]
pub struct Outcome {
    pub plan: Plan,
    /// `http://` + the load balancer's DNS name.
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
    check_access(&options.config, &mut settings, options.insecure_no_auth)?;
    let image_spec = image::spec(
        &options.config,
        &options.config_path,
        &options.binary,
        settings.port,
    )?;

    let clients = Clients::load(options.region.clone().or_else(|| settings.region.clone())).await?;
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
        network::LISTENER_PORT,
        "0.0.0.0/0",
        &mut plan,
    )
    .await?;
    let task_group = network::ensure_security_group(
        &clients.ec2,
        &names.task_group,
        &network.vpc_id,
        i32::from(settings.port),
        &alb_group,
        &mut plan,
    )
    .await?;
    let balancer = network::ensure_load_balancer(
        &clients.elb,
        &names.base,
        &network,
        &alb_group,
        settings.port,
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
    };
    ecs::ensure_service(&clients.ecs, &service_spec, current.as_ref(), &mut plan).await?;
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
        url: format!("http://{}", balancer.dns_name),
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

/// Removes what deploy made for `name` with `deploy` (for its VPC): the service and cluster,
/// the load balancer and target group, the security groups, the roles and the log group. The
/// ECR repository and its images stay unless `purge_images`.
pub async fn destroy(
    name: &str,
    region: Option<String>,
    deploy: &ragway_core::deploy::DeployConfig,
    purge_images: bool,
    dry_run: bool,
    verbose: bool,
) -> Result<Plan, DeployError> {
    check_name(name)?;
    let clients = Clients::load(region).await?;
    let names = Names::new(name);
    let mut plan = Plan::new(dry_run, verbose);
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
        let refused = check_access(&keyed, &mut settings, false)
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
        check_access(&keyed, &mut settings, false).unwrap();
        assert!(!settings.environment.contains_key("RAGWAY_INSECURE_NO_AUTH"));
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
