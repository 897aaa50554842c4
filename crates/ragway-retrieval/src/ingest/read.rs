//! Reads files and folders into `Document`s: plain text, Markdown, HTML (stripped to text), PDF
//! (text layer) and JSON Lines (one document per line). Other extensions are skipped.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Component, Path, PathBuf};

use ragway_core::Document;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The extensions [`read_paths`] understands (lower case, without the dot).
pub const EXTENSIONS: &[&str] = &["txt", "md", "markdown", "html", "htm", "pdf", "jsonl"];

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
/// order, hidden entries and symlinked folders left out).
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
    let mut documents = Vec::new();
    let mut report = ReadReport::default();
    for root in paths {
        let metadata = fs::metadata(root).map_err(|e| Error::io(root, e))?;
        let base = root.parent().map(Path::to_path_buf).unwrap_or_default();
        if metadata.is_dir() {
            let mut files = Vec::new();
            walk(root, &mut files, &mut report)?;
            for file in files {
                read_one(&file, &base, &mut documents, &mut report);
            }
        } else {
            read_one(root, &base, &mut documents, &mut report);
        }
    }
    Ok((documents, report))
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

fn read_one(path: &Path, base: &Path, documents: &mut Vec<Document>, report: &mut ReadReport) {
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if !EXTENSIONS.contains(&extension.as_str()) {
        report.skipped.push(path.to_path_buf());
        return;
    }
    let id = document_id(path, base);
    let read = match extension.as_str() {
        "jsonl" => match read_jsonl(path, &id) {
            Ok(lines) => {
                report.files += 1;
                documents.extend(lines);
                return;
            }
            Err(e) => Err(e),
        },
        "pdf" => read_pdf(path),
        "html" | "htm" => read_html(path),
        "md" | "markdown" => read_text(path).map(|text| {
            let title = markdown_title(&text);
            (text, title)
        }),
        _ => read_text(path).map(|text| (text, None)),
    };
    match read {
        Ok((text, _)) if text.trim().is_empty() => report.skipped.push(path.to_path_buf()),
        Ok((text, title)) => {
            report.files += 1;
            documents.push(Document {
                id,
                text,
                title: title.or_else(|| file_name(path)),
                uri: Some(path.display().to_string()),
                metadata: Map::new(),
            });
        }
        Err(e) => report.failed.push(e),
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

fn read_text(path: &Path) -> Result<String> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| Error::Read {
        path: path.to_path_buf(),
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

fn read_html(path: &Path) -> Result<(String, Option<String>)> {
    let html = read_text(path)?;
    let title = html_element_text(&html, "title").or_else(|| html_element_text(&html, "h1"));
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

fn read_pdf(path: &Path) -> Result<(String, Option<String>)> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    let unreadable = |message: String| Error::Read {
        path: path.to_path_buf(),
        message: format!("cannot read PDF: {message}"),
    };
    // pdf-extract panics on some malformed files; a bad file must not take ragway down.
    match catch_unwind(AssertUnwindSafe(|| {
        pdf_extract::extract_text_from_mem(&bytes)
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
/// `_id`; a string or number), `title`, `uri` and `metadata` (an object). Blank lines are ignored. A line without an
/// id gets `<file id>:<line number>`. A bad line fails the file, naming `file:line`.
pub fn read_jsonl(path: &Path, file_id: &str) -> Result<Vec<Document>> {
    let text = read_text(path)?;
    let mut documents = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        if raw.trim().is_empty() {
            continue;
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
        documents.push(Document {
            id,
            text: parsed.text,
            title: parsed.title,
            uri: parsed.uri,
            metadata: parsed.metadata,
        });
    }
    Ok(documents)
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
