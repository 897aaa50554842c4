//! Reading files and folders into documents: text, Markdown, HTML, PDF and JSON Lines, with
//! unknown extensions skipped and unreadable files reported per file.

use std::fs;
use std::path::Path;

use ragway_retrieval::Error;
use ragway_retrieval::ingest::{DocumentReader, read_paths};

/// A one-page PDF with `text` in Helvetica, offsets computed so any reader accepts it.
fn pdf(text: &str) -> Vec<u8> {
    let content = format!("BT /F1 12 Tf 72 720 Td ({text}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
         /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_owned(),
        format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_owned(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for offset in offsets {
        out.extend(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

#[test]
fn a_folder_is_read_recursively_with_stable_ids() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("docs");
    write(&root.join("a.txt"), "Plain text file.");
    write(
        &root.join("guide/intro.md"),
        "Some intro\n\n# Getting Started\n\nBody text.",
    );
    write(
        &root.join("guide/page.html"),
        "<html><head><title>The Page</title><style>p{}</style><script>var x=1;</script></head>\
         <body><h1>Heading</h1><p>First <b>para</b>.</p><ul><li>item one</li></ul></body></html>",
    );
    write(&root.join("paper.pdf"), pdf("Hello from a PDF"));
    write(
        &root.join("data/lines.jsonl"),
        "{\"id\": \"x1\", \"text\": \"first line\", \"metadata\": {\"k\": 1}}\n\n\
         {\"text\": \"no id\", \"title\": \"T\", \"uri\": \"http://u\"}\n{\"id\": 7, \"text\": \"n\"}\n",
    );
    write(&root.join("image.png"), [0u8, 1, 2]);
    write(&root.join(".hidden/secret.txt"), "hidden");
    write(&root.join("empty.txt"), "  \n");

    let (documents, report) = read_paths(std::slice::from_ref(&root)).unwrap();
    let ids: Vec<&str> = documents.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            "docs/a.txt",
            "x1",
            "docs/data/lines.jsonl:3",
            "7",
            "docs/guide/intro.md",
            "docs/guide/page.html",
            "docs/paper.pdf"
        ]
    );
    assert_eq!(report.files, 5);
    assert_eq!(report.skipped.len(), 2, "{:?}", report.skipped);
    assert!(report.failed.is_empty(), "{:?}", report.failed);

    let by_id = |id: &str| documents.iter().find(|d| d.id == id).unwrap();
    assert_eq!(by_id("docs/a.txt").title.as_deref(), Some("a.txt"));
    assert_eq!(
        by_id("docs/a.txt").uri.as_deref(),
        Some(root.join("a.txt").to_str().unwrap())
    );
    assert_eq!(
        by_id("docs/guide/intro.md").title.as_deref(),
        Some("Getting Started")
    );
    let html = by_id("docs/guide/page.html");
    assert_eq!(html.title.as_deref(), Some("The Page"));
    assert!(html.text.contains("First para."), "{}", html.text);
    assert!(html.text.contains("item one"));
    assert!(!html.text.contains("var x"), "{}", html.text);
    assert!(by_id("docs/paper.pdf").text.contains("Hello from a PDF"));
    assert_eq!(by_id("x1").metadata["k"], 1);
    assert_eq!(
        by_id("docs/data/lines.jsonl:3").uri.as_deref(),
        Some("http://u")
    );

    // A file given directly is named by its file name.
    let (documents, _) = read_paths(&[root.join("guide/intro.md")]).unwrap();
    assert_eq!(documents[0].id, "intro.md");
}

#[test]
fn unreadable_files_are_reported_and_the_rest_still_read() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("bad.pdf"),
        b"%PDF-1.4\nthis is not really a pdf",
    );
    write(
        &dir.path().join("bad.jsonl"),
        "{\"text\": \"ok\"}\n{\"text\": 5}\n",
    );
    write(&dir.path().join("latin1.txt"), [b'c', b'a', b'f', 0xe9]);
    write(&dir.path().join("good.md"), "# Good\ntext");

    let (documents, report) = read_paths(&[dir.path().to_path_buf()]).unwrap();
    // good.md, and the line of bad.jsonl before its bad one (read before the bad one is met).
    assert_eq!(documents.len(), 2, "{documents:?}");
    assert_eq!(report.failed.len(), 3, "{:?}", report.failed);
    let messages: Vec<String> = report.failed.iter().map(ToString::to_string).collect();
    assert!(
        messages.iter().any(|m| m.contains("bad.jsonl:2:")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("bad.pdf") && m.contains("cannot read PDF")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("not UTF-8")),
        "{messages:?}"
    );
    assert!(
        report
            .failed
            .iter()
            .any(|e| matches!(e, Error::Line { line: 2, .. }))
    );

    assert!(read_paths(&[dir.path().join("missing")]).is_err());
}

#[test]
fn a_json_line_too_long_to_hold_fails_its_file_where_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let long = "x".repeat(ragway_retrieval::ingest::read::MAX_LINE_BYTES as usize);
    write(
        &dir.path().join("big.jsonl"),
        format!(
            "{{\"id\": \"a\", \"text\": \"fits\"}}\n{{\"text\": \"{long}\"}}\n{{\"id\": \"c\", \"text\": \"after\"}}\n"
        ),
    );
    let (documents, report) = read_paths(&[dir.path().to_path_buf()]).unwrap();
    let ids: Vec<&str> = documents.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["a"]);
    let messages: Vec<String> = report.failed.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].contains("big.jsonl:2: longer than 64 MiB"),
        "{messages:?}"
    );
}

#[test]
fn documents_are_read_as_they_are_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = (0..10_000)
        .map(|i| format!("{{\"id\": {i}, \"text\": \"document number {i}\"}}\n"))
        .collect();
    write(&dir.path().join("corpus.jsonl"), &lines);
    write(&dir.path().join("z.md"), "# Last\nthe end");
    let mut reader = DocumentReader::open(&[dir.path().to_path_buf()]).unwrap();
    assert_eq!(reader.bytes_total, lines.len() as u64 + 14);
    let first = reader.next_document().unwrap();
    assert_eq!(first.id, "0");
    // One line read of the JSON Lines file, not the file.
    assert!(reader.bytes_read < 100, "{}", reader.bytes_read);
    let rest: Vec<_> = std::iter::from_fn(|| reader.next_document()).collect();
    assert_eq!(rest.len(), 10_000);
    assert_eq!(rest.last().unwrap().title.as_deref(), Some("Last"));
    assert_eq!(reader.bytes_read, reader.bytes_total);
    assert_eq!(reader.report.files, 2);
}
