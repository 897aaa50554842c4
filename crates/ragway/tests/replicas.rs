//! Several ragway processes on one PostgreSQL (pgvector), as replicas behind a load balancer
//! run: a document written through one is found through the others at once and deleted for
//! all; `kill -9` in the middle of an ingest leaves no partial document; Postgres stopped makes
//! `/readyz` and searches 503 while answers without retrieval go on, and its return heals
//! every replica without a restart. With one Redis too, a key's limit holds once across the
//! three however it is hammered, and a Redis outage gets the configured policy, counted, until
//! limits resume by themselves.

use std::time::Duration;

use ragway_testkit::postgres::Postgres;
use ragway_testkit::redis::RedisServer;
use serde_json::{Value, json};
use sqlx::{Connection as _, PgConnection, Row as _};

use crate::support::{Server, ragway_bin, test_env};

const DSN_VAR: &str = "RAGWAY_TEST_PG_DSN";

fn config(openai: &str) -> String {
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/all-MiniLM-L6-v2");
    format!(
        r#"
[[llm]]
name = "gpt-4o"
type = "openai"
model = "gpt-4o"
base_url = "{openai}/v1"
api_key = "env::TEST_OPENAI_KEY"

[[embedder]]
name = "minilm"
type = "local"
path = "{models}"

[[vector_store]]
name = "pg"
type = "pgvector"
dsn = "env::{DSN_VAR}"
embedder = "minilm"
connect_timeout_secs = 2
"#
    )
}

async fn replica(config: &str, pg: &Postgres) -> Server {
    let dsn = pg.dsn();
    Server::start_with(config, move |command| {
        command.env(DSN_VAR, dsn);
    })
    .await
}

async fn search(server: &Server, query: &str) -> (u16, serde_json::Value) {
    let (status, _, body) = server
        .post(
            "/search",
            &json!({"query": query, "vector_search_type": "pg", "top_k": 3}),
        )
        .await;
    (status, body)
}

fn ids(found: &serde_json::Value) -> Vec<String> {
    found["passages"]
        .as_array()
        .map(|passages| {
            passages
                .iter()
                .filter_map(|p| p["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_share_documents_and_ride_out_a_database_outage() {
    let pg = Postgres::start().unwrap();
    let openai = ragway_testkit::openai::start().await.unwrap();
    let config = config(&openai.url());
    let one = replica(&config, &pg).await;
    let two = replica(&config, &pg).await;
    let three = replica(&config, &pg).await;

    let (status, _, report) = one
        .post(
            "/stores/pg/documents",
            &json!({"documents": [
                {"id": "penguins", "text": "Emperor penguins breed in the Antarctic winter."},
                {"id": "volcanoes", "text": "Mount Etna is an active volcano on Sicily."},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["added"], 2);
    for replica in [&two, &three] {
        let (status, found) = search(replica, "where do penguins breed").await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(ids(&found)[0], "penguins#0", "{found}");
    }
    let (status, listing) = two.get("/stores").await;
    assert_eq!(status, 200);
    let pg_store = listing["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "pg")
        .cloned()
        .unwrap();
    assert_eq!(pg_store["documents"], 2, "{listing}");
    assert_eq!(pg_store["type"], "pgvector", "{listing}");

    let deleted = crate::support::client()
        .delete(format!("{}/stores/pg/documents/penguins", three.url))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 200);
    for replica in [&one, &two] {
        let (_, found) = search(replica, "where do penguins breed").await;
        assert!(
            !ids(&found).contains(&"penguins#0".to_owned()),
            "deleted through another replica: {found}"
        );
    }

    // The database goes away: readiness and searches say so with 503; answers that need no
    // retrieval go on.
    pg.stop().unwrap();
    for replica in [&one, &two, &three] {
        let (status, ready) = replica.get("/readyz").await;
        assert_eq!(status, 503, "{ready}");
        assert!(ready.to_string().contains("pg"), "{ready}");
        let (status, found) = search(replica, "volcano").await;
        assert_eq!(status, 503, "{found}");
        assert!(
            found["detail"].as_str().unwrap().contains("unavailable"),
            "{found}"
        );
        assert!(
            !found.to_string().contains("ragway@"),
            "no DSN in errors: {found}"
        );
    }
    let (status, _, answer) = one
        .post(
            "/generate",
            &json!({"prompt": "hello", "llm_name": "gpt-4o", "vector_search_type": "none"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");

    // It comes back: every replica serves again without a restart.
    pg.start_again().unwrap();
    for replica in [&one, &two, &three] {
        let mut ready = 0;
        for _ in 0..50 {
            (ready, _) = replica.get("/readyz").await;
            if ready == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(ready, 200, "{}", replica.logs());
        let (status, found) = search(replica, "an active volcano").await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(ids(&found)[0], "volcanoes#0", "{found}");
    }
}

/// The limited key's requests a minute, across every replica.
const LIMIT: usize = 10;
const LIMITED_KEY: &str = "rk-test-limited-19c4";

/// [`config`] with limits counted in one Redis (`fail_closed` while it is away) and two keys:
/// `ops` (`RAGWAY_TEST_API_KEY`) may write the store and has no limit; `limited` may read it,
/// [`LIMIT`] requests a minute.
fn config_with_redis(openai: &str) -> String {
    format!(
        r#"{}
[server.state]
redis_url = "env::RAGWAY_TEST_REDIS_URL"
redis_unavailable = "fail_closed"
redis_timeout_secs = 2

[[server.auth.keys]]
name = "ops"
key = "env::RAGWAY_TEST_API_KEY"
write_stores = ["pg"]

[[server.auth.keys]]
name = "limited"
key = "env::RAGWAY_TEST_LIMITED_KEY"
requests_per_minute = {LIMIT}
"#,
        config(openai)
    )
}

/// `POST path` with `key`: (status, body).
async fn post_as(server: &Server, key: &str, path: &str, body: &Value) -> (u16, Value) {
    let response = crate::support::client()
        .post(format!("{}{path}", server.url))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// 3 x [`LIMIT`] answers over the store asked at once with the limited key, spread over the
/// replicas: the statuses, and the passages of the admitted ones.
async fn hammer(replicas: &[Server; 3]) -> (Vec<u16>, Vec<Value>) {
    let ask = json!({"prompt": "where is Etna", "llm_name": "gpt-4o", "vector_search_type": "pg"});
    let burst = (0..3 * LIMIT).map(|i| post_as(&replicas[i % 3], LIMITED_KEY, "/generate", &ask));
    let answers = futures::future::join_all(burst).await;
    let statuses = answers.iter().map(|(status, _)| *status).collect();
    let sources = answers
        .into_iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body["sources"].clone())
        .collect();
    (statuses, sources)
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_on_one_postgres_and_one_redis_hold_one_limit_per_key() {
    let pg = Postgres::start().unwrap();
    let mut redis = RedisServer::start().unwrap_or_else(|error| panic!("{error:#}"));
    let openai = ragway_testkit::openai::start().await.unwrap();
    let config = config_with_redis(&openai.url());
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let (dsn, redis_url) = (pg.dsn(), redis.url());
        replicas.push(
            Server::start_with(&config, move |command| {
                command
                    .env(DSN_VAR, dsn)
                    .env("RAGWAY_TEST_REDIS_URL", redis_url)
                    .env("RAGWAY_TEST_LIMITED_KEY", LIMITED_KEY);
            })
            .await,
        );
    }
    let replicas: [Server; 3] = replicas.try_into().ok().unwrap();
    let ops = test_env()
        .into_iter()
        .find(|(name, _)| *name == "RAGWAY_TEST_API_KEY")
        .unwrap()
        .1;
    let (status, report) = post_as(
        &replicas[0],
        &ops,
        "/stores/pg/documents",
        &json!({"documents": [{"id": "etna", "text": "Mount Etna is an active volcano on Sicily."}]}),
    )
    .await;
    assert_eq!(status, 200, "{report}");

    // Hammered through all three at once, the key gets its limit once, not once per replica
    // (each admission is one atomic script in Redis: no slack), and every admitted answer was
    // grounded in the document written through replica 1.
    let (statuses, sources) = hammer(&replicas).await;
    assert_eq!(count(&statuses, 200), LIMIT, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 2 * LIMIT, "{statuses:?}");
    for found in &sources {
        assert_eq!(found[0]["id"], "etna#0", "{found}");
    }
    let counted = redis
        .command("HMGET ragway:limit:{requests:limited} c p")
        .unwrap();
    assert!(counted.contains(&format!("\r\n{LIMIT}\r\n")), "{counted}");

    // Redis goes away. fail_closed: the limited key gets a 503 naming Redis on every replica,
    // counted in /metrics; readiness says so; a key with no limit is not held up by Redis.
    redis.stop();
    for replica in &replicas {
        let (status, body) = post_as(
            replica,
            LIMITED_KEY,
            "/search",
            &json!({"query": "volcano", "vector_search_type": "pg"}),
        )
        .await;
        assert_eq!(status, 503, "{body}");
        assert!(body["detail"].as_str().unwrap().contains("Redis"), "{body}");
        let (status, body) = post_as(
            replica,
            &ops,
            "/search",
            &json!({"query": "volcano", "vector_search_type": "pg"}),
        )
        .await;
        assert_eq!(status, 200, "a key without limits needs no Redis: {body}");
        let (status, ready) = replica.get("/readyz").await;
        assert_eq!(status, 503, "{ready}");
        assert!(
            ready["detail"].as_str().unwrap().contains("redis"),
            "{ready}"
        );
        let metrics = replica.metrics().await;
        assert!(
            metrics
                .lines()
                .filter(|line| line.starts_with("ragway_rate_limit_store_unavailable_total{"))
                .any(|line| !line.ends_with(" 0")),
            "{metrics}"
        );
    }

    // Redis back (empty, as after a failover): every replica is ready again without a
    // restart, and the limit holds again across the three.
    redis.resume().unwrap();
    for replica in &replicas {
        let mut ready = 0;
        for _ in 0..100 {
            (ready, _) = replica.get("/readyz").await;
            if ready == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(ready, 200, "{}", replica.logs());
    }
    // After a failure ragway leaves Redis alone for a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (statuses, _) = hammer(&replicas).await;
    assert_eq!(count(&statuses, 200), LIMIT, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 2 * LIMIT, "{statuses:?}");
}

/// Documents whose chunk rows do not match their recorded count: a partial write.
async fn partial_documents(db: &mut PgConnection) -> Vec<String> {
    sqlx::query(
        "SELECT d.id FROM ragway_pg.documents d
         LEFT JOIN ragway_pg.chunks c ON c.document_id = d.id
         GROUP BY d.id, d.chunks HAVING count(c.id) <> d.chunks",
    )
    .fetch_all(db)
    .await
    .unwrap()
    .iter()
    .map(|row| row.get::<String, _>(0))
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_in_the_middle_of_an_ingest_leaves_no_partial_document() {
    let pg = Postgres::start().unwrap();
    let openai = ragway_testkit::openai::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("ragway.toml");
    std::fs::write(&config_path, config(&openai.url())).unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    let documents = 120;
    for i in 0..documents {
        let text: String = (0..60)
            .map(|w| format!("document{i} word{w} about topic{} ", i % 7))
            .collect();
        std::fs::write(corpus.join(format!("doc-{i:03}.txt")), text).unwrap();
    }
    let ingest = || {
        let mut command = tokio::process::Command::new(ragway_bin());
        command
            .args(["ingest", "--store", "pg", "--config"])
            .arg(&config_path)
            .arg(&corpus)
            .envs(test_env())
            .env(DSN_VAR, pg.dsn())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        command
    };
    let mut db = PgConnection::connect(&pg.dsn()).await.unwrap();

    // Killed at several moments (while embedding, while writing): never a partial document.
    for after_ms in [300u64, 900, 1800, 3000] {
        let mut child = ingest().spawn().unwrap();
        tokio::time::sleep(Duration::from_millis(after_ms)).await;
        let _ = child.start_kill();
        let _ = child.wait().await;
        if sqlx::query("SELECT 1 FROM ragway_pg.documents LIMIT 1")
            .fetch_optional(&mut db)
            .await
            .is_ok()
        {
            assert_eq!(partial_documents(&mut db).await, Vec::<String>::new());
        }
    }
    // Run to the end: every document once, whole.
    let output = ingest().output().await.unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM ragway_pg.documents")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(count, documents);
    assert_eq!(partial_documents(&mut db).await, Vec::<String>::new());
    // Again: all unchanged.
    let output = ingest().output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("0 added, 0 replaced, {documents} unchanged")),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_faiss_store_is_copied_into_pgvector_without_re_embedding() {
    let pg = Postgres::start().unwrap();
    let openai = ragway_testkit::openai::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_text = format!(
        "{}\n[[vector_store]]\nname = \"local\"\ntype = \"faiss\"\npath = \"{}\"\nembedder = \"minilm\"\n",
        config(&openai.url()),
        dir.path().join("faiss").display()
    );
    let config_path = dir.path().join("ragway.toml");
    std::fs::write(&config_path, &config_text).unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    std::fs::write(corpus.join("a.txt"), "Lisbon is the capital of Portugal.").unwrap();
    std::fs::write(
        corpus.join("b.txt"),
        "Photosynthesis turns light into sugar.",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut command = std::process::Command::new(ragway_bin());
        command
            .args(args)
            .arg("--config")
            .arg(&config_path)
            .envs(test_env())
            .env(DSN_VAR, pg.dsn());
        let output = command.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    };
    let (ok, text) = run(&["ingest", "--store", "local", corpus.to_str().unwrap()]);
    assert!(ok, "{text}");
    let (ok, text) = run(&["ingest", "--store", "pg", "--from-store", "local"]);
    assert!(ok, "{text}");
    assert!(text.contains("2 added, 0 replaced, 0 unchanged"), "{text}");
    let (ok, text) = run(&["ingest", "--store", "pg", "--from-store", "local"]);
    assert!(
        ok && text.contains("0 added, 0 replaced, 2 unchanged"),
        "{text}"
    );
    // The same files ingested straight into pgvector are unchanged too: the hash is shared.
    let (ok, text) = run(&["ingest", "--store", "pg", corpus.to_str().unwrap()]);
    assert!(ok && text.contains("2 unchanged"), "{text}");
    // Copying the other way, or from a store into itself, is refused with the reason.
    let (ok, text) = run(&["ingest", "--store", "local", "--from-store", "pg"]);
    assert!(
        !ok && text.contains("copies into a pgvector store"),
        "{text}"
    );
    let (ok, text) = run(&["ingest", "--store", "pg", "--from-store", "pg"]);
    assert!(
        !ok && text.contains("names the store being written"),
        "{text}"
    );

    // The copied vectors answer searches through a server.
    let server = replica(&config_text, &pg).await;
    let (status, found) = search(&server, "capital of Portugal").await;
    assert_eq!(status, 200, "{found}");
    assert!(ids(&found)[0].ends_with("#0"), "{found}");
    assert!(
        found["passages"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Lisbon"),
        "{found}"
    );
}
