//! `ragway deploy` and `ragway deploy destroy`: the command line over `ragway-deploy`. Without
//! `--yes`, the plan is printed first (read-only calls) and a person confirms it.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ragway_core::config::Config;
use ragway_deploy::{DeployOptions, Plan};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct DeployArgs {
    #[command(subcommand)]
    action: Option<DeployAction>,

    /// Deployment name: prefixes every resource deploy makes (ECR, IAM, ECS, load balancer).
    #[arg(long, short, required = true)]
    name: Option<String>,
    /// AWS region; else deploy.region in the config, else the standard chain (AWS_REGION).
    #[arg(long)]
    region: Option<String>,
    /// Fargate CPU units (256 … 16384); overrides deploy.cpu.
    #[arg(long)]
    cpu: Option<u32>,
    /// Task memory in MiB; overrides deploy.memory.
    #[arg(long)]
    memory: Option<u32>,
    /// Tasks to keep running; overrides deploy.desired_count.
    #[arg(long)]
    desired_count: Option<u32>,
    /// Push the image to this registry (host:port; http://host:port for plain HTTP) instead of
    /// ECR's own endpoint — a mirror, or a local registry. ECR still records the image.
    #[arg(long)]
    registry: Option<String>,
    /// Image tag; by default a hash of everything in the image, so unchanged inputs reuse the
    /// registered image.
    #[arg(long)]
    tag: Option<String>,
    /// How to make the image: `docker` (build the Dockerfile in --context and push), `oci`
    /// (assemble it from the binary, its libraries, the models and the config; no daemon), or
    /// `auto`: docker when its daemon answers.
    #[arg(long, value_enum, default_value_t = BuilderArg::Auto)]
    builder: BuilderArg,
    /// The folder with the Dockerfile, for --builder docker.
    #[arg(long, default_value = ".")]
    context: PathBuf,
    /// Build and push the image even if ECR already has its tag.
    #[arg(long)]
    rebuild: bool,
    /// Deploy a configuration without API keys: the service answers anyone who reaches its
    /// load balancer. Only when something in front of it decides who may call it.
    #[arg(long)]
    insecure_no_auth: bool,
    /// Listen on plain HTTP (port 80) without a certificate, when something in front of the
    /// load balancer speaks TLS for it; without it, deploy wants `[deploy] certificate_arn`.
    #[arg(long)]
    plain_http: bool,
    /// Print what would be created, updated or reused, changing nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation (CI, scripts).
    #[arg(long, short)]
    yes: bool,
    /// The ragway binary to put in the image; this one by default (build with --release).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Seconds to wait for the service to become stable.
    #[arg(long, default_value_t = 900)]
    wait_secs: u64,
    /// Milliseconds between looks at the service while waiting.
    #[arg(long, default_value_t = 5000, hide = true)]
    poll_ms: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BuilderArg {
    Auto,
    Docker,
    Oci,
}

#[derive(Subcommand)]
enum DeployAction {
    /// Remove what deploy made (autoscaling, service, cluster, load balancer, target group,
    /// security groups, roles, log group); ECR images stay unless --purge-images.
    Destroy {
        #[arg(long, short)]
        name: String,
        #[arg(long)]
        region: Option<String>,
        /// Also delete the ECR repository and every image in it.
        #[arg(long)]
        purge_images: bool,
        #[arg(long)]
        dry_run: bool,
        #[arg(long, short)]
        yes: bool,
    },
}

pub async fn run(config: &Config, config_path: &Path, args: DeployArgs) -> Result<ExitCode> {
    if let Some(DeployAction::Destroy {
        name,
        region,
        purge_images,
        dry_run,
        yes,
    }) = args.action
    {
        let region = region.or_else(|| config.deploy.region.clone());
        if !dry_run && !yes {
            let plan = ragway_deploy::destroy(
                &name,
                region.clone(),
                &config.deploy,
                purge_images,
                true,
                false,
            )
            .await?;
            confirm(&plan, &format!("Remove deployment {name}?"))?;
        }
        let plan =
            ragway_deploy::destroy(&name, region, &config.deploy, purge_images, dry_run, true)
                .await?;
        println!(
            "{} resource(s) {}",
            plan.changes(),
            if dry_run {
                "would be removed"
            } else {
                "removed"
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let binary = match args.binary {
        Some(path) => path,
        None => std::env::current_exe()
            .context("cannot find the running ragway binary; pass --binary")?,
    };
    let mut options = DeployOptions {
        config: config.clone(),
        config_path: config_path.to_path_buf(),
        name: args.name.unwrap_or_default(),
        region: args.region,
        cpu: args.cpu,
        memory: args.memory,
        desired_count: args.desired_count,
        registry: args.registry,
        rebuild: args.rebuild,
        insecure_no_auth: args.insecure_no_auth,
        plain_http: args.plain_http,
        dry_run: true,
        binary,
        tag: args.tag,
        builder: match args.builder {
            BuilderArg::Auto => ragway_deploy::Builder::Auto,
            BuilderArg::Docker => ragway_deploy::Builder::Docker,
            BuilderArg::Oci => ragway_deploy::Builder::Oci,
        },
        context: args.context,
        wait: Duration::from_secs(args.wait_secs),
        poll: Duration::from_millis(args.poll_ms.max(10)),
        verbose: false,
    };
    if !args.dry_run && !args.yes {
        let outcome = ragway_deploy::deploy(&options).await?;
        confirm(&outcome.plan, &format!("Deploy {}?", options.name))?;
    }
    options.dry_run = args.dry_run;
    options.verbose = true;
    let outcome = ragway_deploy::deploy(&options).await?;
    let changes = outcome.plan.changes();
    if args.dry_run {
        println!("dry run: {changes} change(s) planned, nothing changed");
    } else if changes == 0 {
        println!("nothing changed: everything was already deployed as configured");
    } else {
        println!("{changes} change(s) made");
    }
    println!("image    {}", outcome.image);
    println!("url      {}", outcome.url);
    Ok(ExitCode::SUCCESS)
}

/// Shows the plan and asks; refuses without a terminal to ask on.
fn confirm(plan: &Plan, question: &str) -> Result<()> {
    print!("{plan}");
    if plan.changes() == 0 {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "not a terminal, so nobody can confirm: pass --yes to go ahead, or --dry-run to only look"
        );
    }
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        bail!("cancelled: nothing changed")
    }
}
