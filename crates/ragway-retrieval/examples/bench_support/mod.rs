//! What the store benchmarks share: their `--key value` flags, clustered unit vectors like
//! real embeddings, an embedder that looks them up by name (so embedding costs nothing), and
//! the latency summary line.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ragway_core::{Embedder, ProviderError};

/// The command line's `--key value` pairs.
pub struct Flags(HashMap<String, String>);

impl Flags {
    pub fn parse() -> Result<Self, String> {
        let mut map = HashMap::new();
        let raw: Vec<String> = std::env::args().skip(1).collect();
        for pair in raw.chunks(2) {
            match pair {
                [key, value] => {
                    map.insert(key.trim_start_matches("--").to_owned(), value.clone());
                }
                _ => return Err(format!("missing value after {}", pair[0])),
            }
        }
        Ok(Self(map))
    }

    pub fn get(&self, key: &str) -> Option<&String> {
        self.0.get(key)
    }

    /// A whole number, `default` when absent.
    pub fn number(&self, key: &str, default: usize) -> Result<usize, String> {
        self.0.get(key).map_or(Ok(default), |v| {
            v.parse().map_err(|_| format!("--{key}: not a number"))
        })
    }
}

/// Deterministic pseudo-random unit vectors.
pub fn unit_vectors(count: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(count * dim);
    for _ in 0..count {
        let start = out.len();
        for _ in 0..dim {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.push((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5);
        }
        let norm = out[start..].iter().map(|x| x * x).sum::<f32>().sqrt();
        for x in &mut out[start..] {
            *x /= norm;
        }
    }
    out
}

/// `count` unit vectors around `clusters` random centres (uniform when `clusters` is 0): each
/// is a centre plus a random offset of half its length, normalised.
pub fn clustered_vectors(count: usize, dim: usize, clusters: usize, seed: u64) -> Vec<f32> {
    if clusters == 0 {
        return unit_vectors(count, dim, seed);
    }
    let centres = unit_vectors(clusters, dim, 1234);
    let mut out = unit_vectors(count, dim, seed);
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for vector in out.chunks_mut(dim) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let centre = &centres[(state as usize % clusters) * dim..][..dim];
        for (x, c) in vector.iter_mut().zip(centre) {
            *x = c + 0.5 * *x;
        }
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        vector.iter_mut().for_each(|x| *x /= norm);
    }
    out
}

/// Looks vectors up by name: `v<i>` is base vector i, `q<i>` query i.
pub struct LookupEmbedder {
    pub dim: usize,
    pub base: Arc<Vec<f32>>,
    pub queries: Arc<Vec<f32>>,
}

#[async_trait]
impl Embedder for LookupEmbedder {
    fn dimension(&self) -> usize {
        self.dim
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        texts
            .iter()
            .map(|t| {
                let (table, i) = match t.split_at(1) {
                    ("v", i) => (&self.base, i),
                    ("q", i) => (&self.queries, i),
                    _ => return Err(ProviderError::invalid_response("lookup", t.clone())),
                };
                let i: usize = i
                    .parse()
                    .map_err(|_| ProviderError::invalid_response("lookup", t.clone()))?;
                Ok(table[i * self.dim..(i + 1) * self.dim].to_vec())
            })
            .collect()
    }
}

pub fn summary(label: &str, mut times: Vec<Duration>, wall: Duration) {
    times.sort();
    let pick = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    println!(
        "{label:<34} p50 {:>8.3} ms  p99 {:>8.3} ms  mean {:>8.3} ms  {:>9.1} QPS",
        pick(0.5).as_secs_f64() * 1e3,
        pick(0.99).as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3,
        times.len() as f64 / wall.as_secs_f64()
    );
}
