//! `ragway ask`: one question from the terminal, the answer printed as it streams, then the
//! sources it cites.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use futures::StreamExt;
use ragway_core::Filter;
use ragway_core::config::NO_RETRIEVAL;
use ragway_engine::{Piece, Question, Registry};

#[derive(clap::Args)]
pub struct AskArgs {
    /// The question.
    #[arg(required = true)]
    question: Vec<String>,
    /// Model to answer with (default: the first configured).
    #[arg(long)]
    llm: Option<String>,
    /// Store to search, or "none" (default: the first configured, else none).
    #[arg(long)]
    store: Option<String>,
    /// Passages to retrieve.
    #[arg(long)]
    top_k: Option<usize>,
    /// Only passages whose metadata passes this filter, as JSON: '{"lang": "en"}'.
    #[arg(long, value_name = "JSON", value_parser = parse_filter)]
    filter: Option<Filter>,
    #[arg(long)]
    max_tokens: Option<u32>,
    #[arg(long)]
    temperature: Option<f32>,
}

fn parse_filter(text: &str) -> Result<Filter, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    Filter::parse(&value).map_err(|e| e.to_string())
}

pub async fn ask(registry: &Registry, args: AskArgs) -> Result<ExitCode> {
    let llm_name = match args.llm {
        Some(name) => name,
        None => registry
            .llm_names()
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("no [[llm]] is configured"))?,
    };
    let store = args.store.unwrap_or_else(|| {
        registry
            .stores()
            .next()
            .map_or_else(|| NO_RETRIEVAL.to_owned(), |s| s.name.clone())
    });
    let question = Question {
        prompt: args.question.join(" "),
        llm_name,
        vector_search_type: store,
        top_k: args.top_k,
        retrieval: None,
        filter: args.filter.unwrap_or_default(),
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        system: None,
        response_format: None,
        // `ask` calls the engine directly; the response cache is the server's.
        cache: false,
    };
    let prepared = registry.prepare(&question).await?;
    let (mut pieces, answered) = registry.stream(&prepared, |deltas| deltas).await?;
    if let Some(asked) = &answered.fallback_from {
        eprintln!("({asked} failed; {} answers)", answered.model);
    }
    let mut stdout = std::io::stdout();
    let mut summary = None;
    while let Some(piece) = pieces.next().await {
        match piece {
            Piece::Text(text) => {
                write!(stdout, "{text}")?;
                stdout.flush()?;
            }
            Piece::Failed(error) => return Err(error.into()),
            Piece::Done(done) => summary = Some(done),
            // `ask` offers no tools, so no model calls one.
            Piece::ToolCall { .. } => {}
        }
    }
    writeln!(stdout)?;
    if !prepared.sources.is_empty() {
        writeln!(stdout, "\nSources:")?;
        for (i, source) in prepared.sources.iter().enumerate() {
            let title = source.title.as_deref().unwrap_or(&source.id);
            let uri = source
                .uri
                .as_deref()
                .map(|u| format!(" <{u}>"))
                .unwrap_or_default();
            writeln!(
                stdout,
                "  [{}] {title}{uri} (score {:.3})",
                i + 1,
                source.score
            )?;
        }
    }
    if let Some(summary) = summary {
        let (timings, usage) = (summary.timings, summary.usage);
        eprintln!(
            "({:.0} ms retrieval, {:.0} ms total, {} tokens in, {} out)",
            timings.retrieval, timings.total, usage.input_tokens, usage.output_tokens
        );
    }
    Ok(ExitCode::SUCCESS)
}
