//! `ragway ingest s3://bucket/prefix` against moto_server's S3: objects read by type as local
//! files are, with ids as a local copy would have, the ETag deciding "unchanged" before any
//! download (moto's request recording shows which objects were fetched), and what a stranger
//! can put in a bucket (bad UTF-8, a bad JSON line, hidden keys, unknown kinds) or get wrong
//! in an address.

use std::path::Path;
use std::process::Output;

use aws_sdk_s3::primitives::ByteStream;
use ragway_testkit::moto::MotoServer;

use crate::stores::fast_config as config;
use crate::support::test_env;

const BUCKET: &str = "corpus";

/// What every test here starts from: moto with the bucket made, the OpenAI fake, and a folder
/// holding `c.toml` with a FAISS store `docs` embedded by the fake (`stores::fast_config`).
struct Setup {
    moto: MotoServer,
    openai: ragway_testkit::Fake,
    dir: tempfile::TempDir,
    config_path: std::path::PathBuf,
    s3: aws_sdk_s3::Client,
}

async fn setup() -> Setup {
    let moto = MotoServer::start(&[]).unwrap();
    let openai = ragway_testkit::openai::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("c.toml");
    std::fs::write(&config_path, config(dir.path(), &openai.url())).unwrap();
    let s3 = bucket(&moto).await;
    Setup {
        moto,
        openai,
        dir,
        config_path,
        s3,
    }
}

/// A client of moto's S3 with the bucket made.
async fn bucket(moto: &MotoServer) -> aws_sdk_s3::Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_types::region::Region::new("us-east-1"))
        .endpoint_url(moto.url())
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            .build(),
    );
    client.create_bucket().bucket(BUCKET).send().await.unwrap();
    client
}

async fn put(client: &aws_sdk_s3::Client, key: &str, body: &[u8]) {
    client
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap();
}

/// `ragway ingest --store docs ARGS` with moto as every AWS endpoint.
async fn ingest(config: &Path, moto: &MotoServer, args: &[&str]) -> Output {
    ingest_with(config, moto, args, &[]).await
}

/// [`ingest`] with more environment variables.
async fn ingest_with(
    config: &Path,
    moto: &MotoServer,
    args: &[&str],
    env: &[(&str, String)],
) -> Output {
    tokio::process::Command::new(crate::support::ragway_bin())
        .args(["ingest", "--store", "docs", "--config"])
        .arg(config)
        .args(args)
        .envs(test_env())
        .env("AWS_ENDPOINT_URL", moto.url())
        // No profile files from the machine running the tests.
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(name, value)| (*name, value)))
        .output()
        .await
        .unwrap()
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The objects moto served with GET since request `from`, by key.
fn gets(moto: &MotoServer, from: usize) -> Vec<String> {
    let mut keys: Vec<String> = moto.requests()[from..]
        .iter()
        .filter(|r| r.method == "GET" && !r.path.contains("list-type="))
        .filter_map(|r| {
            let path = r.path.split('?').next().unwrap_or_default();
            path.strip_prefix(&format!("/{BUCKET}/")).map(str::to_owned)
        })
        .collect();
    keys.sort();
    keys
}

/// `(id, title, uri)` of every stored document, by id.
fn stored(dir: &Path) -> Vec<(String, String, String)> {
    let conn = rusqlite::Connection::open(dir.join("docs/store.sqlite3")).unwrap();
    let mut statement = conn
        .prepare("SELECT id, coalesce(title, ''), coalesce(uri, '') FROM documents ORDER BY id")
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn chunk_texts(dir: &Path) -> String {
    let conn = rusqlite::Connection::open(dir.join("docs/store.sqlite3")).unwrap();
    let mut statement = conn.prepare("SELECT text FROM chunks").unwrap();
    let texts: Vec<String> = statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    texts.join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_under_a_prefix_are_ingested_and_skipped_unread_while_their_etag_holds() {
    let Setup {
        moto,
        openai,
        dir,
        config_path,
        s3,
    } = setup().await;
    put(
        &s3,
        "team/docs/guide/intro.md",
        b"# Getting started\n\nInstall ragway and ask it.",
    )
    .await;
    put(
        &s3,
        "team/docs/page.html",
        b"<html><head><title>Web page</title></head><body><p>Body of the page.</p></body></html>",
    )
    .await;
    put(&s3, "team/docs/notes.txt", b"Plain notes, first version.").await;
    put(
        &s3,
        "team/docs/faq.jsonl",
        b"{\"id\": \"faq-1\", \"text\": \"How do I start?\"}\n\n{\"id\": \"faq-2\", \"text\": \"Where are the docs?\", \"title\": \"Docs\"}\n",
    )
    .await;
    // Left out: hidden entries, unknown kinds, folder markers, keys beside the prefix.
    put(&s3, "team/docs/.drafts/secret.md", b"# Not for the store").await;
    put(&s3, "team/docs/logo.png", b"\x89PNG\r\n\x1a\n").await;
    put(&s3, "team/docs/empty-folder/", b"").await;
    put(&s3, "team/docs-old/old.md", b"# Old").await;
    put(&s3, "team/other.md", b"# Other").await;
    let address = format!("s3://{BUCKET}/team/docs/");

    let output = ingest(&config_path, &moto, &[&address]).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("4 file(s) into \"docs\": 5 added, 0 replaced, 0 unchanged (skipped)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("skipped 2 file(s) of unsupported type"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "listed {address}: 4 object(s) to read (266 bytes), 0 held at their ETag"
        )),
        "{stderr}"
    );
    let object = |key: &str| format!("s3://{BUCKET}/team/docs/{key}");
    // Ids as `ragway ingest ./docs` gives them for a copy of team/docs on disk.
    assert_eq!(
        stored(dir.path()),
        vec![
            (
                "docs/guide/intro.md".to_owned(),
                "Getting started".to_owned(),
                object("guide/intro.md")
            ),
            (
                "docs/notes.txt".to_owned(),
                "notes.txt".to_owned(),
                object("notes.txt")
            ),
            (
                "docs/page.html".to_owned(),
                "Web page".to_owned(),
                object("page.html")
            ),
            ("faq-1".to_owned(), String::new(), String::new()),
            ("faq-2".to_owned(), "Docs".to_owned(), String::new()),
        ]
    );
    assert!(chunk_texts(dir.path()).contains("Body of the page."));
    assert!(!chunk_texts(dir.path()).contains("Not for the store"));

    // Again: the objects the store holds at their ETag are not downloaded; the JSON Lines
    // object is (its lines are judged one by one).
    let before = moto.requests().len();
    let output = ingest(&config_path, &moto, &[&address]).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("0 added, 0 replaced, 5 unchanged (skipped)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("3 S3 object(s) not downloaded: the store holds them at their ETag"),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "listed {address}: 1 object(s) to read (108 bytes), 3 held at their ETag"
        )),
        "{stderr}"
    );
    assert_eq!(gets(&moto, before), ["team/docs/faq.jsonl"]);

    // A changed object has a new ETag: it alone is read and replaced.
    put(&s3, "team/docs/notes.txt", b"Plain notes, second version.").await;
    let before = moto.requests().len();
    let output = ingest(&config_path, &moto, &[&address]).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("0 added, 1 replaced, 4 unchanged (skipped)"),
        "{stdout}"
    );
    assert_eq!(
        gets(&moto, before),
        ["team/docs/faq.jsonl", "team/docs/notes.txt"]
    );
    let texts = chunk_texts(dir.path());
    assert!(texts.contains("second version"), "{texts}");
    assert!(!texts.contains("first version"), "{texts}");

    // A different chunk size re-chunks every document, so each object is read again.
    let resized = config(dir.path(), &openai.url()).replace(
        "embedder = \"fake\"\n",
        "embedder = \"fake\"\nchunk_size = 500\n",
    );
    std::fs::write(&config_path, resized).unwrap();
    let before = moto.requests().len();
    let output = ingest(&config_path, &moto, &[&address]).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("0 added, 5 replaced, 0 unchanged"),
        "{stdout}"
    );
    assert_eq!(gets(&moto, before).len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn what_a_bucket_cannot_give_is_named_and_the_rest_is_ingested() {
    let Setup {
        moto,
        openai: _openai,
        dir,
        config_path,
        s3,
    } = setup().await;
    put(&s3, "in/good.md", b"# Good\n\nReadable text.").await;
    put(&s3, "in/bad.txt", b"caf\xe9 in Latin-1").await;
    put(
        &s3,
        "in/lines.jsonl",
        b"{\"id\": \"l1\", \"text\": \"first line\"}\n{\"id\": \"l2\", \"text\": \n{\"id\": \"l3\", \"text\": \"after\"}\n",
    )
    .await;
    put(&s3, "in/empty.md", b"  \n").await;
    // One line longer than a reader holds: the object fails there, the line before it is kept.
    let long = "x".repeat(ragway_retrieval::ingest::read::MAX_LINE_BYTES as usize);
    put(
        &s3,
        "in/huge.jsonl",
        format!("{{\"id\": \"h1\", \"text\": \"fits\"}}\n{{\"text\": \"{long}\"}}\n").as_bytes(),
    )
    .await;

    // A local folder and an S3 prefix in one run.
    let local = dir.path().join("local");
    std::fs::create_dir(&local).unwrap();
    std::fs::write(local.join("here.md"), "# Here\n\nA local file.").unwrap();
    let output = ingest(
        &config_path,
        &moto,
        &[local.to_str().unwrap(), &format!("s3://{BUCKET}/in")],
    )
    .await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!(
            "warning: s3://{BUCKET}/in/bad.txt: not UTF-8 text (invalid byte at offset 3)"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("warning: s3://{BUCKET}/in/lines.jsonl:2: ")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "warning: s3://{BUCKET}/in/huge.jsonl:2: longer than 64 MiB"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("3 file(s) could not be read"), "{stderr}");
    let ids: Vec<String> = stored(dir.path()).into_iter().map(|(id, ..)| id).collect();
    assert_eq!(ids, ["h1", "in/good.md", "l1", "local/here.md"]);

    // Addresses and buckets that cannot be read fail before anything is written.
    for (address, says) in [
        ("s3://", "names no bucket"),
        ("s3://bad bucket/x", "a bucket name holds"),
        ("s3://no-such-bucket/docs", "NoSuchBucket"),
    ] {
        let output = ingest(&config_path, &moto, &[address]).await;
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(1), "{address}: {stdout}{stderr}");
        assert!(stderr.contains(address), "{address}: {stderr}");
        assert!(stderr.contains(says), "{address}: {stderr}");
    }
    assert_eq!(stored(dir.path()).len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pgvector_store_is_asked_for_the_etags_it_holds_too() {
    let Setup {
        moto,
        openai,
        dir: _dir,
        config_path,
        s3,
    } = setup().await;
    let pg = ragway_testkit::postgres::Postgres::start().unwrap();
    std::fs::write(
        &config_path,
        format!(
            r#"
[[embedder]]
name = "fake"
type = "openai"
model = "text-embedding-3-small"
base_url = "{}/v1"
dimensions = 32

[[vector_store]]
name = "docs"
type = "pgvector"
dsn = "env::RAGWAY_TEST_PG_DSN"
embedder = "fake"
"#,
            openai.url()
        ),
    )
    .unwrap();
    let env = [("RAGWAY_TEST_PG_DSN", pg.dsn())];
    put(&s3, "kb/a.md", b"# A\n\nThe first page.").await;
    put(&s3, "kb/b.txt", b"The second page.").await;
    let address = format!("s3://{BUCKET}/kb/");
    let run = async |expect: &str, fetched: &[&str]| {
        let before = moto.requests().len();
        let output = ingest_with(&config_path, &moto, &[&address], &env).await;
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{stdout}{stderr}");
        assert!(stdout.contains(expect), "{stdout}");
        assert_eq!(gets(&moto, before), fetched);
    };
    run("2 added, 0 replaced, 0 unchanged", &["kb/a.md", "kb/b.txt"]).await;
    run("0 added, 0 replaced, 2 unchanged", &[]).await;
    put(&s3, "kb/b.txt", b"The second page, revised.").await;
    run("0 added, 1 replaced, 1 unchanged", &["kb/b.txt"]).await;
}

/// A proxy in front of moto that passes everything through, except that it cuts the body of a
/// GET of a key ending in `cut.jsonl` after `CUT` bytes every time, and of a key ending in
/// `once.jsonl` the first time only: a connection that breaks mid-object.
async fn cutting_proxy(moto: &str) -> String {
    use axum::body::Body;
    use axum::extract::{Request, State};
    use axum::response::Response;

    const CUT: usize = 4096;
    #[derive(Clone)]
    struct Proxy {
        moto: String,
        client: reqwest::Client,
        cut_once: std::sync::Arc<std::sync::Mutex<bool>>,
    }
    async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut sent = proxy
            .client
            .request(parts.method.clone(), format!("{}{target}", proxy.moto))
            .body(body);
        for (name, value) in &parts.headers {
            if name != "host" {
                sent = sent.header(name, value);
            }
        }
        let answer = sent.send().await.unwrap();
        let (status, headers) = (answer.status(), answer.headers().clone());
        let bytes = answer.bytes().await.unwrap();
        let path = parts.uri.path();
        let cut = parts.method == axum::http::Method::GET
            && bytes.len() > CUT
            && (path.ends_with("cut.jsonl")
                || (path.ends_with("once.jsonl")
                    && !std::mem::replace(&mut *proxy.cut_once.lock().unwrap(), true)));
        let mut response = if cut {
            use futures::StreamExt as _;
            let head = bytes.slice(..CUT);
            // The head goes out (and is flushed) before the connection is cut.
            let body = futures::stream::once(async move { Ok(head) }).chain(futures::stream::once(
                async {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    Err(std::io::Error::other("connection cut by the test"))
                },
            ));
            Response::new(Body::from_stream(body))
        } else {
            Response::new(Body::from(bytes))
        };
        *response.status_mut() = status;
        for (name, value) in &headers {
            if name != "transfer-encoding" && name != "connection" {
                response.headers_mut().insert(name, value.clone());
            }
        }
        response
    }
    let app = axum::Router::new().fallback(forward).with_state(Proxy {
        moto: moto.to_owned(),
        client: reqwest::Client::new(),
        cut_once: std::sync::Arc::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_lines_object_whose_connection_breaks_is_read_on_from_where_it_stopped() {
    let Setup {
        moto,
        openai: _openai,
        dir,
        config_path,
        s3,
    } = setup().await;
    let proxy = cutting_proxy(moto.url()).await;
    // About 45 bytes a line: 500 lines are more than five cuts' worth.
    let lines = |name: &str| -> String {
        (0..500)
            .map(|i| format!("{{\"id\": \"{name}-{i:03}\", \"text\": \"line {i} of {name}\"}}\n"))
            .collect()
    };
    put(&s3, "feed/once.jsonl", lines("once").as_bytes()).await;
    put(&s3, "feed/cut.jsonl", lines("cut").as_bytes()).await;
    let address = format!("s3://{BUCKET}/feed/");

    let output = ingest_with(
        &config_path,
        &moto,
        &[&address],
        &[("AWS_ENDPOINT_URL", proxy.clone())],
    )
    .await;
    let (stdout, stderr) = text(&output);
    // cut.jsonl breaks every time: after three resumes it fails, named, keeping its lines read.
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!(
            "warning: s3://{BUCKET}/feed/cut.jsonl: the object's body broke off"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("3 times"), "{stderr}");
    let ids: Vec<String> = stored(dir.path()).into_iter().map(|(id, ..)| id).collect();
    let once: Vec<&String> = ids.iter().filter(|id| id.starts_with("once-")).collect();
    let cut = ids.iter().filter(|id| id.starts_with("cut-")).count();
    // once.jsonl broke once and was read on: every line, each once, in order.
    assert_eq!(once.len(), 500, "{ids:?}");
    assert_eq!(once[499], "once-499");
    assert!((200..500).contains(&cut), "{cut} lines of cut.jsonl kept");
    assert_eq!(
        ids.iter().collect::<std::collections::HashSet<_>>().len(),
        ids.len()
    );

    // The second read of once.jsonl asked for the rest of the same object.
    let gets: Vec<_> = moto
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains("once.jsonl"))
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].header("range"), None);
    let range = gets[1].header("range").unwrap();
    assert!(
        range.starts_with("bytes=") && range.ends_with('-'),
        "{range}"
    );
    let offset: usize = range["bytes=".len()..range.len() - 1].parse().unwrap();
    assert!(offset > 0 && offset <= 4096, "{range}");
    assert_eq!(
        lines("once").as_bytes()[offset - 1],
        b'\n',
        "resumed at a line's start"
    );
    assert!(gets[1].header("if-match").is_some(), "{:?}", gets[1]);
}
