//! How `ragway ingest` shows its progress: a bar on a terminal, lines in a log, a summary.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use ragway_core::IngestReport;
use ragway_retrieval::ingest::{Phase, Progress};

/// How an ingest shows its progress: a bar on a terminal; elsewhere (a CI log, `docker logs`)
/// a line every few seconds and one per commit.
pub(super) struct Shown {
    store: String,
    bar: Option<ProgressBar>,
    bytes_total: u64,
    started: Instant,
    /// When the last line was written (progress callbacks share the reporter).
    last_line: std::sync::Mutex<Instant>,
    pub(super) commits: usize,
    /// Documents and chunks of the batches committed so far.
    documents: usize,
    chunks: usize,
}

/// How often a line is written when the output is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);

impl Shown {
    pub(super) fn new(store: &str, bytes_total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(bytes_total.max(1));
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg:<40} [{bar:30}] {percent:>3}% of input  eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self {
            store: store.to_owned(),
            bar,
            bytes_total,
            started: Instant::now(),
            last_line: std::sync::Mutex::new(Instant::now()),
            commits: 0,
            documents: 0,
            chunks: 0,
        }
    }

    /// A batch being embedded: `p` of it done; the input is read up to `read_to` bytes when
    /// it is committed.
    pub(super) fn embedding(&self, p: &Progress, read_to: u64) {
        let documents = self.documents + p.documents_done;
        let chunks = self.chunks + p.chunks_done;
        let message = match p.phase {
            Phase::Saving => format!("{documents} documents, {chunks} chunks, committing"),
            _ => format!("{documents} documents, {chunks} chunks"),
        };
        match &self.bar {
            Some(bar) => {
                bar.set_message(message);
                bar.set_position(read_to.min(self.bytes_total));
            }
            None => {
                let mut last = self
                    .last_line
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if last.elapsed() >= LINE_EVERY {
                    *last = Instant::now();
                    eprintln!(
                        "ingest \"{}\": {}",
                        self.store,
                        self.line(documents, chunks, read_to)
                    );
                }
            }
        }
    }

    /// A batch committed, making `totals`.
    pub(super) fn committed(&mut self, totals: &IngestReport, read_to: u64) {
        self.commits += 1;
        self.documents = totals.added + totals.replaced + totals.unchanged;
        self.chunks = totals.chunks;
        if let Some(bar) = &self.bar {
            bar.set_position(read_to.min(self.bytes_total));
        } else {
            *self
                .last_line
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
            eprintln!(
                "ingest \"{}\": committed batch {}: {}",
                self.store,
                self.commits,
                self.line(self.documents, self.chunks, read_to)
            );
        }
    }

    /// `1200 documents, 2400 chunks, 150 chunks/s, 35% of input, eta 2m10s`.
    fn line(&self, documents: usize, chunks: usize, read_to: u64) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        let done = read_to as f64 / self.bytes_total.max(1) as f64;
        let eta = if done > 0.0 && done < 1.0 {
            let left = seconds / done * (1.0 - done);
            format!(
                ", eta {}",
                indicatif::HumanDuration(Duration::from_secs_f64(left))
            )
        } else {
            String::new()
        };
        format!(
            "{documents} documents, {chunks} chunks, {:.0} chunks/s, {:.0}% of input{eta}",
            chunks as f64 / seconds,
            done * 100.0
        )
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// The run's figures: what was added, replaced and skipped as unchanged (committed
    /// before, by this run or an earlier one), in how many commits and how fast.
    pub(super) fn summary(&self, totals: &IngestReport, started: Instant) -> String {
        let seconds = started.elapsed().as_secs_f64();
        format!(
            "{} added, {} replaced, {} unchanged (skipped); {} chunks in {:.1} s ({:.0} chunks/s), \
             {} commit(s)",
            totals.added,
            totals.replaced,
            totals.unchanged,
            totals.chunks,
            seconds,
            totals.chunks as f64 / seconds.max(1e-9),
            self.commits
        )
    }
}
