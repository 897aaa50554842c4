//! `s3://bucket/prefix` as an ingest source. The objects under the prefix are listed
//! (ListObjectsV2), then read by type as local files are: Markdown, HTML, PDF and text objects
//! whole, a few fetched ahead at once; a JSON Lines object streamed line by line.
//!
//! An object that is one document carries its ETag as the document's
//! [`version`](Document::version), so its content hash is known from the listing: [`S3Reader::open`]
//! asks the store for the hashes it holds and leaves out, unread, every object the store
//! already holds at that ETag. A JSON Lines object holds many documents, each judged by its own
//! content as a local file's lines are, so it is always read.
//!
//! Ids follow the local rule: the key relative to the folder that holds the prefix
//! (`s3://b/team/docs/` gives `docs/guide/intro.md`), so a copy synced to disk and ingested
//! from there keeps its ids.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use aws_sdk_s3::Client;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use ragway_core::Document;
use serde_json::Map;
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncReadExt as _};

use super::content_hash;
use super::read::{
    EXTENSIONS, MAX_LINE_BYTES, ReadReport, extension, line_text, parse_file, parse_line,
};
use crate::error::{Error, Result};

/// Objects larger than this (other than JSON Lines, which is streamed) are not read: a whole
/// object is held in memory while it is parsed.
pub const MAX_OBJECT_BYTES: u64 = 256 * 1024 * 1024;

/// Whole objects fetched ahead of the one being read.
const FETCHES_AHEAD: usize = 8;

/// Ids asked of the store at once.
const HASH_PAGE: usize = 1000;

/// Times a JSON Lines object is opened again where it broke off, when its connection fails
/// mid-way (the reader pauses while its batches are embedded).
const LINE_RESUMES: u32 = 3;

/// Where an S3 source is: `s3://bucket/prefix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// Every key starting with it is read (`""`: the whole bucket).
    pub prefix: String,
}

impl S3Url {
    /// Whether `text` names an S3 source rather than a local path.
    pub fn is_s3(text: &str) -> bool {
        text.starts_with("s3://")
    }

    /// Parses `s3://bucket/prefix`, saying what is wrong with anything else.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let Some(rest) = text.strip_prefix("s3://") else {
            return Err(format!("\"{text}\" is not an s3://BUCKET/PREFIX address"));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!(
                "\"{text}\" names no bucket; write s3://BUCKET/PREFIX"
            ));
        }
        if let Some(bad) = bucket
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return Err(format!(
                "\"{text}\": a bucket name holds letters, digits, '.', '-' and '_', not {bad:?}"
            ));
        }
        if prefix.chars().any(char::is_control) {
            return Err(format!("\"{text}\": the prefix holds a control character"));
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// `s3://bucket/key`.
    pub fn object(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// The part of every key that ids leave out: the prefix up to its last `/`, a trailing
    /// `/` aside (the folder that holds what the prefix names).
    fn id_base(&self) -> &str {
        let named = self.prefix.strip_suffix('/').unwrap_or(&self.prefix);
        named.rfind('/').map_or("", |at| &self.prefix[..=at])
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// One object to read.
#[derive(Clone)]
struct Listed {
    key: String,
    /// As listed, quotes removed; `None` if S3 gave none.
    etag: Option<String>,
    size: u64,
    id: String,
    jsonl: bool,
}

/// The documents under an S3 prefix, read as they are asked for (see the module docs).
pub struct S3Reader {
    client: Client,
    url: S3Url,
    /// Whole objects, fetched a few ahead; JSON Lines objects pass through unfetched.
    fetched: BoxStream<'static, (Listed, Fetched)>,
    /// The JSON Lines object being read.
    lines: Option<ObjectLines>,
    /// Objects read, skipped and failed so far.
    pub report: ReadReport,
    /// Bytes of the objects to read, and of those read so far.
    pub bytes_total: u64,
    pub bytes_read: u64,
    /// Objects left unread because the store holds them at their listed ETag.
    pub unchanged: usize,
    /// Objects to read (listed, less those left unread).
    pub objects: usize,
}

enum Fetched {
    Whole {
        etag: Option<String>,
        bytes: Vec<u8>,
    },
    /// A JSON Lines object, opened when the reader gets to it.
    Lines,
    Failed(Error),
}

/// A JSON Lines object part read.
struct ObjectLines {
    listed: Listed,
    body: Pin<Box<dyn AsyncBufRead + Send>>,
    /// The ETag the body was opened at (a resumed read must see the same object), and the
    /// object's size then.
    etag: Option<String>,
    size: u64,
    /// Bytes of the object consumed, and the number of the last line read.
    offset: u64,
    line: usize,
    resumes: u32,
}

impl S3Reader {
    /// Lists the objects under `url` and leaves out those the store holds unchanged:
    /// `stored_hashes` gives the content hash the store holds for each id it is asked about,
    /// `chunking` is the store's `(chunk_size, chunk_overlap)`. Fails when the bucket cannot
    /// be listed (missing, refused, unreachable); an object that cannot be read later is a
    /// failure in the report and the others are still read.
    pub async fn open(
        client: Client,
        url: S3Url,
        chunking: (usize, usize),
        stored_hashes: impl AsyncFn(Vec<String>) -> Result<HashMap<String, String>>,
    ) -> Result<Self> {
        let mut report = ReadReport::default();
        let listed = list(&client, &url, &mut report).await?;
        let mut unchanged = 0;
        let mut objects = Vec::with_capacity(listed.len());
        for page in listed.chunks(HASH_PAGE) {
            let versioned: Vec<(String, String)> = page
                .iter()
                .filter(|object| !object.jsonl)
                .filter_map(|object| {
                    let etag = object.etag.clone()?;
                    let hash = content_hash(
                        &document_at(&url, object, String::new(), None, Some(etag)),
                        Some(chunking),
                    );
                    Some((object.id.clone(), hash))
                })
                .collect();
            let held = if versioned.is_empty() {
                HashMap::new()
            } else {
                stored_hashes(versioned.iter().map(|(id, _)| id.clone()).collect()).await?
            };
            let same: HashMap<&str, &str> = versioned
                .iter()
                .filter(|(id, hash)| held.get(id) == Some(hash))
                .map(|(id, hash)| (id.as_str(), hash.as_str()))
                .collect();
            unchanged += same.len();
            objects.extend(
                page.iter()
                    .filter(|object| object.jsonl || !same.contains_key(object.id.as_str()))
                    .cloned(),
            );
        }
        let bytes_total = objects.iter().map(|o| o.size).sum();
        let count = objects.len();
        let fetcher = client.clone();
        let bucket = url.bucket.clone();
        let fetched = futures::stream::iter(objects)
            .map(move |listed| {
                let (client, bucket) = (fetcher.clone(), bucket.clone());
                async move {
                    let fetched = if listed.jsonl {
                        Fetched::Lines
                    } else {
                        fetch_whole(&client, &bucket, &listed).await
                    };
                    (listed, fetched)
                }
            })
            .buffered(FETCHES_AHEAD)
            .boxed();
        Ok(Self {
            client,
            url,
            fetched,
            lines: None,
            report,
            bytes_total,
            bytes_read: 0,
            unchanged,
            objects: count,
        })
    }

    /// The next document, or `None` when every object is read. Objects skipped or failed go
    /// to [`Self::report`]. A bad line of a JSON Lines object ends that object (the lines
    /// before it were read), naming `s3://bucket/key:line`.
    pub async fn next_document(&mut self) -> Option<Document> {
        loop {
            if let Some(lines) = &mut self.lines {
                match lines.next(&self.client, &self.url).await {
                    Ok(Some((document, bytes))) => {
                        self.bytes_read += bytes;
                        return Some(document);
                    }
                    Ok(None) => self.report.files += 1,
                    Err(error) => self.report.failed.push(error),
                }
                if let Some(lines) = self.lines.take() {
                    // What was left unread of a failed object counts as read.
                    self.bytes_read += lines.listed.size.saturating_sub(lines.offset);
                }
                continue;
            }
            let (listed, fetched) = self.fetched.next().await?;
            match fetched {
                Fetched::Lines => match ObjectLines::open(&self.client, &self.url, listed).await {
                    Ok(lines) => self.lines = Some(lines),
                    Err((listed, error)) => {
                        self.bytes_read += listed.size;
                        self.report.failed.push(error);
                    }
                },
                Fetched::Failed(error) => {
                    self.bytes_read += listed.size;
                    self.report.failed.push(error);
                }
                Fetched::Whole { etag, bytes } => {
                    self.bytes_read += listed.size;
                    let location = PathBuf::from(self.url.object(&listed.key));
                    let kind = extension(Path::new(&listed.key));
                    let parsed = tokio::task::spawn_blocking({
                        let location = location.clone();
                        move || parse_file(&location, &kind, bytes)
                    })
                    .await
                    .map_err(Error::task)
                    .and_then(|parsed| parsed);
                    match parsed {
                        Ok((text, _)) if text.trim().is_empty() => {
                            self.report.skipped.push(location);
                        }
                        Ok((text, title)) => {
                            self.report.files += 1;
                            return Some(document_at(&self.url, &listed, text, title, etag));
                        }
                        Err(error) => self.report.failed.push(error),
                    }
                }
            }
        }
    }
}

/// The document an object that is one document becomes (its text and title read from it).
fn document_at(
    url: &S3Url,
    listed: &Listed,
    text: String,
    title: Option<String>,
    version: Option<String>,
) -> Document {
    let name = listed.key.rsplit('/').next().unwrap_or(&listed.key);
    Document {
        id: listed.id.clone(),
        text,
        title: title.or_else(|| Some(name.to_owned())),
        uri: Some(url.object(&listed.key)),
        metadata: Map::new(),
        version,
    }
}

/// Every object under `url` worth reading, in key order; folders' marker objects, hidden
/// entries (a path part starting with `.`) and unknown kinds are left out (the latter two
/// noted as skipped), objects too large to hold noted as failed.
async fn list(client: &Client, url: &S3Url, report: &mut ReadReport) -> Result<Vec<Listed>> {
    let mut pages = client
        .list_objects_v2()
        .bucket(&url.bucket)
        .prefix(&url.prefix)
        .into_paginator()
        .send();
    let base = url.id_base();
    let mut objects = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|error| Error::S3 {
            location: url.to_string(),
            message: format!("cannot list the objects: {}", failure(error)),
        })?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            if key.ends_with('/') {
                continue;
            }
            let location = PathBuf::from(url.object(key));
            let kind = extension(Path::new(key));
            let relative = key.strip_prefix(base).unwrap_or(key);
            if relative.split('/').any(|part| part.starts_with('.'))
                || !EXTENSIONS.contains(&kind.as_str())
            {
                report.skipped.push(location);
                continue;
            }
            let size = u64::try_from(object.size().unwrap_or(0)).unwrap_or(0);
            let jsonl = kind == "jsonl";
            if !jsonl && size > MAX_OBJECT_BYTES {
                report.failed.push(too_large(&location, size));
                continue;
            }
            objects.push(Listed {
                key: key.to_owned(),
                etag: object.e_tag().map(unquote),
                size,
                id: relative.to_owned(),
                jsonl,
            });
        }
    }
    Ok(objects)
}

fn too_large(location: &Path, size: u64) -> Error {
    Error::Read {
        path: location.to_path_buf(),
        message: format!(
            "{size} bytes is more than the {MAX_OBJECT_BYTES} an object other than JSON Lines \
             may hold; split it, or give it as JSON Lines"
        ),
    }
}

/// How long one S3 call may take, from sending to the response's headers ([`client`]).
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// An S3 client from the shared AWS configuration (the credential chain, `AWS_REGION`,
/// `AWS_ENDPOINT_URL`), with [`TIMEOUT`] and the SDK's standard retries. Without a region
/// anywhere it signs for us-east-1. With an endpoint of its own (MinIO, a test server) keys are
/// addressed by path (`host/bucket/key`), as S3-compatible servers expect.
pub fn client(shared: &aws_types::SdkConfig) -> Client {
    let settings = ragway_aws::ClientSettings {
        region: shared.region().is_none().then(|| "us-east-1".to_owned()),
        endpoint_url: None,
        max_attempts: 3,
        connect_timeout: std::time::Duration::from_secs(10),
        timeout: TIMEOUT,
    };
    // The region is always known here, so the configuration always builds.
    let config = ragway_aws::client_config(shared, &settings).unwrap_or_else(|_| shared.clone());
    let custom_endpoint =
        config.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let config = aws_sdk_s3::config::Builder::from(&config)
        .force_path_style(custom_endpoint)
        .build();
    Client::from_conf(config)
}

/// What an S3 call failed with, as the SDK error mapping says it.
fn failure<E, R>(error: aws_sdk_s3::error::SdkError<E, R>) -> ragway_core::ProviderError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: ragway_aws::RawStatus + std::fmt::Debug,
{
    ragway_aws::map_sdk_error("S3", error, TIMEOUT)
}

/// An ETag without the quotes S3 puts around it.
fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

/// Gets a whole object (one document), with the ETag it was read at.
async fn fetch_whole(client: &Client, bucket: &str, listed: &Listed) -> Fetched {
    let location = format!("s3://{bucket}/{}", listed.key);
    let failed = |message: String| {
        Fetched::Failed(Error::S3 {
            location: location.clone(),
            message,
        })
    };
    let output = match client
        .get_object()
        .bucket(bucket)
        .key(&listed.key)
        .send()
        .await
    {
        Ok(output) => output,
        Err(error) => {
            return failed(format!("cannot get the object: {}", failure(error)));
        }
    };
    let size = output
        .content_length()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0);
    if size > MAX_OBJECT_BYTES {
        return Fetched::Failed(too_large(Path::new(&location), size));
    }
    let etag = output.e_tag().map(unquote);
    match output.body.collect().await {
        Ok(data) => Fetched::Whole {
            etag,
            bytes: data.into_bytes().to_vec(),
        },
        Err(error) => failed(format!("the object's body broke off: {error}")),
    }
}

impl ObjectLines {
    async fn open(
        client: &Client,
        url: &S3Url,
        listed: Listed,
    ) -> std::result::Result<Self, (Listed, Error)> {
        match get_from(client, url, &listed.key, None, 0).await {
            Ok(opened) => Ok(Self {
                listed,
                body: opened.body,
                etag: opened.etag,
                size: opened.size,
                offset: 0,
                line: 0,
                resumes: 0,
            }),
            Err(error) => Err((listed, error)),
        }
    }

    /// The next document with the bytes it took, `None` at the object's end. A connection
    /// that fails mid-way is opened again at the byte where it broke off, for the same ETag.
    async fn next(&mut self, client: &Client, url: &S3Url) -> Result<Option<(Document, u64)>> {
        let location = PathBuf::from(url.object(&self.listed.key));
        let mut taken = 0;
        loop {
            let mut raw = Vec::new();
            let read = (&mut self.body)
                .take(MAX_LINE_BYTES + 1)
                .read_until(b'\n', &mut raw)
                .await;
            let broke = match read {
                Ok(0) => return Ok(None),
                // A line cut short before the object's end: the body ended early (a line too
                // long is cut short by the limit, and named below).
                Ok(read)
                    if raw.last() != Some(&b'\n')
                        && raw.len() as u64 <= MAX_LINE_BYTES
                        && self.offset + (read as u64) < self.size =>
                {
                    format!(
                        "the body ended at byte {} of {}",
                        self.offset + read as u64,
                        self.size
                    )
                }
                Ok(_) => String::new(),
                Err(error) => error.to_string(),
            };
            if !broke.is_empty() {
                if self.resumes == LINE_RESUMES {
                    return Err(Error::S3 {
                        location: location.display().to_string(),
                        message: format!(
                            "the object's body broke off ({broke}), {LINE_RESUMES} times"
                        ),
                    });
                }
                self.resumes += 1;
                tracing::warn!(reason = %broke, object = %location.display(), offset = self.offset, "reading the object again from where it broke off");
                let opened = get_from(
                    client,
                    url,
                    &self.listed.key,
                    self.etag.as_deref(),
                    self.offset,
                )
                .await?;
                self.body = opened.body;
                continue;
            }
            self.offset += raw.len() as u64;
            taken += raw.len() as u64;
            self.line += 1;
            let text = line_text(&location, self.line, raw)?;
            let file_id = self.listed.id.as_str();
            if let Some(document) = parse_line(&location, file_id, self.line, &text)? {
                return Ok(Some((document, taken)));
            }
        }
    }
}

/// An object opened for reading.
struct Opened {
    etag: Option<String>,
    /// The whole object's size (not only the part asked for).
    size: u64,
    body: Pin<Box<dyn AsyncBufRead + Send>>,
}

/// Gets an object from byte `offset` on (the whole of it from 0), at `etag` when given.
async fn get_from(
    client: &Client,
    url: &S3Url,
    key: &str,
    etag: Option<&str>,
    offset: u64,
) -> Result<Opened> {
    let mut request = client.get_object().bucket(&url.bucket).key(key);
    if offset > 0 {
        request = request.range(format!("bytes={offset}-"));
    }
    if let Some(etag) = etag {
        request = request.if_match(format!("\"{etag}\""));
    }
    let output = request.send().await.map_err(|error| Error::S3 {
        location: url.object(key),
        message: format!("cannot get the object: {}", failure(error)),
    })?;
    let length = output
        .content_length()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0);
    Ok(Opened {
        etag: output.e_tag().map(unquote),
        size: offset + length,
        body: Box::pin(output.body.into_async_read()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_or_say_what_is_wrong() {
        let url = S3Url::parse("s3://corpus/team/docs/").unwrap();
        assert_eq!(url.bucket, "corpus");
        assert_eq!(url.prefix, "team/docs/");
        assert_eq!(url.id_base(), "team/");
        assert_eq!(S3Url::parse("s3://corpus").unwrap().prefix, "");
        assert_eq!(S3Url::parse("s3://corpus/docs").unwrap().id_base(), "");
        assert_eq!(
            S3Url::parse("s3://b/team/docs/a.md").unwrap().id_base(),
            "team/docs/"
        );
        for bad in [
            "s3://",
            "s3:///docs",
            "http://b/x",
            "s3://my bucket/x",
            "s3://b/x\ny",
        ] {
            let error = S3Url::parse(bad).unwrap_err();
            assert!(error.contains(bad), "{error}");
        }
        assert!(S3Url::is_s3("s3://b"));
        assert!(!S3Url::is_s3("./s3:/b"));
    }

    #[test]
    fn a_version_stands_for_the_text_in_the_hash() {
        let url = S3Url::parse("s3://b/docs/").unwrap();
        let listed = Listed {
            key: "docs/a.md".into(),
            etag: Some("e1".into()),
            size: 3,
            id: "docs/a.md".into(),
            jsonl: false,
        };
        let hash = |text: &str, version: Option<&str>| {
            content_hash(
                &document_at(&url, &listed, text.into(), None, version.map(Into::into)),
                Some((1000, 100)),
            )
        };
        // Known before the text is read, and the same once it is.
        assert_eq!(hash("", Some("e1")), hash("the text", Some("e1")));
        assert_ne!(hash("", Some("e1")), hash("", Some("e2")));
        assert_ne!(hash("a", None), hash("b", None));
        assert_ne!(
            content_hash(
                &document_at(&url, &listed, String::new(), None, Some("e1".into())),
                Some((500, 100))
            ),
            hash("", Some("e1")),
            "a new chunk size reads the object again"
        );
    }
}
