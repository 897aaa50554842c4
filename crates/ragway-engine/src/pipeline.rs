//! The retrieval-augmented answer, one path for every API: resolve the named model and store,
//! check the request against what the model can do, retrieve passages, assemble the prompt
//! within the model's context window ([`Registry::prepare`]), then generate through the
//! model's retries and fallbacks, whole with `n` choices ([`Registry::answer`]) or streamed
//! ([`Registry::stream`], read through [`crate::stream::Accounted`]).

use std::time::Instant;

use futures::future::try_join_all;
use ragway_core::config::RetrievalMode;
use ragway_core::prompt::{PromptInput, assemble, augment};
use ragway_core::{
    ChatRequest, DeltaStream, Filter, FinishReason, Message, Passage, Role, ToolCall, Usage,
};
use serde::Serialize;
use tracing::Instrument as _;

use crate::error::EngineError;
use crate::images;
use crate::metrics;
use crate::registry::{Llm, Registry, Store};
use crate::resilience::{Answered, opened};
use crate::shape::Shape;
use crate::stream::{Accounted, Clock};
use crate::telemetry;

pub use ragway_requests::{Conversation, Question};

/// Milliseconds spent in each stage.
#[derive(Clone, Copy, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Timings {
    pub retrieval: f64,
    pub generation: f64,
    pub total: f64,
}

/// A complete answer with its sources: one or more choices from one model.
#[derive(Clone, Debug)]
pub struct Answer {
    /// At least one; as many as were asked for.
    pub choices: Vec<Choice>,
    pub sources: Vec<Passage>,
    /// The prompt's tokens once (it is the same for every choice) and every choice's output.
    pub usage: Usage,
    pub timings: Timings,
    pub answered: Answered,
}

/// One of an answer's choices: a call of its own.
#[derive(Clone, Debug)]
pub struct Choice {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: FinishReason,
    /// What this call read and wrote, the prompt included.
    pub usage: Usage,
}

impl Answer {
    /// The first (for one choice, the only) choice.
    pub fn first(&self) -> &Choice {
        &self.choices[0]
    }

    /// The tokens the answer cost: each choice was a call of its own, prompt included.
    pub fn tokens_spent(&self) -> u64 {
        tokens_spent(&self.choices)
    }
}

fn tokens_spent(choices: &[Choice]) -> u64 {
    choices
        .iter()
        .map(|c| u64::from(c.usage.input_tokens) + u64::from(c.usage.output_tokens))
        .sum()
}

/// Everything decided before generation starts.
pub struct Prepared {
    /// The model the request names (its fallbacks may answer instead).
    pub llm_name: String,
    pub request: ChatRequest,
    /// The request's `response_format`, compiled: every answer is checked against it.
    pub shape: Option<Shape>,
    pub sources: Vec<Passage>,
    pub started: Instant,
    pub retrieval_ms: f64,
}

impl Prepared {
    pub fn timings(&self, generation_started: Instant) -> Timings {
        Timings {
            retrieval: self.retrieval_ms,
            generation: millis(generation_started),
            total: millis(self.started),
        }
    }
}

/// How one request searches a store.
#[derive(Clone, Copy, Debug)]
pub struct Search<'a> {
    /// Passages to return; the server's `default_top_k` when `None`.
    pub top_k: Option<usize>,
    /// The mode the request chose, else the store's own.
    pub mode: Option<RetrievalMode>,
    /// Only passages whose metadata passes this.
    pub filter: &'a Filter,
}

pub fn millis(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 10_000.0).round() / 10.0
}

impl Registry {
    /// Resolves names, retrieves and assembles the prompt.
    pub async fn prepare(&self, question: &Question) -> Result<Prepared, EngineError> {
        let started = Instant::now();
        let llm = self.llm(&question.llm_name)?;
        let store = self.store(&question.vector_search_type)?;
        let request = ChatRequest {
            max_tokens: question.max_tokens,
            temperature: question.temperature,
            response_format: question.response_format.clone(),
            ..ChatRequest::default()
        };
        check_capabilities(llm, &request, 1)?;
        let shape = compile(&request)?;
        metrics::label(&llm.name, &question.vector_search_type);
        let passages = match store {
            Some(store) => {
                let search = Search {
                    top_k: question.top_k,
                    mode: question.retrieval,
                    filter: &question.filter,
                };
                self.retrieve(store, &question.prompt, search).await?
            }
            None => Vec::new(),
        };
        let retrieval_ms = millis(started);
        let prompt = assemble(
            &self.server.prompt,
            PromptInput {
                question: &question.prompt,
                system: question.system.as_deref(),
                passages,
                context_window: llm.context_window,
                max_tokens: question.max_tokens,
            },
        );
        Ok(Prepared {
            llm_name: llm.name.clone(),
            request: ChatRequest {
                messages: prompt.messages,
                ..request
            },
            shape,
            sources: prompt.passages,
            started,
            retrieval_ms,
        })
    }

    /// Resolves names, retrieves with the conversation's last user message and grounds that
    /// message in the passages (the OpenAI-compatible route).
    /// A request the model cannot serve (tools for a model without them, several choices
    /// from one that answers one at a time) is a 400 naming the model, before any retrieval.
    pub async fn prepare_conversation(
        &self,
        conversation: Conversation,
        choices: u32,
    ) -> Result<Prepared, EngineError> {
        let started = Instant::now();
        let llm = self.llm(&conversation.llm_name)?;
        check_capabilities(llm, &conversation.request, choices)?;
        let shape = compile(&conversation.request)?;
        let store = self.store(&conversation.vector_search_type)?;
        metrics::label(&llm.name, &conversation.vector_search_type);
        let mut request = conversation.request;
        if request.messages.iter().any(|m| !m.images.is_empty()) {
            images::fetch_all(&self.server.images, &mut request.messages).await?;
            check_images(llm, &request.messages)?;
        }
        let passages = match store {
            Some(store) => {
                let Some(question) = request.messages.iter().rev().find(|m| m.role == Role::User)
                else {
                    return Err(EngineError::bad_request(
                        "messages",
                        "retrieval needs a user message to search with",
                    ));
                };
                let search = Search {
                    top_k: conversation.top_k,
                    mode: conversation.retrieval,
                    filter: &conversation.filter,
                };
                self.retrieve(store, &question.content, search).await?
            }
            None => Vec::new(),
        };
        let retrieval_ms = millis(started);
        let prompt = augment(
            &self.server.prompt,
            std::mem::take(&mut request.messages),
            passages,
            llm.context_window,
            request.max_tokens,
        );
        request.messages = prompt.messages;
        Ok(Prepared {
            llm_name: llm.name.clone(),
            request,
            shape,
            sources: prompt.passages,
            started,
            retrieval_ms,
        })
    }

    /// The passages of `store` for `query`, timed, as `search` asks: a mode the store does
    /// not have, or a filter it cannot apply, is a 400 naming what it can do.
    pub async fn retrieve(
        &self,
        store: &Store,
        query: &str,
        search: Search<'_>,
    ) -> Result<Vec<Passage>, EngineError> {
        let Search {
            top_k,
            mode,
            filter,
        } = search;
        if let Some(mode) = mode
            && !store.retriever.modes().contains(&mode)
        {
            let modes: Vec<&str> = store.retriever.modes().iter().map(|m| m.name()).collect();
            return Err(EngineError::BadRequest {
                param: Some("retrieval".into()),
                message: if modes.is_empty() {
                    format!(
                        "vector_store \"{}\" searches in its own way only: leave out \
                         `retrieval` for it (dense, keyword and hybrid are for faiss stores)",
                        store.name
                    )
                } else {
                    format!(
                        "vector_store \"{}\" cannot search in {} mode; it searches in: {}",
                        store.name,
                        mode.name(),
                        modes.join(", ")
                    )
                },
            });
        }
        if let Err(reason) = store.retriever.check_filter(filter) {
            return Err(EngineError::BadRequest {
                param: Some("filter".into()),
                message: format!(
                    "vector_store \"{}\" cannot apply this filter: {reason}",
                    store.name
                ),
            });
        }
        let started = Instant::now();
        let top_k = top_k.unwrap_or(self.server.default_top_k);
        let span = telemetry::retrieval(store, top_k);
        let searched = match mode {
            Some(mode) => store.retriever.search_as(mode, query, top_k, filter),
            None => store.retriever.search(query, top_k, filter),
        };
        let passages = searched.instrument(span.clone()).await;
        metrics::retrieved(&store.name, started.elapsed());
        telemetry::retrieved(&span, &passages);
        Ok(passages?)
    }

    /// The answer length `prepared`'s model keeps to when the request gives no `max_tokens`,
    /// where ragway sets it (local models).
    pub fn default_max_tokens(&self, prepared: &Prepared) -> Option<u32> {
        self.llm(&prepared.llm_name)
            .ok()
            .and_then(|llm| llm.default_max_tokens)
    }

    /// Answers `prepared` in one piece, with `choices` choices: as many calls to one model,
    /// at once. A failed choice retries (or falls back) them all.
    pub async fn answer(&self, prepared: Prepared, choices: u32) -> Result<Answer, EngineError> {
        let generation_started = Instant::now();
        let span = self.chat_span(&prepared);
        let (responses, answered) = self
            .call_with_fallbacks(
                &prepared.llm_name,
                |llm| check_capabilities(llm, &prepared.request, choices),
                |model| {
                    let calls: Vec<_> = (0..choices.max(1))
                        .map(|_| {
                            let (model, request) = (model.clone(), prepared.request.clone());
                            async move { model.generate(request).await }
                        })
                        .collect();
                    try_join_all(calls)
                },
            )
            .instrument(span.clone())
            .await
            .inspect_err(|error| telemetry::failed(&span, error))?;
        telemetry::answered(&span, self, &answered);
        let mut usage = Usage::default();
        let choices: Vec<Choice> = responses
            .into_iter()
            .map(|response| {
                // The prompt is the same for every choice (it is reported once); the answers
                // each add their own.
                usage.input_tokens = response.usage.input_tokens;
                usage.output_tokens += response.usage.output_tokens;
                Choice {
                    text: response.text,
                    tool_calls: response.tool_calls,
                    finish_reason: response.finish_reason,
                    usage: response.usage,
                }
            })
            .collect();
        telemetry::usage(&span, &usage);
        metrics::generated(&answered.model, generation_started.elapsed(), &usage);
        if let Some(shape) = &prepared.shape {
            for choice in &choices {
                // A choice that calls a tool instead of answering has no text to check.
                if choice.tool_calls.is_empty() || !choice.text.is_empty() {
                    shape
                        .check(&answered.model, &choice.text)
                        .map_err(|error| match error {
                            EngineError::InvalidAnswer { model, reason, .. } => {
                                EngineError::InvalidAnswer {
                                    model,
                                    reason,
                                    tokens_spent: tokens_spent(&choices),
                                }
                            }
                            other => other,
                        })?;
                }
            }
        }
        Ok(Answer {
            choices,
            usage,
            timings: prepared.timings(generation_started),
            sources: prepared.sources,
            answered,
        })
    }

    /// Starts a streamed answer once the model's stream opens (its first event). A model that
    /// fails before that is retried or replaced by a fallback like a whole answer; once the
    /// stream is open, a failure ends it (the client has the answer's start already), never a
    /// retry.
    ///
    /// Records the time to the first words (from the first call, retries and fallbacks
    /// included: what the client waited), and the stream's usage and length when it ends.
    /// `adapt` wraps the model's deltas before they are accounted for (the server bounds the
    /// stream's length and meters its tokens there); the deltas come out as
    /// [`crate::stream::Piece`]s, the last of which tells the usage, finish and timings.
    pub async fn stream(
        &self,
        prepared: &Prepared,
        adapt: impl FnOnce(DeltaStream) -> DeltaStream,
    ) -> Result<(Accounted, Answered), EngineError> {
        let generation_started = Instant::now();
        let called = generation_started;
        let span = self.chat_span(prepared);
        let (stream, answered) = self
            .call_with_fallbacks(
                &prepared.llm_name,
                |llm| check_capabilities(llm, &prepared.request, 1),
                |model| {
                    let request = prepared.request.clone();
                    async move { opened(model.stream(request).await?).await }
                },
            )
            .instrument(span.clone())
            .await
            .inspect_err(|error| telemetry::failed(&span, error))?;
        telemetry::answered(&span, self, &answered);
        let stream = metrics::observe_stream(stream, answered.model.clone(), called);
        // The span lasts as long as the stream and records its usage.
        let stream = telemetry::observe_stream(stream, span);
        let clock = Clock {
            started: prepared.started,
            retrieval_ms: prepared.retrieval_ms,
            generation_started,
        };
        let checked = prepared
            .shape
            .clone()
            .map(|shape| (shape, answered.model.clone()));
        Ok((Accounted::new(adapt(stream), clock, checked), answered))
    }

    /// The trace span of the model call that answers `prepared` (nothing unless traces are
    /// exported).
    pub fn chat_span(&self, prepared: &Prepared) -> tracing::Span {
        match self.llm(&prepared.llm_name) {
            Ok(llm) => telemetry::chat(llm, &prepared.request),
            Err(_) => tracing::Span::none(),
        }
    }
}

/// A 400 naming the model when `request` (with `choices` choices) asks for what it cannot do.
fn check_capabilities(llm: &Llm, request: &ChatRequest, choices: u32) -> Result<(), EngineError> {
    let can = llm.model.capabilities();
    let uses_tools = !request.tools.is_empty()
        || request
            .messages
            .iter()
            .any(|m| m.role == Role::Tool || !m.tool_calls.is_empty());
    if uses_tools && !can.tools {
        return Err(EngineError::bad_request(
            "tools",
            format!(
                "model \"{}\" cannot call tools; send tools to a model that can (OpenAI, Bedrock)",
                llm.name
            ),
        ));
    }
    if request.messages.iter().any(|m| !m.images.is_empty()) {
        check_images(llm, &request.messages)?;
    }
    if request.response_format.is_some() && !can.structured_output {
        return Err(EngineError::bad_request(
            "response_format",
            format!(
                "model \"{}\" cannot answer in a given JSON shape (response_format); ask a \
                 model that can, or leave response_format out",
                llm.name
            ),
        ));
    }
    if choices > 1 && !can.choices {
        return Err(EngineError::bad_request(
            "n",
            format!(
                "model \"{}\" answers one choice per request; n must be 1",
                llm.name
            ),
        ));
    }
    Ok(())
}

/// Checks the images of `messages` against what `llm` reads: none at all is a 400 naming it,
/// and so is an image past its limits (those given by address count, and are measured once
/// fetched).
fn check_images(llm: &Llm, messages: &[Message]) -> Result<(), EngineError> {
    let Some(limits) = llm.model.capabilities().images else {
        return Err(EngineError::bad_request(
            "messages",
            format!(
                "model \"{}\" does not read images; send them to a model that does, or leave \
                 them out",
                llm.name
            ),
        ));
    };
    limits.check(messages).map_err(|(param, message)| {
        EngineError::bad_request(&param, format!("model \"{}\": {message}", llm.name))
    })
}

/// The request's `response_format`, compiled (a schema ragway cannot apply is a 400).
fn compile(request: &ChatRequest) -> Result<Option<Shape>, EngineError> {
    request
        .response_format
        .as_ref()
        .map(Shape::compile)
        .transpose()
}
