//! Local provider: a GGUF model run in-process by llama.cpp (through `llama-cpp-2`), with one
//! llama context per parallel slot, each on its own generation thread.
//!
//! The model is loaded once when the provider is built. `parallel` threads each own a context
//! and take jobs from one queue; a semaphore with as many permits keeps further requests
//! waiting their turn. A slot keeps the tokens that are in its KV cache, so a prompt that starts
//! like the previous one (the same system prompt) only decodes what is new. Every generated
//! token is checked against the request's channel: a dropped stream stops the work at once.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::thread;
use std::time::SystemTime;

use async_trait::async_trait;
use futures::StreamExt;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::{LogOptions, send_logs_to_tracing};
use ragway_core::config::LocalLlmConfig;
use ragway_core::cpu::{Gate, Turn};
use ragway_core::{
    BuildError, Capabilities, ChatModel, ChatRequest, ChatResponse, Delta, DeltaStream,
    FinishReason, Message, ProviderError, Role, Usage,
};
use tokio::sync::mpsc as async_mpsc;

pub const PROVIDER_TYPE: &str = "local";

/// Sampling truncation for non-greedy requests, llama-server's defaults, which keep small
/// models from wandering into the long tail.
const TOP_K: i32 = 40;
const TOP_P: f32 = 0.95;
const MIN_P: f32 = 0.05;

/// A GGUF chat model run by llama.cpp on this machine.
pub struct LocalChat {
    model: Arc<LlamaModel>,
    template: LlamaChatTemplate,
    /// Tokens of context each slot holds (prompt and answer together).
    context_window: u32,
    /// Answer length when the request gives none.
    max_tokens: u32,
    /// One worker per slot: a request holds one from before it is queued until its slot is
    /// done; at most `[server.limits] max_queued_jobs` requests wait for one.
    slots: Gate,
    parallel: usize,
    jobs: mpsc::Sender<Job>,
    stats: Arc<Stats>,
    provider: String,
}

/// A snapshot of a local model's activity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalStats {
    /// Requests generated at once (`parallel`).
    pub slots: usize,
    /// Slots serving a request now; a request waiting for a slot is not counted.
    pub busy_slots: usize,
    /// Answer tokens generated since start-up.
    pub generated_tokens: u64,
    /// Requests whose client went away before the answer was complete.
    pub cancelled_requests: u64,
}

/// The counters behind [`LocalStats`], shared with the generation threads.
#[derive(Debug, Default)]
struct Stats {
    /// Answer tokens sampled, over all requests.
    generated_tokens: AtomicU64,
    /// Requests whose client went away before the answer was complete.
    cancelled: AtomicU64,
    /// Generation threads running (each owns a slot); fewer than `parallel` means some died.
    running_threads: AtomicUsize,
}

/// Counts its generation thread as running for as long as it lives, unwinding included.
struct Running(Arc<Stats>);

impl Running {
    fn start(stats: &Arc<Stats>) -> Self {
        stats.running_threads.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(stats))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running_threads.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One request handed to a generation thread.
struct Job {
    prompt: Vec<LlamaToken>,
    max_tokens: u32,
    sampling: Sampling,
    stop: Vec<String>,
    events: async_mpsc::UnboundedSender<Result<Delta, ProviderError>>,
    /// Released when the job is dropped, that is when its slot is free again.
    _slot: Turn,
}

impl LocalChat {
    /// Loads the model, checks its chat template and starts the generation threads.
    pub fn new(config: &LocalLlmConfig) -> Result<Self, BuildError> {
        let component = format!("llm \"{}\"", config.name);
        let fail = |message: String| BuildError {
            component: component.clone(),
            message,
        };
        let path = &config.path;
        if !path.is_file() {
            return Err(fail(format!(
                "model file {} not found: run scripts/fetch-models.sh to fetch the default \
                 models, or point path at a .gguf file",
                path.display()
            )));
        }
        let backend = backend().map_err(|e| fail(format!("cannot start llama.cpp: {e}")))?;
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|e| {
                fail(format!(
                    "cannot load {} (is it a GGUF model?): {e}",
                    path.display()
                ))
            })?;
        let template = chat_template(&model, config).map_err(|message| BuildError {
            component: format!("{component} chat_template"),
            message,
        })?;
        if config.context_window > model.n_ctx_train() {
            tracing::warn!(
                model = %config.name,
                context_window = config.context_window,
                trained = model.n_ctx_train(),
                "the context window is larger than the model was trained on; long prompts will \
                 degrade"
            );
        }

        let parallel = config.parallel.max(1);
        let threads = match config.threads {
            Some(threads) => threads.max(1),
            None => thread::available_parallelism()
                .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX)),
        };
        // `threads` is the whole budget: parallel slots share the cores instead of fighting
        // over them.
        let slot_threads = i32::try_from((threads / parallel).max(1)).unwrap_or(i32::MAX);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(config.context_window))
            .with_n_batch(config.context_window)
            .with_n_threads(slot_threads)
            .with_n_threads_batch(slot_threads);

        let model = Arc::new(model);
        let provider = format!("{PROVIDER_TYPE} model \"{}\"", config.name);
        let (jobs, queue) = mpsc::channel();
        let queue = Arc::new(Mutex::new(queue));
        let stats = Arc::<Stats>::default();
        let mut context_window = config.context_window;
        for index in 0..parallel {
            // One at a time: llama.cpp must not create two contexts of a model at once.
            context_window = start_slot(SlotSettings {
                thread_name: format!("ragway-llm-{}-{index}", config.name),
                model: Arc::clone(&model),
                params: params.clone(),
                queue: Arc::clone(&queue),
                stats: Arc::clone(&stats),
                provider: provider.clone(),
            })
            .map_err(fail)?;
        }

        Ok(Self {
            model,
            template,
            context_window,
            max_tokens: config.max_tokens,
            slots: Gate::new(parallel as usize, ragway_core::cpu::max_queued_jobs()),
            parallel: parallel as usize,
            jobs,
            stats,
            provider,
        })
    }

    /// What the generation threads are doing and have done, for metrics.
    pub fn stats(&self) -> LocalStats {
        LocalStats {
            slots: self.parallel,
            busy_slots: self.slots.busy(),
            generated_tokens: self.stats.generated_tokens.load(Ordering::Relaxed),
            cancelled_requests: self.stats.cancelled.load(Ordering::Relaxed),
        }
    }

    fn unsupported(&self, message: impl Into<String>) -> ProviderError {
        ProviderError::Unsupported {
            provider: self.provider.clone(),
            message: message.into(),
        }
    }
}

#[async_trait]
impl ChatModel for LocalChat {
    /// Repeatable sampling; one choice per request (its slots are shared by every caller).
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            seed: true,
            ..Capabilities::default()
        }
    }

    async fn generate(&self, request: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let mut stream = self.stream(request).await?;
        let mut text = String::new();
        let mut usage = Usage::default();
        let mut finish_reason = None;
        while let Some(delta) = stream.next().await {
            match delta? {
                Delta::Text(piece) => text.push_str(&piece),
                Delta::Finish(reason) => finish_reason = Some(reason),
                Delta::Usage(counted) => usage = counted,
                // The local model never calls tools (requests with tools are refused) and
                // starts with its first words.
                Delta::Started | Delta::ToolCall { .. } => {}
            }
        }
        let finish_reason = finish_reason.ok_or_else(|| {
            ProviderError::unreachable(&self.provider, "generation ended without a finish reason")
        })?;
        Ok(ChatResponse {
            text,
            tool_calls: Vec::new(),
            usage,
            finish_reason,
        })
    }

    async fn stream(&self, request: ChatRequest) -> Result<DeltaStream, ProviderError> {
        let ChatRequest {
            messages,
            max_tokens,
            temperature,
            top_p,
            stop,
            seed,
            user: _,
            tools,
            tool_choice: _,
        } = request;
        if !tools.is_empty()
            || messages
                .iter()
                .any(|m| m.role == Role::Tool || !m.tool_calls.is_empty())
        {
            return Err(self.unsupported(
                "the local model cannot call tools; send tools to an OpenAI or Bedrock model",
            ));
        }
        let max_tokens = max_tokens.unwrap_or(self.max_tokens);

        // Templating and tokenizing are CPU work: off the async runtime like generation.
        let model = Arc::clone(&self.model);
        let template = self.template.clone();
        let prompt = ragway_core::cpu::run(&self.provider, move || {
            prompt_tokens(&model, &template, &messages)
        })
        .await?
        .map_err(|e| match e {
            PromptError::Nul => self.unsupported("a message contains a NUL character"),
            PromptError::Template(message) => {
                ProviderError::upstream(&self.provider, None, message)
            }
        })?;
        let needed = prompt.len() as u64 + u64::from(max_tokens);
        if needed > u64::from(self.context_window) {
            return Err(self.unsupported(format!(
                "the prompt is {} tokens and the answer may take {max_tokens} more, {needed} in \
                 all, but the context window is {} tokens: shorten the prompt (fewer or shorter \
                 passages) or lower max_tokens",
                prompt.len(),
                self.context_window
            )));
        }

        let slot = self.slots.enter(&self.provider).await?;
        let (events, mut receiver) = async_mpsc::unbounded_channel();
        self.jobs
            .send(Job {
                prompt,
                max_tokens,
                sampling: Sampling::new(temperature, top_p, seed),
                stop,
                events,
                _slot: slot,
            })
            .map_err(|_| {
                ProviderError::unreachable(&self.provider, "the generation threads have stopped")
            })?;

        let provider = self.provider.clone();
        Ok(Box::pin(async_stream::stream! {
            let mut complete = false;
            while let Some(event) = receiver.recv().await {
                complete = matches!(event, Ok(Delta::Usage(_)) | Err(_));
                yield event;
            }
            if !complete {
                yield Err(ProviderError::unreachable(
                    &provider,
                    "generation stopped before the answer was complete",
                ));
            }
        }))
    }

    /// The model is loaded once at start-up; it answers while its generation threads run.
    async fn ready(&self) -> Result<(), String> {
        let running = self.stats.running_threads.load(Ordering::SeqCst);
        if running < self.parallel {
            return Err(format!(
                "{} of its {} generation threads stopped",
                self.parallel - running,
                self.parallel
            ));
        }
        Ok(())
    }
}

/// The llama.cpp backend, initialised once per process (llama.cpp refuses a second init) and
/// never freed: models built later share it.
fn backend() -> Result<&'static LlamaBackend, String> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // llama.cpp's own log lines become tracing events with the target `llama-cpp-2`.
            send_logs_to_tracing(LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The configured built-in template, else the GGUF's own; either must be one that llama.cpp
/// can apply, which is checked here rather than on the first request.
fn chat_template(model: &LlamaModel, config: &LocalLlmConfig) -> Result<LlamaChatTemplate, String> {
    let (template, origin) = match &config.chat_template {
        Some(name) => (
            LlamaChatTemplate::new(name).map_err(|_| "contains a NUL character".to_owned())?,
            format!("\"{name}\""),
        ),
        None => (
            model.chat_template(None).map_err(|_| {
                format!(
                    "the GGUF {} carries no chat template: set chat_template to a llama.cpp \
                     built-in name (\"chatml\", \"llama3\", \"gemma\", \"mistral-v7\", \"phi3\", …) \
                     that matches how the model was trained",
                    config.path.display()
                )
            })?,
            "in the GGUF".to_owned(),
        ),
    };
    let probe = [
        LlamaChatMessage::new("system".into(), "s".into()),
        LlamaChatMessage::new("user".into(), "u".into()),
    ]
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .map_err(|e| e.to_string())?;
    model
        .apply_chat_template(&template, &probe, true)
        .map_err(|e| {
            format!(
                "llama.cpp cannot apply the chat template {origin} ({e}): set chat_template to \
                 one of its built-in names (\"chatml\", \"llama3\", \"gemma\", …)"
            )
        })?;
    Ok(template)
}

enum PromptError {
    Nul,
    Template(String),
}

/// The conversation through the chat template (ending with the assistant's opening), tokenized
/// with the model's BOS and its special tokens parsed.
fn prompt_tokens(
    model: &LlamaModel,
    template: &LlamaChatTemplate,
    messages: &[Message],
) -> Result<Vec<LlamaToken>, PromptError> {
    let chat = messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::Tool => "tool",
            };
            LlamaChatMessage::new(role.into(), m.content.clone())
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| PromptError::Nul)?;
    let text = model
        .apply_chat_template(template, &chat, true)
        .map_err(|e| PromptError::Template(format!("cannot apply the chat template: {e}")))?;
    Ok(model.vocab().tokenize(text.as_bytes(), true, true))
}

/// How the next token is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Sampling {
    /// The most likely token: no temperature, or zero.
    Greedy,
    Random {
        temperature: f32,
        top_p: f32,
        seed: u32,
    },
}

impl Sampling {
    /// Random sampling when a temperature above zero is asked for; `seed` makes it repeatable.
    fn new(temperature: Option<f32>, top_p: Option<f32>, seed: Option<u64>) -> Self {
        match temperature {
            Some(temperature) if temperature > 0.0 => Self::Random {
                temperature,
                top_p: top_p.filter(|p| *p > 0.0 && *p <= 1.0).unwrap_or(TOP_P),
                // llama.cpp takes 32 bits; fold the high half in rather than drop it.
                seed: seed.map_or_else(
                    || RandomState::new().hash_one(SystemTime::now()) as u32,
                    |seed| (seed ^ (seed >> 32)) as u32,
                ),
            },
            _ => Self::Greedy,
        }
    }

    fn sampler(self) -> LlamaSampler {
        match self {
            Self::Greedy => LlamaSampler::greedy(),
            Self::Random {
                temperature,
                top_p,
                seed,
            } => LlamaSampler::chain_simple([
                LlamaSampler::top_k(TOP_K),
                LlamaSampler::top_p(top_p, 1),
                LlamaSampler::min_p(MIN_P, 1),
                LlamaSampler::temp(temperature),
                LlamaSampler::dist(seed),
            ]),
        }
    }
}

struct SlotSettings {
    thread_name: String,
    model: Arc<LlamaModel>,
    params: LlamaContextParams,
    queue: Arc<Mutex<mpsc::Receiver<Job>>>,
    stats: Arc<Stats>,
    provider: String,
}

/// Starts one generation thread and waits until its context exists; returns the context size.
/// The thread ends when the provider is dropped (the job queue closes).
fn start_slot(settings: SlotSettings) -> Result<u32, String> {
    let (ready, started) = mpsc::sync_channel(1);
    thread::Builder::new()
        .name(settings.thread_name.clone())
        .spawn(move || {
            let SlotSettings {
                model,
                params,
                queue,
                stats,
                provider,
                ..
            } = settings;
            let context = match backend().and_then(|backend| {
                model
                    .new_context(backend, params)
                    .map_err(|e| format!("cannot create a llama.cpp context: {e}"))
            }) {
                Ok(context) => context,
                Err(message) => {
                    let _ = ready.send(Err(message));
                    return;
                }
            };
            let n_batch = context.n_batch() as usize;
            let _running = Running::start(&stats);
            let _ = ready.send(Ok(context.n_ctx()));
            let mut slot = Slot {
                model: &model,
                context,
                batch: LlamaBatch::new(n_batch.max(1), 1),
                n_batch: n_batch.max(1),
                cached: Vec::new(),
                piece: Vec::new(),
                stats,
                provider,
            };
            loop {
                // Idle threads queue on the lock; the one holding it waits for the next job.
                let job = match queue.lock() {
                    Ok(queue) => queue.recv(),
                    Err(_) => return,
                };
                match job {
                    Ok(job) => slot.serve(job),
                    Err(_) => return,
                }
            }
        })
        .map_err(|e| format!("cannot start a generation thread: {e}"))?;
    started
        .recv()
        .map_err(|_| "the generation thread stopped while starting".to_owned())?
}

/// How a job ended.
enum Outcome {
    Finished(FinishReason, Usage),
    /// The client went away.
    Cancelled,
}

/// One llama context and what its KV cache holds, owned by one generation thread.
struct Slot<'m> {
    model: &'m LlamaModel,
    context: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    /// The tokens whose keys and values are in the cache, in order.
    cached: Vec<LlamaToken>,
    /// Scratch space for one token's bytes.
    piece: Vec<u8>,
    stats: Arc<Stats>,
    provider: String,
}

impl Slot<'_> {
    fn serve(&mut self, job: Job) {
        let outcome = if job.events.is_closed() {
            Ok(Ok(Outcome::Cancelled))
        } else {
            catch_unwind(AssertUnwindSafe(|| self.generate(&job)))
        };
        let failure = match outcome {
            Ok(Ok(Outcome::Finished(reason, usage))) => {
                let _ = job.events.send(Ok(Delta::Finish(reason)));
                let _ = job.events.send(Ok(Delta::Usage(usage)));
                return;
            }
            Ok(Ok(Outcome::Cancelled)) => {
                self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(Err(message)) => message,
            Err(_) => "llama.cpp failed while generating".to_owned(),
        };
        tracing::error!(provider = %self.provider, error = %failure, "local generation failed");
        // Whatever the cache holds now is unknown: start the next job from scratch.
        self.context.clear_kv_cache();
        self.cached.clear();
        let _ = job
            .events
            .send(Err(ProviderError::upstream(&self.provider, None, failure)));
    }

    fn generate(&mut self, job: &Job) -> Result<Outcome, String> {
        if !self.load_prompt(&job.prompt, &job.events)? {
            return Ok(Outcome::Cancelled);
        }
        let mut sampler = job.sampling.sampler();
        let mut text = TextAssembler::new(&job.stop);
        let mut generated: u32 = 0;
        let reason = loop {
            if generated >= job.max_tokens {
                break FinishReason::Length;
            }
            // -1: the logits of the last token decoded.
            let token = sampler.sample(&self.context, -1);
            if self.model.vocab().is_eog(token) {
                break FinishReason::Stop;
            }
            generated += 1;
            self.stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
            self.piece.clear();
            self.model
                .vocab()
                .token_to_piece_into(token, &mut self.piece, false, None);
            let step = text.push(&self.piece);
            if !step.text.is_empty() && job.events.send(Ok(Delta::Text(step.text))).is_err() {
                return Ok(Outcome::Cancelled);
            }
            if step.stopped {
                break FinishReason::Stop;
            }
            if job.events.is_closed() {
                return Ok(Outcome::Cancelled);
            }
            if generated >= job.max_tokens {
                // The last token needs no decoding: nothing follows it.
                break FinishReason::Length;
            }
            let position = position(self.cached.len())?;
            self.batch.clear();
            self.batch
                .add(token, position, &[0], true)
                .map_err(|e| e.to_string())?;
            self.context
                .decode(&mut self.batch)
                .map_err(|e| format!("decoding failed: {e}"))?;
            self.cached.push(token);
        };
        let rest = text.finish();
        if !rest.is_empty() && job.events.send(Ok(Delta::Text(rest))).is_err() {
            return Ok(Outcome::Cancelled);
        }
        Ok(Outcome::Finished(
            reason,
            Usage {
                input_tokens: u32::try_from(job.prompt.len()).unwrap_or(u32::MAX),
                output_tokens: generated,
            },
        ))
    }

    /// Puts the prompt in the cache, keeping the longest prefix already there and decoding the
    /// rest in batches; false if the client went away meanwhile.
    fn load_prompt(
        &mut self,
        prompt: &[LlamaToken],
        events: &async_mpsc::UnboundedSender<Result<Delta, ProviderError>>,
    ) -> Result<bool, String> {
        if prompt.is_empty() {
            return Err("the prompt is empty".into());
        }
        // The last prompt token is always decoded again: its logits choose the first answer
        // token.
        let mut keep = common_prefix(&self.cached, prompt).min(prompt.len() - 1);
        if keep < self.cached.len() {
            let trimmed = u32::try_from(keep).ok().is_some_and(|from| {
                self.context
                    .clear_kv_cache_seq(Some(0), Some(from), None)
                    .unwrap_or(false)
            });
            if !trimmed {
                // Some caches (sliding-window, recurrent) cannot drop a tail: start afresh.
                self.context.clear_kv_cache();
                keep = 0;
            }
            self.cached.truncate(keep);
        }
        for chunk in prompt[keep..].chunks(self.n_batch) {
            if events.is_closed() {
                return Ok(false);
            }
            let start = self.cached.len();
            let last = start + chunk.len() == prompt.len();
            self.batch.clear();
            for (offset, token) in chunk.iter().enumerate() {
                let logits = last && offset + 1 == chunk.len();
                self.batch
                    .add(*token, position(start + offset)?, &[0], logits)
                    .map_err(|e| e.to_string())?;
            }
            self.context
                .decode(&mut self.batch)
                .map_err(|e| format!("decoding the prompt failed: {e}"))?;
            self.cached.extend_from_slice(chunk);
        }
        Ok(true)
    }
}

fn position(index: usize) -> Result<i32, String> {
    i32::try_from(index).map_err(|_| format!("position {index} is out of range"))
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// What one token added to the answer.
#[derive(Debug, Default, PartialEq)]
struct Step {
    /// Text ready to send: whole characters, none of which may start a stop sequence.
    text: String,
    /// A stop sequence was reached; `text` ends just before it.
    stopped: bool,
}

/// Turns token bytes into answer text. A character split across tokens is sent once whole, and
/// text that may be the start of a stop sequence is held back until the next token tells, so a
/// stop sequence is never sent even when it straddles tokens.
struct TextAssembler {
    stop: Vec<String>,
    /// Bytes of an incomplete UTF-8 sequence.
    bytes: Vec<u8>,
    /// Decoded text not sent yet.
    pending: String,
}

impl TextAssembler {
    fn new(stop: &[String]) -> Self {
        Self {
            stop: stop.iter().filter(|s| !s.is_empty()).cloned().collect(),
            bytes: Vec::new(),
            pending: String::new(),
        }
    }

    fn push(&mut self, piece: &[u8]) -> Step {
        self.bytes.extend_from_slice(piece);
        self.decode();
        let earliest = self
            .stop
            .iter()
            .filter_map(|stop| self.pending.find(stop.as_str()))
            .min();
        if let Some(at) = earliest {
            let mut text = std::mem::take(&mut self.pending);
            text.truncate(at);
            self.bytes.clear();
            return Step {
                text,
                stopped: true,
            };
        }
        let held = self
            .stop
            .iter()
            .map(|stop| partial_match(&self.pending, stop))
            .max()
            .unwrap_or(0);
        let rest = self.pending.split_off(self.pending.len() - held);
        Step {
            text: std::mem::replace(&mut self.pending, rest),
            stopped: false,
        }
    }

    /// Everything still held, at the end of the answer (a cut character becomes U+FFFD).
    fn finish(&mut self) -> String {
        let mut text = std::mem::take(&mut self.pending);
        text.push_str(&String::from_utf8_lossy(&self.bytes));
        self.bytes.clear();
        text
    }

    /// Moves the complete characters from `bytes` to `pending`; invalid bytes become U+FFFD.
    fn decode(&mut self) {
        loop {
            match std::str::from_utf8(&self.bytes) {
                Ok(text) => {
                    self.pending.push_str(text);
                    self.bytes.clear();
                    return;
                }
                Err(error) => {
                    let valid = error.valid_up_to();
                    self.pending
                        .push_str(&String::from_utf8_lossy(&self.bytes[..valid]));
                    match error.error_len() {
                        // An incomplete sequence at the end: wait for the next token.
                        None => {
                            self.bytes.drain(..valid);
                            return;
                        }
                        Some(invalid) => {
                            self.pending.push(char::REPLACEMENT_CHARACTER);
                            self.bytes.drain(..valid + invalid);
                        }
                    }
                }
            }
        }
    }
}

/// The length of the longest end of `text` that is a proper beginning of `stop`.
fn partial_match(text: &str, stop: &str) -> usize {
    (1..stop.len())
        .rev()
        .filter(|&n| stop.is_char_boundary(n))
        .find(|&n| text.ends_with(&stop[..n]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SMOLLM2: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/SmolLM2-135M-Instruct.Q4_1.gguf"
    );

    fn config(extra: &str) -> LocalLlmConfig {
        toml::from_str(&format!("name = 'smollm2'\npath = '{SMOLLM2}'\n{extra}")).unwrap()
    }

    fn build(extra: &str) -> LocalChat {
        LocalChat::new(&config(extra)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// One model for the tests that need no counters of their own (parallel = 1).
    fn shared() -> &'static LocalChat {
        static MODEL: OnceLock<LocalChat> = OnceLock::new();
        MODEL.get_or_init(|| build(""))
    }

    fn ask(question: &str) -> ChatRequest {
        ChatRequest {
            messages: vec![
                Message::system("You are a helpful assistant. Answer briefly."),
                Message::user(question),
            ],
            ..ChatRequest::default()
        }
    }

    async fn collect(mut stream: DeltaStream) -> Vec<Delta> {
        let mut deltas = Vec::new();
        while let Some(delta) = stream.next().await {
            deltas.push(delta.unwrap());
        }
        deltas
    }

    #[tokio::test]
    async fn answers_a_simple_question() {
        let answer = shared()
            .generate(ask("What is the capital of France?"))
            .await
            .unwrap();
        assert!(answer.text.contains("Paris"), "{answer:?}");
        assert_eq!(answer.finish_reason, FinishReason::Stop, "{answer:?}");
        assert!(answer.usage.input_tokens > 10, "{answer:?}");
        assert!(answer.usage.output_tokens > 0, "{answer:?}");
    }

    #[tokio::test]
    async fn streamed_text_equals_the_generated_text() {
        let request = ChatRequest {
            max_tokens: Some(40),
            ..ask("Name three colours of the rainbow.")
        };
        let whole = shared().generate(request.clone()).await.unwrap();
        let deltas = collect(shared().stream(request).await.unwrap()).await;
        let texts: Vec<&str> = deltas
            .iter()
            .filter_map(|d| match d {
                Delta::Text(text) => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert!(texts.len() > 1, "the answer came in one piece: {texts:?}");
        assert_eq!(texts.concat(), whole.text);
        let tail = &deltas[deltas.len() - 2..];
        assert_eq!(tail[0], Delta::Finish(whole.finish_reason.clone()));
        assert_eq!(tail[1], Delta::Usage(whole.usage));
    }

    #[tokio::test]
    async fn max_tokens_ends_with_length() {
        let request = ChatRequest {
            max_tokens: Some(7),
            ..ask("Write a long story about a dragon who learns to bake bread.")
        };
        let answer = shared().generate(request).await.unwrap();
        assert_eq!(answer.finish_reason, FinishReason::Length, "{answer:?}");
        assert_eq!(answer.usage.output_tokens, 7, "{answer:?}");
        assert!(!answer.text.is_empty());
    }

    #[tokio::test]
    async fn a_stop_sequence_cuts_the_answer() {
        let question = "Count from 1 to 10, separated by commas.";
        let full = shared()
            .generate(ChatRequest {
                max_tokens: Some(60),
                ..ask(question)
            })
            .await
            .unwrap();
        assert!(full.text.contains('5'), "{full:?}");
        let cut = shared()
            .generate(ChatRequest {
                max_tokens: Some(60),
                stop: vec!["5".into()],
                ..ask(question)
            })
            .await
            .unwrap();
        assert_eq!(cut.finish_reason, FinishReason::Stop, "{cut:?}");
        assert!(!cut.text.contains('5'), "{cut:?}");
        let before = &full.text[..full.text.find('5').unwrap()];
        assert_eq!(cut.text, before);
    }

    #[tokio::test]
    async fn dropping_the_stream_stops_generation() {
        let model = build("");
        let request = ChatRequest {
            max_tokens: Some(200),
            ..ask("Write a long story about a dragon who learns to bake bread.")
        };
        let mut stream = model.stream(request.clone()).await.unwrap();
        let first = stream.next().await.unwrap().unwrap();
        assert!(matches!(first, Delta::Text(_)), "{first:?}");
        let at_drop = model.stats().generated_tokens;
        drop(stream);

        // The slot comes free once the generation thread has noticed.
        tokio::time::timeout(Duration::from_secs(30), async {
            while model.stats().busy_slots > 0 || model.stats().cancelled_requests == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the cancelled generation kept its slot");
        let after = model.stats().generated_tokens - at_drop;
        assert!(
            after <= 2,
            "{after} tokens were generated after the stream was dropped"
        );
        assert_eq!(model.stats().cancelled_requests, 1);

        // The slot serves the next request normally.
        let answer = model
            .generate(ChatRequest {
                max_tokens: Some(5),
                ..request
            })
            .await
            .unwrap();
        assert_eq!(answer.usage.output_tokens, 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_beyond_parallel_wait_their_turn() {
        let model = shared();
        let request = |question: &str| ChatRequest {
            max_tokens: Some(16),
            ..ask(question)
        };
        let (a, b) = tokio::join!(
            model.generate(request("What is the capital of France?")),
            model.generate(request("What is two plus two?")),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(!a.text.is_empty() && !b.text.is_empty(), "{a:?} {b:?}");
    }

    #[tokio::test]
    async fn parallel_slots_answer_together() {
        let model = build("parallel = 2\ncontext_window = 1024");
        let request = ChatRequest {
            max_tokens: Some(12),
            ..ask("What is the capital of France?")
        };
        let (a, b) = tokio::join!(model.generate(request.clone()), model.generate(request));
        let (a, b) = (a.unwrap(), b.unwrap());
        // Greedy decoding in two contexts gives the same answer.
        assert_eq!(a.text, b.text);
    }

    #[tokio::test]
    async fn an_over_long_prompt_is_unsupported() {
        let model = build("context_window = 256");
        let error = model
            .generate(ask(&"ragway ".repeat(300)))
            .await
            .unwrap_err();
        let ProviderError::Unsupported { message, .. } = &error else {
            panic!("{error:?}");
        };
        assert!(
            message.contains("context window is 256 tokens"),
            "{message}"
        );
        assert!(message.contains("the prompt is"), "{message}");
    }

    #[test]
    fn a_missing_model_names_the_fetch_script() {
        let config: LocalLlmConfig =
            toml::from_str("name = 'gone'\npath = 'models/nowhere.gguf'").unwrap();
        let error = LocalChat::new(&config).err().unwrap().to_string();
        assert!(error.contains("models/nowhere.gguf"), "{error}");
        assert!(error.contains("run scripts/fetch-models.sh"), "{error}");
    }

    #[test]
    fn an_unknown_template_name_is_a_build_error() {
        let error = LocalChat::new(&config("chat_template = 'no-such-template'"))
            .err()
            .unwrap();
        assert_eq!(error.component, "llm \"smollm2\" chat_template");
        assert!(error.message.contains("no-such-template"), "{error}");
    }

    /// Gemma 3 270M base: its GGUF has no chat template.
    fn gemma(extra: &str) -> Result<LocalChat, BuildError> {
        const GEMMA: &str = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/gemma-3-270m-Q4_K_M.gguf"
        );
        assert!(
            std::path::Path::new(GEMMA).is_file(),
            "{GEMMA} not found: run scripts/fetch-models.sh --gemma"
        );
        let config = toml::from_str(&format!(
            "name = 'gemma'\npath = '{GEMMA}'\ncontext_window = 512\n{extra}"
        ))
        .unwrap();
        LocalChat::new(&config)
    }

    #[test]
    fn a_gguf_without_a_template_needs_chat_template() {
        let error = gemma("").err().unwrap();
        assert_eq!(error.component, "llm \"gemma\" chat_template");
        assert!(
            error.message.contains("carries no chat template"),
            "{error}"
        );
        assert!(error.message.contains("set chat_template"), "{error}");
    }

    #[tokio::test]
    async fn a_configured_template_serves_a_model_without_one() {
        let model = gemma("chat_template = 'gemma'").unwrap_or_else(|e| panic!("{e}"));
        let request = ChatRequest {
            max_tokens: Some(12),
            ..ask("What is the capital of France?")
        };
        let first = model.generate(request.clone()).await.unwrap();
        assert!(first.usage.output_tokens > 0, "{first:?}");
        // Gemma's sliding-window cache cannot keep a prefix; the second request starts over
        // and must answer the same.
        let second = model.generate(request).await.unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn two_local_models_share_one_backend() {
        let _a = build("context_window = 512");
        let _b = build("context_window = 512");
    }

    #[test]
    fn sampling_is_greedy_without_temperature() {
        assert_eq!(Sampling::new(None, None, Some(1)), Sampling::Greedy);
        assert_eq!(Sampling::new(Some(0.0), Some(0.5), None), Sampling::Greedy);
        assert!(matches!(
            Sampling::new(Some(0.7), Some(0.5), None),
            Sampling::Random { top_p, .. } if top_p == 0.5
        ));
        assert_eq!(
            Sampling::new(Some(0.7), None, Some(42)),
            Sampling::new(Some(0.7), None, Some(42)),
            "a seed makes sampling repeatable"
        );
    }

    fn run(stop: &[&str], pieces: &[&[u8]]) -> (Vec<String>, bool, String) {
        let stop: Vec<String> = stop.iter().map(|s| s.to_string()).collect();
        let mut text = TextAssembler::new(&stop);
        let mut sent = Vec::new();
        for piece in pieces {
            let step = text.push(piece);
            sent.push(step.text);
            if step.stopped {
                return (sent, true, String::new());
            }
        }
        (sent, false, text.finish())
    }

    #[test]
    fn characters_split_across_tokens_are_sent_whole() {
        let euro = "€".as_bytes();
        let (sent, stopped, rest) = run(&[], &[b"a", &euro[..1], &euro[1..], b"b"]);
        assert_eq!(sent, ["a", "", "€", "b"]);
        assert!(!stopped);
        assert_eq!(rest, "");
    }

    #[test]
    fn a_stop_sequence_straddling_tokens_is_never_sent() {
        let (sent, stopped, _) = run(&["END"], &[b"one E", b"N", b"D two"]);
        assert_eq!(sent, ["one ", "", ""]);
        assert!(stopped);
    }

    #[test]
    fn a_false_start_of_a_stop_sequence_is_released() {
        let (sent, stopped, rest) = run(&["END"], &[b"one E", b"Nd", b" two E"]);
        assert_eq!(sent, ["one ", "ENd", " two "]);
        assert!(!stopped);
        assert_eq!(rest, "E");
    }

    #[test]
    fn the_earliest_stop_sequence_wins() {
        let (sent, stopped, _) = run(&["two", "one"], &[b"zero one two"]);
        assert_eq!(sent, ["zero "]);
        assert!(stopped);
    }

    #[test]
    fn invalid_and_cut_bytes_become_replacement_characters() {
        let (sent, _, rest) = run(&[], &[b"a\xffb", &"€".as_bytes()[..2]]);
        assert_eq!(sent, ["a\u{fffd}b", ""]);
        assert_eq!(rest, "\u{fffd}");
    }
}
