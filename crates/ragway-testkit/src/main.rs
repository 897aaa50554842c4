//! `ragway-fakes`: serves the OpenAI, Bedrock, Bedrock Agent Runtime and Kendra fakes on loopback
//! until killed.

use std::io::Write as _;

use clap::Parser;
use ragway_testkit::{FakeOptions, bedrock, bedrock_agent, kendra, openai};

/// Start the fakes and print their base URLs as one JSON line.
#[derive(Debug, Parser)]
#[command(name = "ragway-fakes", version, about)]
struct Args {
    /// Port of the OpenAI-compatible fake (0 = any free port).
    #[arg(long, default_value_t = 0)]
    openai_port: u16,
    /// Port of the Bedrock Runtime fake (0 = any free port).
    #[arg(long, default_value_t = 0)]
    bedrock_port: u16,
    /// Port of the Kendra fake (0 = any free port).
    #[arg(long, default_value_t = 0)]
    kendra_port: u16,
    /// Port of the Bedrock Agent Runtime fake (0 = any free port); it serves knowledge base
    /// `KB12345678`.
    #[arg(long, default_value_t = 0)]
    bedrock_agent_port: u16,
    /// Pause before each streamed chunk of the OpenAI and Bedrock fakes, in milliseconds, so
    /// streams pace like a model writing (0 = send at once).
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Words in the OpenAI and Bedrock fakes' answers when nothing is scripted (default: the
    /// five of "ragway fake answer from <model>."), so streams last as long as a real model's.
    #[arg(long)]
    answer_words: Option<usize>,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let chunk_delay =
        (args.chunk_delay_ms > 0).then(|| std::time::Duration::from_millis(args.chunk_delay_ms));
    // The OpenAI fake is the benchmark upstream: it keeps no record.
    let openai = openai::start_with_options(FakeOptions {
        port: args.openai_port,
        record: false,
        chunk_delay,
        answer_words: args.answer_words,
    })
    .await?;
    let bedrock = bedrock::start_with_options(FakeOptions {
        port: args.bedrock_port,
        record: true,
        chunk_delay,
        answer_words: args.answer_words,
    })
    .await?;
    let kendra = kendra::start_with_options(
        FakeOptions {
            port: args.kendra_port,
            record: true,
            chunk_delay: None,
            answer_words: None,
        },
        kendra::default_passages(),
    )
    .await?;
    let bedrock_agent = bedrock_agent::start_with_options(
        FakeOptions {
            port: args.bedrock_agent_port,
            record: true,
            chunk_delay: None,
            answer_words: None,
        },
        bedrock_agent::KnowledgeBase::default(),
    )
    .await?;
    let urls = serde_json::json!({
        "openai": openai.url(),
        "bedrock": bedrock.url(),
        "kendra": kendra.url(),
        "bedrock_agent": bedrock_agent.url(),
    });
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{urls}")?;
        stdout.flush()?;
    }
    shutdown_signal().await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result?,
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}
