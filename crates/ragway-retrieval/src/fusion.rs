//! Reciprocal rank fusion (Cormack, Clarke and Büttcher, SIGIR 2009): rankings from different
//! retrievers, whose scores are not comparable (cosine similarity, BM25), combined by rank
//! alone. A passage scores `weight / (k + rank)` in each ranking it appears in (rank from 1),
//! summed; the best `top_k` are kept. Passages are the same when their ids are.

use std::collections::HashMap;
use std::future::Future;

use ragway_core::Passage;
use ragway_core::config::{HybridConfig, RetrievalMode};

/// A hybrid search: `search` asked for dense and keyword candidates at once (`candidates_factor`
/// times `top_k` of each, at least 50), the two rankings fused by [`reciprocal_rank`].
pub async fn hybrid<F, Fut, E>(
    config: &HybridConfig,
    top_k: usize,
    search: F,
) -> Result<Vec<Passage>, E>
where
    F: Fn(RetrievalMode, usize) -> Fut,
    Fut: Future<Output = Result<Vec<Passage>, E>>,
{
    let candidates = top_k.saturating_mul(config.candidates_factor).max(50);
    let (dense, keyword) = futures::try_join!(
        search(RetrievalMode::Dense, candidates),
        search(RetrievalMode::Keyword, candidates),
    )?;
    Ok(reciprocal_rank(
        &[
            (&dense, config.dense_weight),
            (&keyword, config.keyword_weight),
        ],
        config.rrf_k,
        top_k,
    ))
}

/// Fuses `rankings` (each best first, with its weight) into the `top_k` best passages, with
/// the fused score; ties keep the order of first appearance.
pub fn reciprocal_rank(rankings: &[(&[Passage], f64)], k: f64, top_k: usize) -> Vec<Passage> {
    let mut fused: Vec<(Passage, f64)> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for (ranking, weight) in rankings {
        for (rank, passage) in ranking.iter().enumerate() {
            let score = weight / (k + (rank + 1) as f64);
            match at.get(&passage.id) {
                Some(&i) => fused[i].1 += score,
                None => {
                    at.insert(passage.id.clone(), fused.len());
                    fused.push((passage.clone(), score));
                }
            }
        }
    }
    // Stable: equal scores keep the order in which the passages were first met.
    fused.sort_by(|a, b| b.1.total_cmp(&a.1));
    fused
        .into_iter()
        .take(top_k)
        .map(|(mut passage, score)| {
            passage.score = score as f32;
            passage
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranking(ids: &[&str]) -> Vec<Passage> {
        ids.iter()
            .map(|id| Passage {
                id: (*id).to_owned(),
                text: format!("text of {id}"),
                score: 0.0,
                title: None,
                uri: None,
                metadata: serde_json::Map::new(),
            })
            .collect()
    }

    #[test]
    fn passages_in_both_rankings_rise_and_weights_count() {
        let dense = ranking(&["a", "b", "c"]);
        let keyword = ranking(&["c", "d", "a"]);
        let fused = reciprocal_rank(&[(&dense, 1.0), (&keyword, 1.0)], 60.0, 3);
        let ids: Vec<&str> = fused.iter().map(|p| p.id.as_str()).collect();
        // a: 1/61 + 1/63; c: 1/63 + 1/61 (equal, a met first); b: 1/62; d: 1/62.
        assert_eq!(ids, ["a", "c", "b"]);
        assert!((f64::from(fused[0].score) - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-6);
        assert_eq!(fused[1].text, "text of c");

        // Keyword alone, as a weight of 0 for dense makes it.
        let fused = reciprocal_rank(&[(&dense, 0.0), (&keyword, 1.0)], 60.0, 2);
        let ids: Vec<&str> = fused.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["c", "d"]);
        assert!(reciprocal_rank(&[(&dense, 1.0)], 60.0, 0).is_empty());
    }
}
