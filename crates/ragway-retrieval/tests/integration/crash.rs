//! Atomic writes under a real crash: a child process (this test binary, re-invoked) ingests,
//! replaces and deletes in a loop; the parent kills it with SIGKILL at random moments and checks
//! after each kill that the store opens as committed (no rebuild: its index file, rows and
//! deleted labels agree), and every write the child finished is there.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ragway_core::config::{IndexKind, Metric};
use ragway_core::{DocumentStore, Filter};

use crate::support::{doc, open, topic_text};

const CHILD_DIR: &str = "RAGWAY_CRASH_CHILD_DIR";
const CHILD_START: &str = "RAGWAY_CRASH_CHILD_START";
const CHILD_KIND: &str = "RAGWAY_CRASH_CHILD_KIND";

fn kind_from(name: &str) -> IndexKind {
    if name == "hnsw" {
        IndexKind::Hnsw
    } else {
        IndexKind::Flat
    }
}

/// The child: does nothing unless the parent started it. Iteration `i` adds `doc-i` and
/// `tmp-i` and replaces `doc-(i/2)` in one write, then deletes `tmp-(i-1)` in another, then
/// prints `done i`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let start: usize = std::env::var(CHILD_START).unwrap().parse().unwrap();
    let kind = kind_from(&std::env::var(CHILD_KIND).unwrap());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = open(Path::new(&dir), Metric::InnerProduct, kind);
        for i in start.. {
            let documents = vec![
                doc(&format!("doc-{i}"), &topic_text(i, 60)),
                doc(&format!("tmp-{i}"), &topic_text(i + 1000, 10)),
                doc(
                    &format!("doc-{}", i / 2),
                    &format!("{} version {i}", topic_text(i / 2, 60)),
                ),
            ];
            DocumentStore::add(&store, documents).await.unwrap();
            if i > 0 {
                DocumentStore::delete(&store, &format!("tmp-{}", i - 1))
                    .await
                    .unwrap();
            }
            println!("done {i}");
        }
    });
}

/// A small xorshift generator seeded from the clock: random kill moments, printed on failure.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn kill_repeatedly(kind: &str, kills: usize) {
    let dir = tempfile::tempdir().unwrap();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut random = Random(seed);
    let mut next = 0usize;
    let mut finished_total = 0;
    let mut deleted_seen = 0;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for round in 0..kills {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash::crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_START, next.to_string())
            .env(CHILD_KIND, kind)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("done ") {
                    let _ = lines_tx.send(n.parse::<usize>().unwrap());
                }
            }
        });
        // Let it finish a couple of writes, then kill it somewhere inside a later one.
        let started = Instant::now();
        let mut done = Vec::new();
        while done.len() < 2 && started.elapsed() < Duration::from_secs(60) {
            if let Ok(n) = lines.recv_timeout(Duration::from_millis(50)) {
                done.push(n);
            }
        }
        assert!(done.len() >= 2, "seed {seed}: the child made no progress");
        std::thread::sleep(Duration::from_millis(random.below(300)));
        std::thread::sleep(Duration::from_micros(random.below(5000)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        done.extend(lines.try_iter());
        let last = *done.iter().max().unwrap();
        finished_total += done.len();

        let committed = committed_generation(dir.path());
        let store = open(dir.path(), Metric::InnerProduct, kind_from(kind));
        let check = store.check().unwrap();
        assert!(
            check.is_consistent(),
            "seed {seed} round {round}: index and rows disagree: {check:?}"
        );
        // Opening rebuilds an index that disagrees with its rows: it must not have had to.
        assert_eq!(
            check.generation, committed,
            "seed {seed} round {round}: the committed index was rebuilt on opening: {check:?}"
        );
        deleted_seen += check.deleted_vectors;
        runtime.block_on(async {
            for i in 0..=last {
                let document = store.document(&format!("doc-{i}")).await.unwrap();
                assert!(
                    document.is_some_and(|d| d.chunks > 0),
                    "seed {seed} round {round}: doc-{i} lost (last finished {last})"
                );
            }
            for i in 0..last {
                assert!(
                    store.document(&format!("tmp-{i}")).await.unwrap().is_none(),
                    "seed {seed} round {round}: tmp-{i} came back"
                );
            }
            let passages = store
                .search(&format!("topic{last}"), 3, &Filter::new())
                .await
                .unwrap();
            assert_eq!(passages.len(), 3);
        });
        // Opening removed whatever the killed write left behind.
        let leftovers: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| {
                (n.starts_with("index-") && *n != format!("index-{}.faiss", check.generation))
                    || n.ends_with(".tmp")
            })
            .collect();
        assert!(leftovers.is_empty(), "seed {seed}: {leftovers:?}");
        next = last + 1;
    }
    assert!(finished_total >= 2 * kills);
    if kind == "hnsw" {
        // The child's deletes and replacements left dead vectors in the committed indexes
        // found (compactions clear them now and then, never all the time).
        assert!(
            deleted_seen > 0,
            "seed {seed}: no deleted vectors after any kill"
        );
    }
}

/// The generation SQLite holds committed, read before the store opens (and maybe rebuilds).
fn committed_generation(dir: &Path) -> u64 {
    let db = rusqlite::Connection::open(dir.join("store.sqlite3")).unwrap();
    db.query_row("SELECT value FROM meta WHERE key = 'generation'", [], |r| {
        r.get::<_, String>(0)
    })
    .unwrap()
    .parse()
    .unwrap()
}

#[test]
fn sigkill_during_flat_ingest_loses_nothing_committed() {
    kill_repeatedly("flat", 6);
}

#[test]
fn sigkill_during_hnsw_ingest_loses_nothing_committed() {
    kill_repeatedly("hnsw", 4);
}
