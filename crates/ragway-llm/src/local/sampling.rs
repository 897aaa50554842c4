//! How the next token is chosen: greedy, or random with llama-server's truncation and a seed
//! that makes it repeatable.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::SystemTime;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;

/// Sampling truncation for non-greedy requests, llama-server's defaults, which keep small
/// models from wandering into the long tail.
const TOP_K: i32 = 40;
const TOP_P: f32 = 0.95;
const MIN_P: f32 = 0.05;

/// How the next token is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Sampling {
    /// The most likely token: no temperature, or zero.
    Greedy,
    Random {
        temperature: f32,
        top_p: f32,
        seed: u32,
    },
}

impl Sampling {
    /// Random sampling when a temperature above zero is asked for; `seed` makes it repeatable.
    pub(super) fn new(temperature: Option<f32>, top_p: Option<f32>, seed: Option<u64>) -> Self {
        match temperature {
            Some(temperature) if temperature > 0.0 => Self::Random {
                temperature,
                top_p: top_p.filter(|p| *p > 0.0 && *p <= 1.0).unwrap_or(TOP_P),
                // llama.cpp takes 32 bits; fold the high half in rather than drop it.
                seed: seed.map_or_else(
                    || RandomState::new().hash_one(SystemTime::now()) as u32,
                    |seed| (seed ^ (seed >> 32)) as u32,
                ),
            },
            _ => Self::Greedy,
        }
    }

    /// The sampler; with a `grammar` (GBNF, from a request's JSON Schema), only tokens the
    /// grammar allows are ever chosen, so the answer parses whatever the model's taste.
    pub(super) fn sampler(
        self,
        model: &LlamaModel,
        grammar: Option<&str>,
    ) -> Result<LlamaSampler, String> {
        let constrained = match grammar {
            Some(grammar) => Some(
                LlamaSampler::grammar(model, grammar, "root")
                    .map_err(|e| format!("the answer's grammar cannot be used: {e}"))?,
            ),
            None => None,
        };
        let choose = match self {
            Self::Greedy => vec![LlamaSampler::greedy()],
            Self::Random {
                temperature,
                top_p,
                seed,
            } => vec![
                LlamaSampler::top_k(TOP_K),
                LlamaSampler::top_p(top_p, 1),
                LlamaSampler::min_p(MIN_P, 1),
                LlamaSampler::temp(temperature),
                LlamaSampler::dist(seed),
            ],
        };
        Ok(LlamaSampler::chain_simple(
            constrained.into_iter().chain(choose),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_greedy_without_temperature() {
        assert_eq!(Sampling::new(None, None, Some(1)), Sampling::Greedy);
        assert_eq!(Sampling::new(Some(0.0), Some(0.5), None), Sampling::Greedy);
        assert!(matches!(
            Sampling::new(Some(0.7), Some(0.5), None),
            Sampling::Random { top_p, .. } if top_p == 0.5
        ));
        assert_eq!(
            Sampling::new(Some(0.7), None, Some(42)),
            Sampling::new(Some(0.7), None, Some(42)),
            "a seed makes sampling repeatable"
        );
    }
}
