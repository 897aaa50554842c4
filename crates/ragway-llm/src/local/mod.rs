//! Local provider: a GGUF model run in-process by llama.cpp (through `llama-cpp-2`), with one
//! llama context per parallel slot, each on its own generation thread.
//!
//! The model is loaded once when the provider is built. `parallel` threads each own a context
//! and take jobs from one queue; a semaphore with as many permits keeps further requests
//! waiting their turn. A slot keeps the tokens that are in its KV cache, so a prompt that starts
//! like the previous one (the same system prompt) only decodes what is new. Every generated
//! token is checked against the request's channel: a dropped stream stops the work at once.
//!
//! This file is the front: building the model and queueing requests. `template` turns a
//! conversation into prompt tokens, `sampling` chooses each next token, `slots` runs the
//! generation threads, and `text` turns their tokens into answer text.

mod grammar;
mod sampling;
mod slots;
mod template;
mod text;

use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::thread;

use async_trait::async_trait;
use futures::StreamExt;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatTemplate, LlamaModel};
use llama_cpp_2::{LogOptions, send_logs_to_tracing};
use ragway_core::config::LocalLlmConfig;
use ragway_core::cpu::Gate;
use ragway_core::{
    BuildError, Capabilities, ChatModel, ChatRequest, ChatResponse, Delta, DeltaStream,
    ProviderError, Role, Usage,
};
use tokio::sync::mpsc as async_mpsc;

use sampling::Sampling;
use slots::{Job, SlotSettings, Stats, start_slot};
use template::{PromptError, chat_template, prompt_tokens};

pub const PROVIDER_TYPE: &str = "local";

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
    /// Repeatable sampling, and JSON Schemas by constrained decoding; one choice per
    /// request (its slots are shared by every caller).
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            seed: true,
            structured_output: true,
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
            response_format,
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
        let (prompt, grammar) = ragway_core::cpu::run(&self.provider, move || {
            let grammar = response_format
                .map(|format| grammar::from_schema(&format.schema()))
                .transpose();
            (prompt_tokens(&model, &template, &messages), grammar)
        })
        .await?;
        let prompt = prompt.map_err(|e| match e {
            PromptError::Nul => self.unsupported("a message contains a NUL character"),
            PromptError::Template(message) => {
                ProviderError::upstream(&self.provider, None, message)
            }
        })?;
        let grammar = grammar.map_err(|e| self.unsupported(e))?;
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
                grammar,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use ragway_core::{FinishReason, Message};

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
}
