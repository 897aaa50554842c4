//! `POST /v1/chat/completions`' body, read as the route reads it: whatever the bytes, no panic,
//! and the outcome is either a conversation within every limit or an error that names the
//! field at fault (OpenAI's `param`) and says what is wrong. Whether the named model exists is
//! the server's to check, after this.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ragway_core::config::{NO_RETRIEVAL, ServerConfig};
use ragway_fuzz::is_json;
use ragway_requests::RequestError;

fuzz_target!(|body: &[u8]| {
    let server = ServerConfig::default();
    let limits = &server.limits;
    match ragway_requests::chat::read(body, &server) {
        Ok(checked) => {
            assert!(is_json(body), "accepted a body that is not JSON");
            let conversation = &checked.conversation;
            let request = &conversation.request;
            assert!(!request.messages.is_empty(), "no messages passed");
            let chars: usize = request
                .messages
                .iter()
                .map(|m| m.content.chars().count())
                .sum();
            assert!(
                chars <= limits.max_prompt_chars,
                "{chars} characters passed"
            );
            if let Some(max_tokens) = request.max_tokens {
                assert!(
                    (1..=limits.max_tokens).contains(&max_tokens),
                    "max_tokens {max_tokens}"
                );
            }
            if let Some(t) = request.temperature {
                assert!((0.0..=2.0).contains(&t), "temperature {t}");
            }
            if let Some(p) = request.top_p {
                assert!((0.0..=1.0).contains(&p), "top_p {p}");
            }
            assert!(request.stop.len() <= 4 && request.stop.iter().all(|s| !s.is_empty()));
            if let Some(top_k) = conversation.top_k {
                assert!((1..=server.max_top_k).contains(&top_k), "top_k {top_k}");
            }
            assert!((1..=10).contains(&checked.choices), "n {}", checked.choices);
            assert!(!(checked.stream && checked.choices > 1), "n > 1 streamed");
            assert_eq!(
                checked.grounded,
                conversation.vector_search_type != NO_RETRIEVAL
            );
            if let Some(ragway_core::ToolChoice::Named(name)) = &request.tool_choice {
                assert!(request.tools.iter().any(|t| &t.name == name));
            }
        }
        Err(RequestError::Invalid(errors)) => {
            assert!(!errors.is_empty(), "an error that names no problem");
            for problem in &errors {
                assert!(!problem.msg.is_empty(), "{problem:?}");
            }
        }
        Err(RequestError::BadRequest { param, message }) => {
            assert!(!param.is_empty(), "an error without its field: {message}");
            assert!(!message.is_empty(), "an error without a message at {param}");
        }
    }
});
