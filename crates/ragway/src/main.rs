//! The `ragway` command: serve the API, ask one question from the terminal, list models,
//! check a configuration, and probe a running server's readiness.

mod ask;
mod deploy;
mod eval;
mod healthcheck;
mod ingest;
mod telemetry;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ragway_core::config::Config;
use ragway_engine::Registry;
use ragway_server::{Gateway, Shutdown};

/// mimalloc rather than glibc's malloc: a gateway makes many small, short-lived allocations
/// on every worker thread, and glibc's arena locks cost a sixth of the CPU under load
/// (bench/streaming.sh). The C and C++ libraries (llama.cpp, FAISS) keep their own allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "ragway", version, about = "A retrieval-augmented LLM gateway")]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, short, global = true, env = "RAGWAY_CONFIG")]
    config: Option<PathBuf>,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve {
        /// Address to listen on, overriding `[server] bind` (port 0 picks a free port).
        #[arg(long, env = "RAGWAY_BIND")]
        bind: Option<SocketAddr>,
        /// Serve on an address other than loopback with no API key configured. Only for when
        /// something in front of ragway (a private network, an authenticating proxy) decides
        /// who may call it.
        #[arg(long, env = "RAGWAY_INSECURE_NO_AUTH")]
        insecure_no_auth: bool,
    },
    /// Ask one question and print the answer as it streams, then its sources.
    Ask(ask::AskArgs),
    /// Read files, folders and s3:// objects into a FAISS or pgvector store (or adopt a FAISS
    /// index, or copy a FAISS store into pgvector), committed in batches.
    Ingest(ingest::IngestArgs),
    /// Measure a store's retrieval on a labelled set in BEIR's layout (nDCG@10, Recall@10 and
    /// @100, MRR@10, MAP, search latency).
    Eval(eval::EvalArgs),
    /// List the configured models and stores.
    Models,
    /// Run this configuration on AWS: image in ECR (reused when registered), IAM roles, ECS
    /// Fargate service behind a load balancer. Idempotent; `--dry-run` shows the plan.
    Deploy(deploy::DeployArgs),
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Ask a running server whether it is ready (`GET /readyz`); exits 0 if it is, 1 if not.
    /// Made for a container's HEALTHCHECK, where there is no curl.
    Healthcheck(healthcheck::HealthcheckArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and report every error with its path; exits 1 if any.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before the async runtime: the trace exporter's HTTP client and thread are its own.
    let tracing = match &cli.command {
        Command::Serve { .. } => Some(tracing_config(cli.config.as_deref())),
        _ => None,
    };
    let telemetry = telemetry::init(cli.log_format, tracing.as_ref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    };
    // Requests cut at the end of a shutdown grace period may still hold blocking work (a
    // local model mid-token); do not wait for it past the grace period already given.
    runtime.shutdown_timeout(Duration::from_secs(1));
    // Exports the spans still waiting in the batch.
    drop(telemetry);
    code
}

/// `[server.tracing]` of the configuration `serve` is about to load; a configuration that
/// does not load is reported by `serve` itself, with traces left to the `OTEL_*` variables.
fn tracing_config(path: Option<&std::path::Path>) -> ragway_core::telemetry::TracingConfig {
    let config = match path {
        Some(path) => Config::load(path),
        None => Config::parse(OFFLINE_DEFAULT, "the built-in offline default"),
    };
    config.map(|c| c.server.tracing).unwrap_or_default()
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check,
        } => check(cli.config.as_deref()),
        Command::Models => {
            let config = load(cli.config.as_deref())?;
            for llm in &config.llm {
                println!("llm           {:<24} {}", llm.name(), llm.kind());
            }
            for store in &config.vector_store {
                println!("vector_store  {:<24} {}", store.name(), store.kind());
            }
            for embedder in &config.embedder {
                println!("embedder      {:<24}", embedder.name());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            bind,
            insecure_no_auth,
        } => {
            let mut config = load(cli.config.as_deref())?;
            let bind = bind.unwrap_or(config.server.bind);
            check_exposure(bind, &config, insecure_no_auth)?;
            // Served open on purpose behind something that decides who calls: that something
            // also decides the names, so the loopback-only default would refuse them all.
            if insecure_no_auth && !bind.ip().is_loopback() && config.server.allowed_hosts.is_none()
            {
                config.server.allowed_hosts = Some(vec!["*".to_owned()]);
            }
            let registry = Arc::new(Gateway::build(&config).await?);
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .with_context(|| format!("cannot listen on {bind}"))?;
            let address = listener.local_addr()?;
            if let Some(metrics_bind) = config.server.metrics_bind {
                let listener = tokio::net::TcpListener::bind(metrics_bind)
                    .await
                    .with_context(|| {
                        format!("cannot listen on {metrics_bind} (server.metrics_bind)")
                    })?;
                println!(
                    "ragway metrics on http://{}/metrics",
                    listener.local_addr()?
                );
                std::io::stdout().flush()?;
                tokio::spawn(async move {
                    if let Err(error) = ragway_server::serve_metrics(listener).await {
                        tracing::error!("the metrics listener stopped: {error}");
                    }
                });
            }
            tracing::info!(%address, llms = ?registry.llm_names(), stores = ?registry.store_names(), "serving");
            // Scripts and tests read the address from this line (useful with port 0).
            println!("ragway listening on http://{address}");
            std::io::stdout().flush()?;
            let grace = config.server.shutdown_grace();
            match ragway_server::serve(listener, registry, shutdown_signal(), grace).await? {
                Shutdown::Drained => tracing::info!("stopped: every request in flight finished"),
                // Exit 0 all the same: the stop was asked for, and an orchestrator reads a
                // non-zero code as a crash (ECS would report the task as failed).
                Shutdown::GraceExpired { cut } => tracing::warn!(
                    cut,
                    grace_secs = grace.as_secs_f64(),
                    "stopped: the shutdown grace period ran out; cut {cut} request(s) still in flight"
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Healthcheck(args) => healthcheck::run(args, cli.config.as_deref()).await,
        Command::Ingest(args) => {
            let config = load(cli.config.as_deref())?;
            ingest::ingest(&config, args).await
        }
        Command::Eval(args) => {
            let config = load(cli.config.as_deref())?;
            eval::eval(&config, args).await
        }
        Command::Deploy(args) => {
            let config = load(cli.config.as_deref())?;
            // The image carries the config file; the built-in default is written out for it.
            let default_file;
            let config_path = match cli.config.as_deref() {
                Some(path) => path.to_path_buf(),
                None => {
                    default_file = tempfile::NamedTempFile::new()?;
                    std::fs::write(default_file.path(), OFFLINE_DEFAULT)?;
                    default_file.path().to_path_buf()
                }
            };
            deploy::run(&config, &config_path, args).await
        }
        Command::Ask(args) => {
            let config = load(cli.config.as_deref())?;
            let registry = Registry::build(&config).await?;
            ask::ask(&registry, args).await
        }
    }
}

/// Refuses to serve an address other than loopback without API keys, unless told to.
fn check_exposure(bind: SocketAddr, config: &Config, insecure_no_auth: bool) -> Result<()> {
    if bind.ip().is_loopback() || config.server.auth.is_enabled() {
        return Ok(());
    }
    if insecure_no_auth {
        tracing::warn!(
            %bind,
            "serving without API keys on an address other than loopback (--insecure-no-auth): \
             anyone who can reach it can use every model and store"
        );
        return Ok(());
    }
    anyhow::bail!(
        "refusing to serve on {bind} without API keys: anyone who can reach this address could \
         use every model and store. Configure keys in [server.auth] (see docs/configuration.md), serve on \
         127.0.0.1, or pass --insecure-no-auth (RAGWAY_INSECURE_NO_AUTH=true) when something in \
         front of ragway decides who may call it"
    )
}

/// The configuration used when none is given: local model, local embedder, FAISS under ./data.
const OFFLINE_DEFAULT: &str = include_str!("../../../examples/offline.toml");

/// Loads the configuration the user named, or the built-in offline default.
pub(crate) fn load(path: Option<&std::path::Path>) -> Result<Config> {
    match path {
        Some(path) => Ok(Config::load(path)?),
        None => {
            tracing::info!(
                "no --config given: using the built-in offline default (examples/offline.toml)"
            );
            Ok(Config::parse(
                OFFLINE_DEFAULT,
                "the built-in offline default",
            )?)
        }
    }
}

fn check(path: Option<&std::path::Path>) -> Result<ExitCode> {
    let config = match load(path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for missing in config.missing_env() {
        eprintln!("warning: {missing} (needed to serve)");
    }
    println!(
        "ok: {} llm, {} embedder, {} vector_store",
        config.llm.len(),
        config.embedder.len(),
        config.vector_store.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received");
}
