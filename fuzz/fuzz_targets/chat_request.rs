//! `POST /v1/chat/completions`' body, read as the route reads it, against a registry with one
//! OpenAI-compatible model: whatever the bytes, no panic, and the outcome is either a
//! conversation within every limit or an OpenAI-shaped 400/404 with a message.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ragway_core::config::{Config, NO_RETRIEVAL};
use ragway_server::Registry;

/// Built once: an OpenAI-compatible model that is never called (nothing listens there).
fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let config = Config::parse(
            "[[llm]]\nname = \"gpt\"\ntype = \"openai\"\nmodel = \"gpt-4o\"\n\
             base_url = \"http://127.0.0.1:9/v1\"\n",
            "fuzz",
        )
        .expect("the fuzz config parses");
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(Registry::build(&config))
            .expect("the fuzz registry builds")
    })
}

fuzz_target!(|body: &[u8]| {
    let registry = registry();
    let limits = &registry.server.limits;
    match ragway_server::requests::chat_completion(body, registry) {
        Ok(conversation) => {
            assert!(serde_json::from_slice::<serde_json::Value>(body).is_ok());
            assert_eq!(
                conversation.llm_name, "gpt",
                "only a configured model is accepted"
            );
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
                assert!(
                    (1..=registry.server.max_top_k).contains(&top_k),
                    "top_k {top_k}"
                );
            }
            if conversation.vector_search_type != NO_RETRIEVAL {
                // Stores are resolved later (a 400 naming the valid ones); none exist here.
                assert!(registry.store(&conversation.vector_search_type).is_err());
            }
        }
        Err(error) => {
            let status = error.0.status().0.as_u16();
            assert!(
                matches!(status, 400 | 404),
                "status {status} for a bad body: {:?}",
                error.0
            );
            let body = error.body();
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(!message.is_empty(), "an error without a message: {body}");
        }
    }
});
