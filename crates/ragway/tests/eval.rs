//! `ragway eval` on the real binary: a small labelled set in BEIR's layout is ingested into a
//! FAISS store with the local embedder and searched, and every figure the command prints equals
//! trec_eval's own (through pytrec_eval) on the run file it wrote; a bad set is a clear error.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{ragway_bin, test_env};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Topics, each with a few documents; the first of each is the one its query is about.
const TOPICS: &[(&str, &[&str])] = &[
    (
        "volcano",
        &[
            "Volcanic eruptions eject lava, ash and gas from magma chambers beneath the crust.",
            "Ash clouds from a volcano ground aircraft for days.",
            "Basalt forms when lava cools quickly.",
        ],
    ),
    (
        "bees",
        &[
            "Honey bees communicate the location of flowers with a waggle dance.",
            "Beekeepers harvest honey from hives in late summer.",
            "Pollinators such as bees and moths carry pollen between plants.",
        ],
    ),
    (
        "tides",
        &[
            "Ocean tides are caused by the gravitational pull of the moon and the sun.",
            "Spring tides happen when the sun and moon align.",
            "Harbours publish tide tables for sailors.",
        ],
    ),
    (
        "vaccines",
        &[
            "Vaccines train the immune system to recognise a pathogen without causing disease.",
            "Booster doses restore waning antibody levels.",
            "Herd immunity protects people who cannot be vaccinated.",
        ],
    ),
    (
        "bread",
        &[
            "Yeast ferments sugars in dough, releasing carbon dioxide that makes bread rise.",
            "Sourdough uses wild yeast and lactic acid bacteria.",
            "Kneading develops gluten in wheat flour.",
        ],
    ),
    (
        "glaciers",
        &[
            "Glaciers carve U-shaped valleys as they slowly flow downhill.",
            "Glacial meltwater feeds many rivers in spring.",
            "Ice cores record the climate of past millennia.",
        ],
    ),
    (
        "chess",
        &[
            "In chess, castling moves the king two squares towards a rook.",
            "The Sicilian Defence is a popular reply to 1.e4.",
            "A stalemate in chess ends the game in a draw.",
        ],
    ),
    (
        "batteries",
        &[
            "Lithium-ion batteries store energy by moving lithium ions between electrodes.",
            "Battery capacity fades with every charge cycle.",
            "Solid-state batteries replace the liquid electrolyte.",
        ],
    ),
];

/// Writes the set: corpus (one long document with several chunks), queries, graded qrels.
fn write_set(dir: &Path) {
    let mut corpus = String::new();
    for (topic, documents) in TOPICS {
        for (n, text) in documents.iter().enumerate() {
            let line = serde_json::json!({"_id": format!("{topic}-{n}"), "title": format!("{topic} {n}"), "text": text, "metadata": {}});
            writeln!(corpus, "{line}").unwrap();
        }
    }
    // A long document: many chunks, one document in the run.
    let long = "The history of cartography spans ancient clay tablets, medieval portolan charts and satellite surveys. ".repeat(40);
    writeln!(
        corpus,
        "{}",
        serde_json::json!({"_id": 99, "title": "maps", "text": long})
    )
    .unwrap();
    std::fs::write(dir.join("corpus.jsonl"), corpus).unwrap();

    let queries = [
        ("q1", "What causes a volcano to erupt?"),
        ("q2", "How do bees tell each other where flowers are?"),
        ("q3", "Why does the sea level rise and fall twice a day?"),
        (
            "q4",
            "How does immunisation prepare the body against infection?",
        ),
        ("q5", "What makes dough rise?"),
        ("q6", "How were old maps drawn?"),
        ("q7", "Which chess move involves the king and a rook?"),
        ("q8", "How do rechargeable cells hold charge?"),
        ("q9", "An unjudged question about nothing at all."),
    ];
    let mut lines = String::new();
    for (id, text) in queries {
        writeln!(lines, "{}", serde_json::json!({"_id": id, "text": text})).unwrap();
    }
    std::fs::write(dir.join("queries.jsonl"), lines).unwrap();

    // Graded: the topic's first document 2, its second 1; some judgements point at documents
    // a dense search will not rank first (so the figures are not all 1).
    let mut qrels = String::from("query-id\tcorpus-id\tscore\n");
    for (query, topic) in [
        ("q1", "volcano"),
        ("q2", "bees"),
        ("q3", "tides"),
        ("q4", "vaccines"),
        ("q5", "bread"),
        ("q7", "chess"),
        ("q8", "batteries"),
    ] {
        writeln!(qrels, "{query}\t{topic}-0\t2\n{query}\t{topic}-1\t1").unwrap();
    }
    qrels.push_str("q3\tglaciers-1\t1\nq5\tbees-1\t1\nq6\t99\t1\nq8\tchess-2\t1\nq8\tbread-2\t0\n");
    std::fs::create_dir(dir.join("qrels")).unwrap();
    std::fs::write(dir.join("qrels/test.tsv"), qrels).unwrap();
}

fn config(dir: &Path) -> String {
    format!(
        "[[embedder]]\nname = \"minilm\"\ntype = \"local\"\npath = \"{ROOT}/models/all-MiniLM-L6-v2\"\n\n\
         [[vector_store]]\nname = \"notes\"\ntype = \"faiss\"\npath = \"{}\"\nembedder = \"minilm\"\nchunk_size = 400\n",
        dir.join("store").display()
    )
}

/// A folder holding the set (`set/`) and a config (`ragway.toml`) with a store in `store/`.
fn prepared() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("set");
    std::fs::create_dir(&set).unwrap();
    write_set(&set);
    let config_path = dir.path().join("ragway.toml");
    std::fs::write(&config_path, config(dir.path())).unwrap();
    (dir, set, config_path)
}

fn ragway(config: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(ragway_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(test_env())
        .output()
        .unwrap()
}

#[test]
fn eval_figures_equal_trec_evals_on_the_run_it_writes() {
    let (dir, set, config_path) = prepared();
    let run_path = dir.path().join("run.trec");

    let out = ragway(
        &config_path,
        &[
            "eval",
            "--store",
            "notes",
            set.to_str().unwrap(),
            "--ingest",
            "--mode",
            "dense,keyword,hybrid",
            "--depth",
            "20",
            "--json",
            "--run-file",
            run_path.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The ingest summary comes first, then the JSON report.
    let report: Value = serde_json::from_str(&stdout[stdout.find('{').unwrap()..]).unwrap();
    assert_eq!(report["queries"], 8, "{report}");
    assert_eq!(report["judgements"], 19, "{report}");
    let results = report["results"].as_array().unwrap();
    let modes: Vec<&str> = results
        .iter()
        .map(|r| r["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["dense", "keyword", "hybrid"], "{report}");
    let ours = &results[0];

    // The run: every judged query, 20 documents each, the long document once.
    let run = std::fs::read_to_string(&run_path).unwrap();
    let q6: Vec<&str> = run
        .lines()
        .filter(|l| l.starts_with("q6 ") && l.ends_with(" ragway-dense"))
        .collect();
    assert_eq!(q6.len(), 20, "{run}");
    assert_eq!(q6.iter().filter(|l| l.contains(" 99 ")).count(), 1, "{run}");
    assert!(!run.contains("q9 "), "unjudged queries are not run");

    // Each mode's figures against trec_eval's on that mode's lines of the run file.
    for result in results {
        let tag = format!("ragway-{}", result["mode"].as_str().unwrap());
        let check = std::process::Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/eval_check.py"))
            .arg(set.join("qrels/test.tsv"))
            .arg(&run_path)
            .arg(&tag)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let theirs: Value = serde_json::from_slice(&check.stdout).unwrap();
        assert_eq!(theirs["queries_with_results"], 8, "{tag}: {theirs}");
        for measure in ["ndcg@10", "recall@10", "recall@100", "mrr@10", "map"] {
            let (a, b) = (
                result[measure].as_f64().unwrap(),
                theirs[measure].as_f64().unwrap(),
            );
            assert!(
                (a - b).abs() < 1e-6,
                "{tag} {measure}: ragway {a}, trec_eval {b}"
            );
        }
    }
    // Not a set every system aces: the figures say something.
    let ndcg = ours["ndcg@10"].as_f64().unwrap();
    assert!(ndcg > 0.3 && ndcg < 1.0, "{ours}");
    assert!(ours["search_ms"]["p99"].as_f64().unwrap() > 0.0, "{ours}");

    // Run again without --ingest: the store is there; the table names every figure.
    let out = ragway(
        &config_path,
        &["eval", "--store", "notes", set.to_str().unwrap()],
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    for heading in [
        "nDCG@10", "R@10", "R@100", "MRR@10", "MAP", "p50 ms", "p99 ms",
    ] {
        assert!(table.contains(heading), "{table}");
    }
    assert!(
        table.contains(&format!("{ndcg:.4}")),
        "the same figures again: {table}"
    );
}

#[test]
fn a_bad_labelled_set_is_a_clear_error() {
    let (_dir, set, config_path) = prepared();

    let out = ragway(
        &config_path,
        &[
            "eval",
            "--store",
            "notes",
            set.to_str().unwrap(),
            "--split",
            "dev",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("qrels/dev.tsv"), "{stderr}");

    std::fs::write(
        set.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq1\tvolcano-0\thigh\n",
    )
    .unwrap();
    let out = ragway(
        &config_path,
        &["eval", "--store", "notes", set.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("test.tsv:2") && stderr.contains("whole number"),
        "{stderr}"
    );

    let out = ragway(
        &config_path,
        &["eval", "--store", "nope", set.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no vector_store named \"nope\""),
        "{stderr}"
    );
}
