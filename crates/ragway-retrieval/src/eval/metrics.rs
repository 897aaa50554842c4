//! Retrieval metrics as trec_eval defines them (`trec_eval -c -m ndcg_cut.10 -m recall.10,100
//! -m map`, and the reciprocal rank of the first relevant document within the top 10), so that
//! figures can be set beside published ones and checked against `pytrec_eval` on the same run.
//!
//! As in trec_eval: a run's documents are ranked by score, highest first, ties broken by
//! document id in reverse byte order; a document is relevant when its judgement is at least 1;
//! nDCG's gain is the judgement itself with a `log2(rank + 1)` discount, its ideal ranking the
//! judgements sorted; and every judged query counts in the average, one with no results as 0.

use std::collections::{BTreeMap, HashMap};

/// Judgements: query id → document id → relevance (0 or less: not relevant).
pub type Qrels = BTreeMap<String, HashMap<String, i64>>;

/// A run: query id → (document id, score), in any order.
pub type Run = BTreeMap<String, Vec<(String, f32)>>;

/// The figures of one run over one set of judgements (each a mean over the judged queries).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Scores {
    #[serde(rename = "ndcg@10")]
    pub ndcg_10: f64,
    #[serde(rename = "recall@10")]
    pub recall_10: f64,
    #[serde(rename = "recall@100")]
    pub recall_100: f64,
    #[serde(rename = "mrr@10")]
    pub mrr_10: f64,
    pub map: f64,
}

/// The run's documents for one query in trec_eval's order.
pub fn ranked(results: &[(String, f32)]) -> Vec<&(String, f32)> {
    let mut ranked: Vec<&(String, f32)> = results.iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    ranked
}

/// The figures of `run` against `qrels`, averaged over the queries `qrels` judges.
pub fn evaluate(qrels: &Qrels, run: &Run) -> Scores {
    let mut total = Scores::default();
    let mut queries = 0usize;
    for (query, judged) in qrels {
        queries += 1;
        let results = run.get(query).map(Vec::as_slice).unwrap_or_default();
        let one = query_scores(judged, &ranked(results));
        total.ndcg_10 += one.ndcg_10;
        total.recall_10 += one.recall_10;
        total.recall_100 += one.recall_100;
        total.mrr_10 += one.mrr_10;
        total.map += one.map;
    }
    if queries == 0 {
        return Scores::default();
    }
    let n = queries as f64;
    Scores {
        ndcg_10: total.ndcg_10 / n,
        recall_10: total.recall_10 / n,
        recall_100: total.recall_100 / n,
        mrr_10: total.mrr_10 / n,
        map: total.map / n,
    }
}

/// One query's figures; `ranked` is in trec_eval's order.
fn query_scores(judged: &HashMap<String, i64>, ranked: &[&(String, f32)]) -> Scores {
    let relevance = |document: &str| judged.get(document).copied().unwrap_or(0);
    let relevant = judged.values().filter(|&&r| r >= 1).count();
    if relevant == 0 {
        return Scores::default();
    }

    let discount = |rank: usize| (rank as f64 + 1.0).log2(); // rank counts from 1
    let dcg: f64 = ranked
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, (document, _))| relevance(document).max(0) as f64 / discount(i + 1))
        .sum();
    let mut ideal: Vec<i64> = judged.values().copied().filter(|&r| r > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let ideal_dcg: f64 = ideal
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, &r)| r as f64 / discount(i + 1))
        .sum();

    let found_within = |k: usize| {
        ranked
            .iter()
            .take(k)
            .filter(|(document, _)| relevance(document) >= 1)
            .count() as f64
    };
    let first_relevant = ranked
        .iter()
        .take(10)
        .position(|(document, _)| relevance(document) >= 1);

    let mut found = 0usize;
    let mut precision_sum = 0.0;
    for (i, (document, _)) in ranked.iter().enumerate() {
        if relevance(document) >= 1 {
            found += 1;
            precision_sum += found as f64 / (i + 1) as f64;
        }
    }

    Scores {
        ndcg_10: if ideal_dcg > 0.0 {
            dcg / ideal_dcg
        } else {
            0.0
        },
        recall_10: found_within(10) / relevant as f64,
        recall_100: found_within(100) / relevant as f64,
        mrr_10: first_relevant.map_or(0.0, |i| 1.0 / (i + 1) as f64),
        map: precision_sum / relevant as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qrels(entries: &[(&str, &str, i64)]) -> Qrels {
        let mut qrels = Qrels::new();
        for (query, document, relevance) in entries {
            qrels
                .entry((*query).to_owned())
                .or_default()
                .insert((*document).to_owned(), *relevance);
        }
        qrels
    }

    fn run(entries: &[(&str, &[(&str, f32)])]) -> Run {
        entries
            .iter()
            .map(|(query, results)| {
                let results = results.iter().map(|(d, s)| ((*d).to_owned(), *s)).collect();
                ((*query).to_owned(), results)
            })
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn one_query_worked_by_hand() {
        // Relevant: a (2), c (1), z (1, never retrieved). Retrieved: b, a, d, c.
        let qrels = qrels(&[("q", "a", 2), ("q", "c", 1), ("q", "z", 1), ("q", "b", 0)]);
        let run = run(&[("q", &[("c", 0.4), ("a", 0.9), ("b", 1.0), ("d", 0.5)])]);
        let scores = evaluate(&qrels, &run);
        let dcg = 2.0 / 3f64.log2() + 1.0 / 5f64.log2();
        let ideal = 2.0 + 1.0 / 3f64.log2() + 1.0 / 2.0;
        assert!(close(scores.ndcg_10, dcg / ideal), "{scores:?}");
        assert!(close(scores.recall_10, 2.0 / 3.0));
        assert!(close(scores.recall_100, 2.0 / 3.0));
        assert!(close(scores.mrr_10, 0.5));
        assert!(close(scores.map, (1.0 / 2.0 + 2.0 / 4.0) / 3.0));
    }

    #[test]
    fn every_judged_query_counts_and_ties_go_to_the_higher_id() {
        let qrels = qrels(&[("q1", "x", 1), ("q2", "y", 1)]);
        // q2 has no results: it counts as 0. In q1, "x" and "w" tie: "x" ranks first.
        let run = run(&[("q1", &[("w", 0.5), ("x", 0.5)])]);
        let scores = evaluate(&qrels, &run);
        assert!(close(scores.mrr_10, 0.5), "{scores:?}");
        assert!(close(scores.ndcg_10, 0.5));
        assert!(close(scores.map, 0.5));
    }

    #[test]
    fn the_first_relevant_document_past_ten_gives_no_reciprocal_rank() {
        let qrels = qrels(&[("q", "hit", 1)]);
        let mut results: Vec<(String, f32)> = (0..10)
            .map(|i| (format!("miss{i}"), 1.0 - i as f32 * 0.01))
            .collect();
        results.push(("hit".into(), 0.0));
        let scores = evaluate(&qrels, &BTreeMap::from([("q".to_owned(), results)]));
        assert_eq!(scores.mrr_10, 0.0);
        assert_eq!(scores.recall_10, 0.0);
        assert!(close(scores.recall_100, 1.0));
        assert!(close(scores.map, 1.0 / 11.0));
    }
}
