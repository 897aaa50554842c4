//! The retrieval-augmented answer: resolve the named model and store, retrieve passages,
//! assemble the prompt within the model's context window, and generate (whole or streamed)
//! through the model's retries and fallbacks.

use std::time::Instant;

use ragway_core::config::RetrievalMode;
use ragway_core::prompt::{PromptInput, assemble, augment};
use ragway_core::{ChatRequest, DeltaStream, Filter, FinishReason, Passage, Role, Usage};
use serde::Serialize;
use tracing::Instrument as _;

use crate::error::ApiError;
use crate::metrics;
use crate::rate_limit::reservation;
use crate::registry::{Registry, Store};
use crate::resilience::{Answered, opened};
use crate::telemetry;

pub use ragway_requests::{Conversation, Question};

/// Milliseconds spent in each stage.
#[derive(Clone, Copy, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Timings {
    pub retrieval: f64,
    pub generation: f64,
    pub total: f64,
}

/// A complete answer with its sources.
#[derive(Clone, Debug)]
pub struct Answer {
    pub text: String,
    pub sources: Vec<Passage>,
    pub usage: Usage,
    pub finish_reason: FinishReason,
    pub timings: Timings,
    pub answered: Answered,
}

/// Everything decided before generation starts.
pub struct Prepared {
    /// The model the request names (its fallbacks may answer instead).
    pub llm_name: String,
    pub request: ChatRequest,
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
    pub async fn prepare(&self, question: &Question) -> Result<Prepared, ApiError> {
        let started = Instant::now();
        let llm = self.llm(&question.llm_name)?;
        let store = self.store(&question.vector_search_type)?;
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
                max_tokens: question.max_tokens,
                temperature: question.temperature,
                ..ChatRequest::default()
            },
            sources: prompt.passages,
            started,
            retrieval_ms,
        })
    }

    /// Resolves names, retrieves with the conversation's last user message and grounds that
    /// message in the passages (the OpenAI-compatible route).
    pub async fn prepare_conversation(
        &self,
        conversation: Conversation,
    ) -> Result<Prepared, ApiError> {
        let started = Instant::now();
        let llm = self.llm(&conversation.llm_name)?;
        let store = self.store(&conversation.vector_search_type)?;
        metrics::label(&llm.name, &conversation.vector_search_type);
        let mut request = conversation.request;
        let passages = match store {
            Some(store) => {
                let Some(question) = request.messages.iter().rev().find(|m| m.role == Role::User)
                else {
                    return Err(ApiError::BadRequest {
                        param: Some("messages".into()),
                        message: "retrieval needs a user message to search with".into(),
                    });
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
    ) -> Result<Vec<Passage>, ApiError> {
        let Search {
            top_k,
            mode,
            filter,
        } = search;
        if let Some(mode) = mode
            && !store.retriever.modes().contains(&mode)
        {
            let modes: Vec<&str> = store.retriever.modes().iter().map(|m| m.name()).collect();
            return Err(ApiError::BadRequest {
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
            return Err(ApiError::BadRequest {
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

    /// The most tokens answering `prepared` with `choices` choices may cost, to reserve against
    /// the key's tokens-per-minute before the model is called: the prompt, and `max_tokens`,
    /// else the model's default answer length, else `[server.prompt] answer_reserve`, for each
    /// choice.
    pub fn tokens_needed(&self, prepared: &Prepared, choices: u32) -> u64 {
        let default_answer = self
            .llm(&prepared.llm_name)
            .ok()
            .and_then(|llm| llm.default_max_tokens)
            .unwrap_or(self.server.prompt.answer_reserve);
        reservation::estimate(&prepared.request, default_answer, choices)
    }

    /// The tokens `prepared`'s prompt is estimated to take (what a stream is charged from the
    /// moment the model starts, until it reports its usage).
    pub fn prompt_tokens(&self, prepared: &Prepared) -> u64 {
        reservation::prompt_tokens(&prepared.request)
    }

    /// Answers `prepared` in one piece.
    pub async fn answer(&self, prepared: Prepared) -> Result<Answer, ApiError> {
        let generation_started = Instant::now();
        let span = self.chat_span(&prepared);
        let (response, answered) = self
            .call_with_fallbacks(&prepared.llm_name, |model| {
                let request = prepared.request.clone();
                async move { model.generate(request).await }
            })
            .instrument(span.clone())
            .await
            .inspect_err(|error| telemetry::failed(&span, error))?;
        telemetry::answered(&span, self, &answered);
        telemetry::usage(&span, &response.usage);
        metrics::generated(
            &answered.model,
            generation_started.elapsed(),
            &response.usage,
        );
        Ok(Answer {
            text: response.text,
            usage: response.usage,
            finish_reason: response.finish_reason,
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
    pub async fn stream(&self, prepared: &Prepared) -> Result<(DeltaStream, Answered), ApiError> {
        let called = Instant::now();
        let span = self.chat_span(prepared);
        let (stream, answered) = self
            .call_with_fallbacks(&prepared.llm_name, |model| {
                let request = prepared.request.clone();
                async move { opened(model.stream(request).await?).await }
            })
            .instrument(span.clone())
            .await
            .inspect_err(|error| telemetry::failed(&span, error))?;
        telemetry::answered(&span, self, &answered);
        let stream = metrics::observe_stream(stream, answered.model.clone(), called);
        // The span lasts as long as the stream and records its usage.
        let stream = telemetry::observe_stream(stream, span);
        Ok((stream, answered))
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
