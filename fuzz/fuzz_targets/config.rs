//! The configuration loader, validation included: whatever the text, no panic; a rejected file
//! names at least one problem; an accepted one is accepted again, unchanged, when its TOML is
//! written back out (validation depends on the content, not on its spelling), and what serving
//! derives from it (durations, missing variables) is computed without a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ragway_core::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, "fuzz.toml") {
        Err(error) => {
            assert!(!error.issues.is_empty(), "rejected without a reason");
            for issue in &error.issues {
                assert!(!issue.message.is_empty(), "{issue:?}");
            }
            let _ = error.to_string();
        }
        Ok(config) => {
            assert!(config.server.default_top_k >= 1);
            assert!(config.server.max_top_k >= config.server.default_top_k);
            let _ = config.server.shutdown_grace();
            let _ = config.server.limits.request_timeout();
            let _ = config.server.limits.stream_idle_timeout();
            let _ = config.missing_env();
            for llm in &config.llm {
                let _ = (llm.retry(), llm.cooldown().duration(), llm.model_id());
            }
            let table: toml::Table = text.parse().expect("accepted text is TOML");
            let Ok(rewritten) = toml::to_string(&table) else {
                return;
            };
            let again = Config::parse(&rewritten, "fuzz.toml").unwrap_or_else(|error| {
                panic!("accepted, then rejected once rewritten:\n{rewritten}\n{error}")
            });
            assert_eq!(
                format!("{config:?}"),
                format!("{again:?}"),
                "the rewritten TOML means something else:\n{rewritten}"
            );
        }
    }
});
