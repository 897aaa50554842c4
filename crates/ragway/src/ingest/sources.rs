//! What `ragway ingest` reads from: local files and folders and S3 addresses, in turn, a batch
//! at a time (read while the batch before it is embedded).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use ragway_core::Document;
use ragway_retrieval::WritableStore;
use ragway_retrieval::ingest::s3::{S3Reader, S3Url};
use ragway_retrieval::ingest::{DocumentReader, ReadReport};

/// What an ingest reads: the local files and folders (one reader over all of them), then each
/// S3 address, in turn.
pub(super) struct Sources {
    /// The sources not read to the end, the one being read first.
    left: VecDeque<Source>,
    /// What the sources read to the end found.
    pub(super) report: ReadReport,
    /// Bytes of all the input, and of the sources read to the end.
    pub(super) bytes_total: u64,
    bytes_done: u64,
    /// S3 objects left unread because the store holds them at their ETag.
    pub(super) unchanged: usize,
}

enum Source {
    Files(DocumentReader),
    S3(Box<S3Reader>),
}

impl Sources {
    /// Lists what `paths` name: the local files, and the objects under each S3 address less
    /// those `store` holds unchanged. A path that does not exist, a bad address or a bucket
    /// that cannot be listed fails the ingest before anything is written.
    pub(super) async fn open(paths: &[PathBuf], store: &Arc<WritableStore>) -> Result<Self> {
        let mut urls = Vec::new();
        let mut local = Vec::new();
        for path in paths {
            match path.to_str().filter(|text| S3Url::is_s3(text)) {
                Some(text) => urls.push(S3Url::parse(text).map_err(anyhow::Error::msg)?),
                None => local.push(path.clone()),
            }
        }
        let mut left = VecDeque::new();
        if !local.is_empty() {
            let reader =
                tokio::task::spawn_blocking(move || DocumentReader::open(&local)).await??;
            left.push_back(Source::Files(reader));
        }
        if !urls.is_empty() {
            let client =
                ragway_retrieval::ingest::s3::client(&ragway_aws::load_sdk_config(None).await);
            let chunking = store.chunking();
            for url in urls {
                let reader = S3Reader::open(client.clone(), url.clone(), chunking, async |ids| {
                    store.stored_hashes(ids).await
                })
                .await?;
                // Listing a large bucket takes a while before the first batch: say what it found.
                eprintln!(
                    "listed {url}: {} object(s) to read ({} bytes), {} held at their ETag (not downloaded)",
                    reader.objects, reader.bytes_total, reader.unchanged
                );
                left.push_back(Source::S3(Box::new(reader)));
            }
        }
        let unchanged = left
            .iter()
            .map(|source| match source {
                Source::S3(reader) => reader.unchanged,
                Source::Files(_) => 0,
            })
            .sum();
        Ok(Self {
            bytes_total: left.iter().map(Source::bytes_total).sum(),
            left,
            report: ReadReport::default(),
            bytes_done: 0,
            unchanged,
        })
    }

    /// How far the reading has got, in bytes of input.
    pub(super) fn bytes_read(&self) -> u64 {
        self.bytes_done + self.left.front().map_or(0, Source::bytes_read)
    }

    /// Reads documents until they make about `chunks` chunks (of `chunk_size` characters);
    /// the sources come back with them. Local files are read on a blocking thread.
    pub(super) async fn read_batch(
        mut self,
        chunks: usize,
        chunk_size: usize,
    ) -> Result<(Self, Vec<Document>)> {
        let estimate =
            move |document: &Document| document.text.chars().count() / chunk_size.max(1) + 1;
        let mut batch = Vec::new();
        let mut estimated = 0;
        while estimated < chunks {
            let Some(source) = self.left.pop_front() else {
                break;
            };
            let (source, finished) = match source {
                Source::Files(mut reader) => {
                    let want = chunks - estimated;
                    let (reader, read, finished) = tokio::task::spawn_blocking(move || {
                        let (mut read, mut got) = (Vec::new(), 0);
                        while got < want {
                            let Some(document) = reader.next_document() else {
                                return (reader, read, true);
                            };
                            got += estimate(&document);
                            read.push(document);
                        }
                        (reader, read, false)
                    })
                    .await?;
                    estimated += read.iter().map(estimate).sum::<usize>();
                    batch.extend(read);
                    (Source::Files(reader), finished)
                }
                Source::S3(mut reader) => {
                    let mut finished = false;
                    while estimated < chunks {
                        let Some(document) = reader.next_document().await else {
                            finished = true;
                            break;
                        };
                        estimated += estimate(&document);
                        batch.push(document);
                    }
                    (Source::S3(reader), finished)
                }
            };
            if finished {
                self.bytes_done += source.bytes_total();
                let report = match source {
                    Source::Files(reader) => reader.report,
                    Source::S3(reader) => reader.report,
                };
                self.report.files += report.files;
                self.report.skipped.extend(report.skipped);
                self.report.failed.extend(report.failed);
            } else {
                self.left.push_front(source);
            }
        }
        Ok((self, batch))
    }
}

impl Source {
    fn bytes_total(&self) -> u64 {
        match self {
            Self::Files(reader) => reader.bytes_total,
            Self::S3(reader) => reader.bytes_total,
        }
    }

    fn bytes_read(&self) -> u64 {
        match self {
            Self::Files(reader) => reader.bytes_read,
            Self::S3(reader) => reader.bytes_read,
        }
    }
}
