//! What answering a question can fail with, whoever asked: the HTTP server maps each case to a
//! status in its one place (`ragway_server::error`), the CLI prints the sentence.

use std::time::Duration;

use ragway_core::ProviderError;

/// Everything the engine can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("Unknown llm_name \"{name}\". Valid names: {}", .known.join(", "))]
    UnknownModel { name: String, known: Vec<String> },

    #[error("Unknown vector_search_type \"{name}\". Valid names: {}", .known.join(", "))]
    UnknownStore { name: String, known: Vec<String> },

    /// A well-formed request asks for something the model or store cannot do.
    #[error("{message}")]
    BadRequest {
        /// The offending field, OpenAI-style (`messages.2.content`).
        param: Option<String>,
        message: String,
    },

    /// Every model that could answer is set aside after failing repeatedly.
    #[error("{}", cooling_message(.models))]
    CoolingDown {
        /// Each model with the time left in its cooldown.
        models: Vec<(String, Duration)>,
    },

    /// The model's answer is not the JSON the request's `response_format` asked for.
    #[error("model \"{model}\" did not answer in the requested response_format: {reason}")]
    InvalidAnswer {
        model: String,
        reason: String,
        /// The tokens the model read and wrote all the same (every choice's prompt and
        /// answer): spent, so charged, though the answer is refused.
        tokens_spent: u64,
    },

    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// How long to wait when nothing better is known.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

impl EngineError {
    pub fn bad_request(param: &str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            param: Some(param.to_owned()),
            message: message.into(),
        }
    }

    /// When the first model set aside may answer again (for `Retry-After`): only for
    /// [`CoolingDown`](Self::CoolingDown).
    pub fn cooldown_ends(&self) -> Option<Duration> {
        match self {
            Self::CoolingDown { models } => Some(earliest_end(models)),
            _ => None,
        }
    }
}

fn cooling_message(models: &[(String, Duration)]) -> String {
    let listed: Vec<String> = models
        .iter()
        .map(|(name, left)| format!("\"{name}\" ({}s left)", left.as_secs_f64().ceil()))
        .collect();
    format!(
        "Every model that could answer is cooling down after repeated upstream failures: {}. \
         Try again in {}s.",
        listed.join(", "),
        earliest_end(models).as_secs().max(1)
    )
}

/// When the first of these cooldowns ends, rounded up to whole seconds, so a client that
/// waits as told finds a model ready.
fn earliest_end(models: &[(String, Duration)]) -> Duration {
    let earliest = models.iter().map(|(_, left)| *left).min();
    earliest.map_or(DEFAULT_RETRY_AFTER, |left| {
        Duration::from_secs(left.as_secs() + u64::from(left.subsec_nanos() > 0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cooldown_names_its_models_and_the_first_end() {
        let error = EngineError::CoolingDown {
            models: vec![
                ("a".into(), Duration::from_millis(2_500)),
                ("b".into(), Duration::from_secs(9)),
            ],
        };
        assert_eq!(error.cooldown_ends(), Some(Duration::from_secs(3)));
        let message = error.to_string();
        assert!(message.contains("\"a\" (3s left)"), "{message}");
        assert!(message.contains("Try again in 3s"), "{message}");
    }
}
