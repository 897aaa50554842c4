//! Reads files and folders into `Document`s: plain text, Markdown, HTML (stripped to text), PDF
//! (text layer) and JSON Lines (one document per line). Other extensions are skipped. The
//! [`DocumentReader`] reads them one at a time, as an ingest of any size needs them.

use std::fs;
use std::io::{BufRead as _, BufReader, Read as _};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Component, Path, PathBuf};

use ragway_core::Document;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The extensions [`read_paths`] understands (lower case, without the dot).
pub const EXTENSIONS: &[&str] = &["txt", "md", "markdown", "html", "htm", "pdf", "jsonl"];

/// The longest line of a JSON Lines file (one document) that is read; a longer one fails its
/// file where it starts, rather than filling memory.
pub const MAX_LINE_BYTES: u64 = 64 * 1024 * 1024;

/// What [`read_paths`] found besides the documents.
#[derive(Debug, Default)]
pub struct ReadReport {
    /// Files turned into documents (a JSON Lines file counts once).
    pub files: usize,
    /// Files skipped: unknown extension, or no text at all.
    pub skipped: Vec<PathBuf>,
    /// Files that could not be read, with the reason; the other files were still read.
    pub failed: Vec<Error>,
}

/// Reads every supported file under `paths` (files, or folders walked recursively in name
/// order, hidden entries and symlinked folders left out), all at once; [`DocumentReader`]
/// reads the same documents one at a time.
///
/// Each file becomes one document: its id is the path from the folder that holds the given
/// path (`docs/guide/intro.md` for `ragway ingest ./docs`, `intro.md` for a file given
/// directly), with `/` separators whatever the platform, so re-ingesting from another working
/// directory finds the same ids. The title is the first heading (Markdown, HTML `<title>` or
/// `<h1>`), else the file name; the uri is the path as found. A JSON Lines file gives one
/// document per line instead (see [`read_jsonl`]).
///
/// A file that cannot be read lands in [`ReadReport::failed`]; only a path that does not exist
/// fails the whole call.
pub fn read_paths(paths: &[PathBuf]) -> Result<(Vec<Document>, ReadReport)> {
    let mut reader = DocumentReader::open(paths)?;
    let documents: Vec<Document> = std::iter::from_fn(|| reader.next_document()).collect();
    Ok((documents, reader.report))
}

/// The documents under some paths, read as they are asked for: one file at a time, and a JSON
/// Lines file one line at a time, so that memory holds what the caller keeps, not the corpus.
/// Only the list of files is made up front.
pub struct DocumentReader {
    /// The files still to read, with the folder their ids are relative to.
    files: std::vec::IntoIter<(PathBuf, PathBuf)>,
    /// The JSON Lines file being read.
    lines: Option<JsonLines>,
    /// Files read, skipped and failed so far.
    pub report: ReadReport,
    /// Bytes of every file to read, and of those read so far (a JSON Lines file as its lines
    /// are read): how far the reading has got.
    pub bytes_total: u64,
    pub bytes_read: u64,
}

/// A JSON Lines file part read.
struct JsonLines {
    path: PathBuf,
    file_id: String,
    reader: BufReader<fs::File>,
    /// The number of the last line read.
    line: usize,
}

impl DocumentReader {
    /// Lists the files under `paths` (see [`read_paths`]); a path that does not exist is an
    /// error, a folder that cannot be listed a failure in the report.
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut report = ReadReport::default();
        let mut files = Vec::new();
        for root in paths {
            let metadata = fs::metadata(root).map_err(|e| Error::io(root, e))?;
            let base = root.parent().map(Path::to_path_buf).unwrap_or_default();
            if metadata.is_dir() {
                let mut found = Vec::new();
                walk(root, &mut found, &mut report)?;
                files.extend(found.into_iter().map(|file| (file, base.clone())));
            } else {
                files.push((root.clone(), base));
            }
        }
        let bytes_total = files
            .iter()
            .filter_map(|(file, _)| fs::metadata(file).ok())
            .map(|metadata| metadata.len())
            .sum();
        Ok(Self {
            files: files.into_iter(),
            lines: None,
            report,
            bytes_total,
            bytes_read: 0,
        })
    }

    /// The next document, or `None` when every file is read. Files skipped or failed go to
    /// [`Self::report`]. A bad line of a JSON Lines file ends that file (the lines before it
    /// were read), naming `file:line`.
    pub fn next_document(&mut self) -> Option<Document> {
        loop {
            if let Some(lines) = &mut self.lines {
                match next_line(lines, &mut self.bytes_read) {
                    Ok(Some(document)) => return Some(document),
                    Ok(None) => {
                        self.report.files += 1;
                        self.lines = None;
                    }
                    Err(error) => {
                        self.report.failed.push(error);
                        self.lines = None;
                    }
                }
                continue;
            }
            let (path, base) = self.files.next()?;
            let size = fs::metadata(&path).map_or(0, |m| m.len());
            if is_jsonl(&path) {
                match fs::File::open(&path) {
                    Ok(file) => {
                        self.lines = Some(JsonLines {
                            file_id: document_id(&path, &base),
                            path,
                            reader: BufReader::new(file),
                            line: 0,
                        });
                    }
                    Err(e) => {
                        self.bytes_read += size;
                        self.report.failed.push(Error::io(&path, e));
                    }
                }
                continue;
            }
            self.bytes_read += size;
            if let Some(document) = read_one(&path, &base, &mut self.report) {
                return Some(document);
            }
        }
    }
}

fn is_jsonl(path: &Path) -> bool {
    extension(path) == "jsonl"
}

/// The next document of a JSON Lines file (blank lines skipped), or `None` at its end.
fn next_line(lines: &mut JsonLines, bytes_read: &mut u64) -> Result<Option<Document>> {
    loop {
        let mut raw = Vec::new();
        let read = (&mut lines.reader)
            .take(MAX_LINE_BYTES + 1)
            .read_until(b'\n', &mut raw)
            .map_err(|e| Error::Line {
                path: lines.path.clone(),
                line: lines.line + 1,
                message: e.to_string(),
            })?;
        if read == 0 {
            return Ok(None);
        }
        lines.line += 1;
        *bytes_read += read as u64;
        let text = line_text(&lines.path, lines.line, raw)?;
        if let Some(document) = parse_line(&lines.path, &lines.file_id, lines.line, &text)? {
            return Ok(Some(document));
        }
    }
}

/// A line of a JSON Lines file as read up to its `\n` (at most [`MAX_LINE_BYTES`] + 1 bytes),
/// as text without its line ending; an error naming `file:line` if it is longer than
/// [`MAX_LINE_BYTES`] or not UTF-8.
pub(crate) fn line_text(path: &Path, line: usize, mut raw: Vec<u8>) -> Result<String> {
    let bad = |message: String| Error::Line {
        path: path.to_path_buf(),
        line,
        message,
    };
    if raw.last() == Some(&b'\n') {
        raw.pop();
    }
    if raw.len() as u64 > MAX_LINE_BYTES {
        return Err(bad(format!(
            "longer than {} MiB; one line holds one document",
            MAX_LINE_BYTES / (1024 * 1024)
        )));
    }
    if raw.last() == Some(&b'\r') {
        raw.pop();
    }
    String::from_utf8(raw).map_err(|_| bad("not UTF-8 text".to_owned()))
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>, report: &mut ReadReport) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|entry| match entry {
            Ok(entry) => Some(entry),
            Err(e) => {
                report.failed.push(Error::io(dir, e));
                None
            }
        })
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            walk(&path, files, report)?;
        } else if kind.is_file() || (kind.is_symlink() && path.is_file()) {
            files.push(path);
        }
    }
    Ok(())
}

/// One file that is not JSON Lines as a document; `None` when it is skipped or fails (noted
/// in `report`).
fn read_one(path: &Path, base: &Path, report: &mut ReadReport) -> Option<Document> {
    let extension = extension(path);
    if !EXTENSIONS.contains(&extension.as_str()) || extension == "jsonl" {
        report.skipped.push(path.to_path_buf());
        return None;
    }
    let read = fs::read(path)
        .map_err(|e| Error::io(path, e))
        .and_then(|bytes| parse_file(path, &extension, bytes));
    match read {
        Ok((text, _)) if text.trim().is_empty() => {
            report.skipped.push(path.to_path_buf());
            None
        }
        Ok((text, title)) => {
            report.files += 1;
            Some(Document {
                id: document_id(path, base),
                text,
                title: title.or_else(|| file_name(path)),
                uri: Some(path.display().to_string()),
                metadata: Map::new(),
                version: None,
            })
        }
        Err(e) => {
            report.failed.push(e);
            None
        }
    }
}

/// The extension of `name` in lower case, without the dot (`""` for none).
pub(crate) fn extension(name: &Path) -> String {
    name.extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default()
}

/// The text and title of a file of a supported kind other than JSON Lines (`extension` as
/// [`extension`] gives it), from its bytes; `name` names the file in errors.
pub(crate) fn parse_file(
    name: &Path,
    extension: &str,
    bytes: Vec<u8>,
) -> Result<(String, Option<String>)> {
    match extension {
        "pdf" => pdf_text(name, &bytes),
        "html" | "htm" => html_text(name, &text_of(name, bytes)?),
        "md" | "markdown" => text_of(name, bytes).map(|text| {
            let title = markdown_title(&text);
            (text, title)
        }),
        _ => text_of(name, bytes).map(|text| (text, None)),
    }
}

/// `path` relative to `base`, `/`-separated, without `.` or `..` parts.
fn document_id(path: &Path, base: &Path) -> String {
    let relative = path.strip_prefix(base).unwrap_or(path);
    let parts: Vec<String> = relative
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    parts.join("/")
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name().map(|n| n.to_string_lossy().into_owned())
}

fn text_of(name: &Path, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| Error::Read {
        path: name.to_path_buf(),
        message: format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ),
    })
}

/// The first ATX heading (`# Title`) of a Markdown text.
fn markdown_title(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|line| line.starts_with('#'))
        .map(|line| {
            let title = line.trim_start_matches('#').trim();
            title.trim_end_matches('#').trim_end().to_owned()
        })
        .filter(|title| !title.is_empty())
}

fn html_text(path: &Path, html: &str) -> Result<(String, Option<String>)> {
    let title = html_element_text(html, "title").or_else(|| html_element_text(html, "h1"));
    // A very wide layout keeps each paragraph on one line; the chunker cuts it later.
    let text = html2text::config::plain_no_decorate()
        .string_from_read(html.as_bytes(), 100_000)
        .map_err(|e| Error::Read {
            path: path.to_path_buf(),
            message: format!("cannot parse HTML: {e}"),
        })?;
    let text = text
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n");
    Ok((text, title))
}

/// The text inside the first `<tag ...>…</tag>`, tags stripped and whitespace collapsed.
fn html_element_text(html: &str, tag: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let open = format!("<{tag}");
    let mut from = 0;
    let start = loop {
        let at = from + lower[from..].find(&open)?;
        let after = lower.as_bytes().get(at + open.len()).copied();
        if matches!(after, Some(b'>' | b' ' | b'\t' | b'\n' | b'\r' | b'/')) {
            break at;
        }
        from = at + open.len();
    };
    let content_start = start + lower[start..].find('>')? + 1;
    let content_end = content_start + lower[content_start..].find(&format!("</{tag}"))?;
    let inner = &html[content_start..content_end];
    let mut text = String::new();
    let mut in_tag = false;
    for c in inner.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = decode_entities(&text.split_whitespace().collect::<Vec<_>>().join(" "));
    (!text.is_empty()).then_some(text)
}

fn decode_entities(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

fn pdf_text(path: &Path, bytes: &[u8]) -> Result<(String, Option<String>)> {
    let unreadable = |message: String| Error::Read {
        path: path.to_path_buf(),
        message: format!("cannot read PDF: {message}"),
    };
    // pdf-extract panics on some malformed files; a bad file must not take ragway down.
    match catch_unwind(AssertUnwindSafe(|| {
        pdf_extract::extract_text_from_mem(bytes)
    })) {
        Ok(Ok(text)) => Ok((text, None)),
        Ok(Err(e)) => Err(unreadable(e.to_string())),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the PDF parser gave up".to_owned());
            Err(unreadable(message))
        }
    }
}

/// One line of a JSON Lines document file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    text: String,
    /// `_id` in BEIR's corpus files.
    #[serde(default, alias = "_id")]
    id: Option<Value>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    uri: Option<String>,
    #[serde(default)]
    metadata: Map<String, Value>,
}

/// Reads a JSON Lines file: one object per line with `text` and optional `id` (or BEIR's
/// `_id`; a string or number), `title`, `uri` and `metadata` (an object). Blank lines are
/// ignored. A line without an id gets `<file id>:<line number>`. A bad line fails the file,
/// naming `file:line`.
pub fn read_jsonl(path: &Path, file_id: &str) -> Result<Vec<Document>> {
    let text = text_of(path, fs::read(path).map_err(|e| Error::io(path, e))?)?;
    let mut documents = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        if let Some(document) = parse_line(path, file_id, n + 1, raw)? {
            documents.push(document);
        }
    }
    Ok(documents)
}

/// Line `line` of a JSON Lines file as a document; `None` for a blank line.
pub(crate) fn parse_line(
    path: &Path,
    file_id: &str,
    line: usize,
    raw: &str,
) -> Result<Option<Document>> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    let bad = |message: String| Error::Line {
        path: path.to_path_buf(),
        line,
        message,
    };
    let parsed: Line = serde_json::from_str(raw).map_err(|e| bad(e.to_string()))?;
    let id = match parsed.id {
        None | Some(Value::Null) => format!("{file_id}:{line}"),
        Some(Value::String(id)) if !id.is_empty() => id,
        Some(Value::Number(id)) => id.to_string(),
        Some(other) => {
            return Err(bad(format!("`id` must be a string or number, not {other}")));
        }
    };
    Ok(Some(Document {
        id,
        text: parsed.text,
        title: parsed.title,
        uri: parsed.uri,
        metadata: parsed.metadata,
        version: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_relative_to_the_given_folders_parent() {
        assert_eq!(
            document_id(Path::new("/srv/docs/a/b.md"), Path::new("/srv")),
            "docs/a/b.md"
        );
        assert_eq!(document_id(Path::new("x.txt"), Path::new("")), "x.txt");
        assert_eq!(
            document_id(Path::new("./docs/x.txt"), Path::new(".")),
            "docs/x.txt"
        );
    }

    #[test]
    fn markdown_and_html_titles() {
        assert_eq!(
            markdown_title("intro\n\n## The Title ##\ntext"),
            Some("The Title".into())
        );
        assert_eq!(markdown_title("no heading"), None);
        let html = "<html><head><TITLE>A &amp; B</TITLE></head><body><h1 class=x>Big <b>one</b></h1></body></html>";
        assert_eq!(html_element_text(html, "title"), Some("A & B".into()));
        assert_eq!(html_element_text(html, "h1"), Some("Big one".into()));
        assert_eq!(html_element_text("<header>x</header>", "h1"), None);
    }
}
