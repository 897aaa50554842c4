//! Measuring retrieval on a labelled set in BEIR's layout (`corpus.jsonl` with `_id`, `title`,
//! `text`; `queries.jsonl` with `_id`, `text`; `qrels/<split>.tsv` with `query-id`,
//! `corpus-id`, `score`): reading the set, turning a store's chunk hits into a document run
//! (a document scores as its best chunk), the metrics, and the TREC run file other tools read.

pub mod metrics;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ragway_core::Passage;
use serde::Deserialize;

use crate::error::{Error, Result};
pub use metrics::{Qrels, Run, Scores, evaluate};

/// The queries and judgements of one split of a labelled set.
#[derive(Debug)]
pub struct Dataset {
    pub dir: PathBuf,
    pub split: String,
    /// The judged queries (query id, text), in the order of `queries.jsonl`.
    pub queries: Vec<(String, String)>,
    pub qrels: Qrels,
}

impl Dataset {
    /// The set's corpus file (documents to ingest).
    pub fn corpus(&self) -> PathBuf {
        self.dir.join("corpus.jsonl")
    }

    /// Judgements in all.
    pub fn judgements(&self) -> usize {
        self.qrels.values().map(HashMap::len).sum()
    }

    /// Reads `dir` in BEIR's layout: the judgements of `split` and the queries they judge. A
    /// judged query missing from `queries.jsonl` is an error naming it.
    pub fn read(dir: &Path, split: &str) -> Result<Self> {
        let qrels_path = dir.join("qrels").join(format!("{split}.tsv"));
        let qrels = read_qrels(&qrels_path)?;
        let queries_path = dir.join("queries.jsonl");
        let text =
            std::fs::read_to_string(&queries_path).map_err(|e| Error::io(&queries_path, e))?;
        let mut queries = Vec::new();
        let mut seen = HashSet::new();
        for (n, raw) in text.lines().enumerate() {
            if raw.trim().is_empty() {
                continue;
            }
            let query: QueryLine = serde_json::from_str(raw).map_err(|e| Error::Line {
                path: queries_path.clone(),
                line: n + 1,
                message: e.to_string(),
            })?;
            let id = query.id.as_string().ok_or_else(|| Error::Line {
                path: queries_path.clone(),
                line: n + 1,
                message: "`_id` must be a string or a number".into(),
            })?;
            if qrels.contains_key(&id) && seen.insert(id.clone()) {
                queries.push((id, query.text));
            }
        }
        if let Some(missing) = qrels.keys().find(|id| !seen.contains(*id)) {
            return Err(Error::invalid(
                &queries_path,
                format!(
                    "query \"{missing}\" is judged in {} but not here",
                    qrels_path.display()
                ),
            ));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            split: split.to_owned(),
            queries,
            qrels,
        })
    }
}

#[derive(Deserialize)]
struct QueryLine {
    #[serde(rename = "_id", alias = "id")]
    id: Id,
    text: String,
}

/// An id written as a string or a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum Id {
    Text(String),
    Number(serde_json::Number),
}

impl Id {
    fn as_string(&self) -> Option<String> {
        match self {
            Self::Text(id) if !id.is_empty() => Some(id.clone()),
            Self::Text(_) => None,
            Self::Number(id) => Some(id.to_string()),
        }
    }
}

/// Reads a qrels file: tab-separated `query-id corpus-id score`, with an optional header line.
fn read_qrels(path: &Path) -> Result<Qrels> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut qrels = Qrels::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || (n == 0 && line.starts_with("query-id")) {
            continue;
        }
        let bad = |message: &str| Error::Line {
            path: path.to_path_buf(),
            line: n + 1,
            message: message.to_owned(),
        };
        let fields: Vec<&str> = line.split('\t').collect();
        // BEIR's three columns, or TREC's four (`query 0 document relevance`).
        let (query, document, relevance) = match fields.as_slice() {
            [q, d, r] | [q, _, d, r] => (*q, *d, *r),
            _ => {
                return Err(bad(
                    "expected query-id, corpus-id and score separated by tabs",
                ));
            }
        };
        let relevance: i64 = relevance
            .trim()
            .parse()
            .map_err(|_| bad("the score must be a whole number"))?;
        qrels
            .entry(query.trim().to_owned())
            .or_default()
            .insert(document.trim().to_owned(), relevance);
    }
    if qrels.is_empty() {
        return Err(Error::invalid(path, "no judgements"));
    }
    Ok(qrels)
}

/// The document a passage comes from: its id without the `#<chunk>` a store adds.
pub fn document_of(passage: &Passage) -> &str {
    match passage.id.rsplit_once('#') {
        Some((document, chunk))
            if chunk.bytes().all(|b| b.is_ascii_digit()) && !chunk.is_empty() =>
        {
            document
        }
        _ => &passage.id,
    }
}

/// Chunk hits (best first) as up to `depth` documents, each scored by its best chunk.
pub fn documents(passages: &[Passage], depth: usize) -> Vec<(String, f32)> {
    let mut best: Vec<(String, f32)> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    for passage in passages {
        let document = document_of(passage);
        match at.get(document) {
            Some(&i) => best[i].1 = best[i].1.max(passage.score),
            None => {
                at.insert(document, best.len());
                best.push((document.to_owned(), passage.score));
            }
        }
    }
    let mut ranked: Vec<(String, f32)> = metrics::ranked(&best).into_iter().cloned().collect();
    ranked.truncate(depth);
    ranked
}

/// A run in TREC's format, `query Q0 document rank score tag` per line, each query's documents
/// in trec_eval's order (scores as they are, so tools rank them alike).
pub fn trec_run(run: &Run, tag: &str) -> String {
    let mut out = String::new();
    for (query, results) in run {
        for (rank, (document, score)) in metrics::ranked(results).into_iter().enumerate() {
            let _ = writeln!(out, "{query} Q0 {document} {} {score} {tag}", rank + 1);
        }
    }
    out
}

/// The `p`-th percentile (0–100) of `values`, nearest rank; 0 for none.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passage(id: &str, score: f32) -> Passage {
        Passage {
            id: id.into(),
            text: String::new(),
            score,
            title: None,
            uri: None,
            metadata: serde_json::Map::new(),
        }
    }

    #[test]
    fn a_document_scores_as_its_best_chunk() {
        let hits = [
            passage("a#1", 0.9),
            passage("b#0", 0.8),
            passage("a#0", 0.7),
            passage("c#x", 0.6), // not a chunk number: the id is the document's
            passage("d", 0.5),
        ];
        let docs = documents(&hits, 3);
        assert_eq!(
            docs,
            vec![("a".into(), 0.9), ("b".into(), 0.8), ("c#x".into(), 0.6)]
        );
    }

    #[test]
    fn a_beir_folder_is_read_and_a_judged_query_without_text_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("qrels")).unwrap();
        std::fs::write(
            dir.path().join("qrels/test.tsv"),
            "query-id\tcorpus-id\tscore\r\n1\td1\t1\r\n1\td2\t2\r\n7\td3\t1\r\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("queries.jsonl"),
            "{\"_id\": \"1\", \"text\": \"first\"}\n{\"_id\": 2, \"text\": \"unjudged\"}\n{\"_id\": 7, \"text\": \"seventh\", \"metadata\": {}}\n",
        )
        .unwrap();
        let set = Dataset::read(dir.path(), "test").unwrap();
        assert_eq!(
            set.queries,
            vec![("1".into(), "first".into()), ("7".into(), "seventh".into())]
        );
        assert_eq!(set.judgements(), 3);
        assert_eq!(set.qrels["1"]["d2"], 2);

        std::fs::write(
            dir.path().join("queries.jsonl"),
            "{\"_id\": \"1\", \"text\": \"q\"}\n",
        )
        .unwrap();
        let error = Dataset::read(dir.path(), "test").unwrap_err().to_string();
        assert!(error.contains("query \"7\" is judged in"), "{error}");
        let error = Dataset::read(dir.path(), "dev").unwrap_err().to_string();
        assert!(error.contains("dev.tsv"), "{error}");
    }

    #[test]
    fn the_run_file_lists_each_query_in_rank_order() {
        let run = Run::from([(
            "q".to_owned(),
            vec![("a".to_owned(), 0.5), ("b".to_owned(), 0.75)],
        )]);
        assert_eq!(trec_run(&run, "t"), "q Q0 b 1 0.75 t\nq Q0 a 2 0.5 t\n");
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 99.0), 99.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
