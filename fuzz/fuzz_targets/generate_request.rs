//! `POST /generate`'s body, read as the route reads it: whatever the bytes, no panic, and the
//! outcome is one of two things: a question within every limit, or a 422 that locates each
//! problem in the body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ragway_core::config::ServerConfig;
use ragway_fuzz::is_json;
use ragway_requests::RequestError;

fuzz_target!(|body: &[u8]| {
    let server = ServerConfig::default();
    let limits = &server.limits;
    match ragway_requests::generate::read(body, &server) {
        Ok((question, _stream)) => {
            assert!(is_json(body), "accepted a body that is not JSON");
            assert!(!question.prompt.trim().is_empty(), "a blank prompt passed");
            assert!(
                !question.llm_name.trim().is_empty(),
                "a blank llm_name passed"
            );
            assert!(question.prompt.chars().count() <= limits.max_prompt_chars);
            if let Some(system) = &question.system {
                assert!(system.chars().count() <= limits.max_prompt_chars);
            }
            if let Some(top_k) = question.top_k {
                assert!((1..=server.max_top_k).contains(&top_k), "top_k {top_k}");
            }
            if let Some(max_tokens) = question.max_tokens {
                assert!(
                    (1..=limits.max_tokens).contains(&max_tokens),
                    "max_tokens {max_tokens}"
                );
            }
            if let Some(t) = question.temperature {
                assert!((0.0..=2.0).contains(&t), "temperature {t}");
            }
        }
        Err(RequestError::Invalid(errors)) => {
            assert!(!errors.is_empty(), "a 422 that names no problem");
            for problem in &errors {
                assert_eq!(
                    problem.loc.first().map(String::as_str),
                    Some("body"),
                    "{problem:?}"
                );
                assert!(
                    !problem.msg.is_empty() && !problem.kind.is_empty(),
                    "{problem:?}"
                );
            }
            // What a client reads: it must render and serialise.
            let _ = RequestError::Invalid(errors.clone()).to_string();
            assert!(serde_json::to_string(&errors).is_ok());
        }
        Err(other) => panic!("/generate reports every problem located, got {other:?}"),
    }
});
