//! Tokens per second of ragway's local provider on a GGUF, measured through `ChatModel::stream`
//! as a request would be: prompt processing (a long prompt, one answer token) and generation
//! (a short prompt, a long answer, timed from its first token to its last).
//!
//!   cargo run --release -p ragway-llm --example local_tps -- MODEL.gguf THREADS PROMPT_TOKENS \
//!       GEN_TOKENS REPETITIONS
//!
//! Prints "pp<N> <mean> <stddev>" and "tg<N> <mean> <stddev>" (tokens/s), the shape of
//! bench/anchor's llama.cpp figures, with N the mean number of tokens actually measured.

use std::error::Error;
use std::time::Instant;

use futures::StreamExt;
use ragway_core::config::LocalLlmConfig;
use ragway_core::{ChatModel, ChatRequest, Delta, Message};
use ragway_llm::local::LocalChat;

/// Filler for the long prompt: ordinary words, roughly one token each.
const WORDS: &[&str] = &[
    "the", "river", "runs", "past", "an", "old", "mill", "where", "children", "play", "while",
    "their", "parents", "talk", "about", "weather", "and", "harvest", "under", "tall", "trees",
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, threads, prompt_tokens, gen_tokens, reps] = args.as_slice() else {
        return Err(
            "usage: local_tps MODEL.gguf THREADS PROMPT_TOKENS GEN_TOKENS REPETITIONS".into(),
        );
    };
    let threads: u32 = threads.parse()?;
    let prompt_tokens: usize = prompt_tokens.parse()?;
    let gen_tokens: u32 = gen_tokens.parse()?;
    let reps: usize = reps.parse()?;

    let config: LocalLlmConfig = toml::from_str(&format!(
        "name = 'bench'\npath = {path:?}\nthreads = {threads}\ncontext_window = {}\n",
        prompt_tokens + gen_tokens as usize + 128
    ))?;
    let model = LocalChat::new(&config)?;

    // Every prompt opens with its own number so that no run reuses another's cached prefix.
    let long_prompt = |run: usize| {
        let words: Vec<&str> = (0..prompt_tokens.saturating_sub(40))
            .map(|i| WORDS[(i * 7 + run) % WORDS.len()])
            .collect();
        ChatRequest {
            messages: vec![Message::user(format!(
                "{run}. Summarise in one word: {}",
                words.join(" ")
            ))],
            max_tokens: Some(1),
            ..ChatRequest::default()
        }
    };
    let story = |run: usize| ChatRequest {
        messages: vec![Message::user(format!(
            "{run}. Write a very long story, at least a thousand words, about a lighthouse keeper \
             and a storm."
        ))],
        max_tokens: Some(gen_tokens),
        ..ChatRequest::default()
    };

    let mut pp = Vec::new();
    let mut pp_tokens = Vec::new();
    let mut tg = Vec::new();
    let mut tg_tokens = Vec::new();
    // Run 0 warms up.
    for run in 0..=reps {
        let started = Instant::now();
        let answer = model.generate(long_prompt(run)).await?;
        let seconds = started.elapsed().as_secs_f64();
        if run > 0 {
            pp.push(f64::from(answer.usage.input_tokens) / seconds);
            pp_tokens.push(f64::from(answer.usage.input_tokens));
        }

        let mut stream = model.stream(story(run)).await?;
        let mut first = None;
        let mut generated = 0;
        while let Some(delta) = stream.next().await {
            match delta? {
                Delta::Text(_) => {
                    first.get_or_insert_with(Instant::now);
                }
                Delta::Usage(usage) => generated = usage.output_tokens,
                Delta::Started | Delta::Finish(_) | Delta::ToolCall { .. } => {}
            }
        }
        let first = first.ok_or("the model answered nothing")?;
        // The first token's time belongs to the prompt; the rest is generation.
        let timed = f64::from(generated.saturating_sub(1));
        if run > 0 {
            tg.push(timed / first.elapsed().as_secs_f64());
            tg_tokens.push(timed);
        }
    }
    report("pp", &pp_tokens, &pp);
    report("tg", &tg_tokens, &tg);
    Ok(())
}

fn report(name: &str, tokens: &[f64], rates: &[f64]) {
    let (mean, sd) = mean_sd(rates);
    println!("{name}{:.0} {mean:.2} {sd:.2}", mean_sd(tokens).0);
}

fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}
