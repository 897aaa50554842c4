//! `POST /generate`: a prompt, the model to ask and the store to ground it in.

use ragway_core::config::{NO_RETRIEVAL, RetrievalMode, ServerConfig};
use ragway_core::{Filter, ResponseFormat};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::{FieldError, RequestError};
use crate::filter::{filter_field_error, read_filter};
use crate::limits::{check_length, check_max_tokens, check_top_k};
use crate::response_format::read_response_format;

/// A question as a route or the CLI received it, already checked.
#[derive(Clone, Debug)]
pub struct Question {
    pub prompt: String,
    pub llm_name: String,
    pub vector_search_type: String,
    pub top_k: Option<usize>,
    /// How the store searches, when the request chose (else the store's own way).
    pub retrieval: Option<RetrievalMode>,
    /// Only passages whose metadata passes this.
    pub filter: Filter,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub system: Option<String>,
    /// The answer's shape (`response_format`); free text when `None`.
    pub response_format: Option<ResponseFormat>,
    /// Whether a kept answer may be given, and this one kept (`cache`, on unless false).
    pub cache: bool,
}

/// A question: the prompt, the model to ask and the store to ground it in. Other fields are
/// ignored.
#[derive(Deserialize, ToSchema)]
pub struct GenerateRequest {
    /// Not blank.
    prompt: String,
    /// One of `GET /models`' `llm_models`.
    llm_name: String,
    /// One of `GET /models`' `vector_dbs`, or "none" (the default) to skip retrieval.
    #[serde(default = "no_retrieval")]
    #[schema(default = "none")]
    vector_search_type: String,
    /// Passages to retrieve: at least 1, at most the server's `max_top_k`.
    #[schema(minimum = 1)]
    top_k: Option<usize>,
    /// How the store searches: `dense`, `keyword` or `hybrid` (faiss stores have all three);
    /// the store's configured way when absent.
    #[serde(default)]
    retrieval: Option<RetrievalMode>,
    /// Only passages whose metadata passes this filter: `{"lang": "en", "year": {"$gte":
    /// 2020}}`; operators `$eq`, `$ne`, `$in`, `$nin`, `$contains`, `$gt`, `$gte`, `$lt`,
    /// `$lte`, `$and`, `$or`, `$not` (see docs/retrieval.md).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    filter: Option<Value>,
    /// At least 1.
    #[schema(minimum = 1)]
    max_tokens: Option<u32>,
    /// Between 0 and 2.
    #[schema(minimum = 0.0, maximum = 2.0)]
    temperature: Option<f32>,
    /// A system prompt, before the retrieved context.
    system: Option<String>,
    /// Answer as server-sent events.
    #[serde(default)]
    stream: bool,
    /// The answer's shape, as in OpenAI's chat API: `{"type": "json_object"}` or `{"type":
    /// "json_schema", "json_schema": {"name", "schema", "strict"}}`; free text when absent.
    /// Every structured answer is checked against the schema: one that does not follow it is
    /// a 502.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    response_format: Option<Value>,
    /// `false` skips the response cache: no kept answer is given, and this one is not kept
    /// (for models with `cache` in their configuration; `Cache-Control: no-store` does the
    /// same, `no-cache` asks the model and keeps its new answer).
    #[serde(default = "yes")]
    #[schema(default = true)]
    cache: bool,
}

fn yes() -> bool {
    true
}

fn no_retrieval() -> String {
    NO_RETRIEVAL.to_owned()
}

/// The body of `POST /generate` as the route reads it: JSON, with the place of any error, then
/// every value checked against the server's limits. The question, and whether to stream it.
pub fn read(body: &[u8], server: &ServerConfig) -> Result<(Question, bool), RequestError> {
    crate::json::parse::<GenerateRequest>(body)?.check(server)
}

impl GenerateRequest {
    /// Values in range, reported all at once. The question, and whether to stream it.
    pub fn check(self, server: &ServerConfig) -> Result<(Question, bool), RequestError> {
        let request = self;
        let limits = &server.limits;
        let mut errors = Vec::new();
        if request.prompt.trim().is_empty() {
            errors.push(FieldError::new(
                &["body", "prompt"],
                "String should have at least 1 character",
                "string_too_short",
            ));
        }
        errors.extend(check_length(
            &["body", "prompt"],
            &request.prompt,
            limits.max_prompt_chars,
        ));
        if let Some(system) = &request.system {
            errors.extend(check_length(
                &["body", "system"],
                system,
                limits.max_prompt_chars,
            ));
        }
        if request.llm_name.trim().is_empty() {
            errors.push(FieldError::new(
                &["body", "llm_name"],
                "String should have at least 1 character",
                "string_too_short",
            ));
        }
        errors.extend(check_top_k(request.top_k, server.max_top_k));
        let filter = read_filter(request.filter.as_ref())
            .map_err(|e| errors.push(filter_field_error(&e)))
            .unwrap_or_default();
        let response_format = read_response_format(request.response_format.as_ref())
            .map_err(|e| {
                let place: Vec<&str> = ["body", "response_format"]
                    .into_iter()
                    .chain(e.path.iter().map(String::as_str))
                    .collect();
                errors.push(FieldError::new(&place, &e.message, "response_format"));
            })
            .unwrap_or_default();
        errors.extend(check_max_tokens(request.max_tokens, limits.max_tokens));
        if let Some(t) = request.temperature
            && !(0.0..=2.0).contains(&t)
        {
            errors.push(FieldError::new(
                &["body", "temperature"],
                "Input should be between 0 and 2",
                "range",
            ));
        }
        if !errors.is_empty() {
            return Err(RequestError::Invalid(errors));
        }
        let stream = request.stream;
        Ok((
            Question {
                prompt: request.prompt,
                llm_name: request.llm_name,
                vector_search_type: request.vector_search_type,
                top_k: request.top_k,
                retrieval: request.retrieval,
                filter,
                max_tokens: request.max_tokens,
                temperature: request.temperature,
                system: request.system,
                response_format,
                cache: request.cache,
            },
            stream,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_question_reads_with_its_defaults() {
        let (question, stream) = read(
            br#"{"prompt": "What is a qubit?", "llm_name": "local", "unknown": 1}"#,
            &ServerConfig::default(),
        )
        .expect("a valid question");
        assert_eq!(question.prompt, "What is a qubit?");
        assert_eq!(question.vector_search_type, NO_RETRIEVAL);
        assert_eq!(question.top_k, None);
        assert!(!stream);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let server = ServerConfig::default();
        let body = format!(
            r#"{{"prompt": " ", "llm_name": "", "top_k": {}, "filter": {{"a": []}}, "max_tokens": 0, "temperature": 3}}"#,
            server.max_top_k + 1
        );
        let Err(RequestError::Invalid(errors)) = read(body.as_bytes(), &server) else {
            panic!("an invalid question passed");
        };
        let places: Vec<&str> = errors.iter().map(|e| e.loc[1].as_str()).collect();
        assert_eq!(
            places,
            [
                "prompt",
                "llm_name",
                "top_k",
                "filter",
                "max_tokens",
                "temperature"
            ]
        );
    }

    #[test]
    fn long_prompts_name_the_limit() {
        let mut server = ServerConfig::default();
        server.limits.max_prompt_chars = 3;
        // Four characters, eight bytes: characters are what counts.
        let Err(RequestError::Invalid(errors)) =
            read(r#"{"prompt": "ééé", "llm_name": "m"}"#.as_bytes(), &server)
                .map(|_| ())
                .and_then(|()| read(r#"{"prompt": "éééé", "llm_name": "m"}"#.as_bytes(), &server))
        else {
            panic!("a prompt over the limit passed");
        };
        assert_eq!(errors[0].kind, "string_too_long");
        assert!(
            errors[0].msg.contains("max_prompt_chars"),
            "{}",
            errors[0].msg
        );
    }
}
