//! The generation threads: each owns one llama context (a slot) and what its KV cache holds,
//! takes jobs from the shared queue, and sends the answer back delta by delta, stopping as soon
//! as the client has gone.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use ragway_core::cpu::Turn;
use ragway_core::{Delta, FinishReason, ProviderError, Usage};
use tokio::sync::mpsc as async_mpsc;

use super::backend;
use super::sampling::Sampling;
use super::text::TextAssembler;

/// The counters behind [`LocalStats`](super::LocalStats), shared with the generation threads.
#[derive(Debug, Default)]
pub(super) struct Stats {
    /// Answer tokens sampled, over all requests.
    pub(super) generated_tokens: AtomicU64,
    /// Requests whose client went away before the answer was complete.
    pub(super) cancelled: AtomicU64,
    /// Generation threads running (each owns a slot); fewer than `parallel` means some died.
    pub(super) running_threads: AtomicUsize,
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
pub(super) struct Job {
    pub(super) prompt: Vec<LlamaToken>,
    pub(super) max_tokens: u32,
    pub(super) sampling: Sampling,
    /// The answer's grammar (GBNF), when the request asks for JSON.
    pub(super) grammar: Option<String>,
    pub(super) stop: Vec<String>,
    pub(super) events: async_mpsc::UnboundedSender<Result<Delta, ProviderError>>,
    /// Released when the job is dropped, that is when its slot is free again.
    pub(super) _slot: Turn,
}

/// What one generation thread is started with.
pub(super) struct SlotSettings {
    pub(super) thread_name: String,
    pub(super) model: Arc<LlamaModel>,
    pub(super) params: LlamaContextParams,
    pub(super) queue: Arc<Mutex<mpsc::Receiver<Job>>>,
    pub(super) stats: Arc<Stats>,
    pub(super) provider: String,
}

/// Starts one generation thread and waits until its context exists; returns the context size.
/// The thread ends when the provider is dropped (the job queue closes).
pub(super) fn start_slot(settings: SlotSettings) -> Result<u32, String> {
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
        let mut sampler = job.sampling.sampler(self.model, job.grammar.as_deref())?;
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
