//! A pgvector store's tables: versioned migrations, run at start-up under Postgres's advisory
//! lock so that replicas starting together do not race, and the setup that depends on the
//! config (the vector column's dimension, the HNSW index for the metric and its parameters).
//!
//! Migrations are sqlx's: each is applied once, in a transaction, and recorded in
//! `<schema>.schema_migrations`. A database that records a migration this binary does not know
//! was migrated by a newer ragway, and is refused rather than used half-understood.

use std::borrow::Cow;

use ragway_core::config::PgMetric;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::{Connection as _, Executor as _, PgConnection, Row as _};

use super::{Settings, sql_text};
use crate::error::{Error, Result};

/// The migrations, oldest first; `{schema}` is replaced by the store's schema. Never edit one
/// that has shipped (its checksum is recorded): add the next version instead.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "documents and chunks",
        "CREATE EXTENSION IF NOT EXISTS vector;
     CREATE TABLE {schema}.documents (
         id           text PRIMARY KEY,
         title        text,
         uri          text,
         metadata     jsonb NOT NULL DEFAULT '{}',
         content_hash text NOT NULL,
         chunks       integer NOT NULL,
         updated_at   timestamptz NOT NULL DEFAULT now()
     );
     CREATE INDEX documents_metadata ON {schema}.documents USING gin (metadata jsonb_path_ops);
     CREATE TABLE {schema}.chunks (
         id          bigserial PRIMARY KEY,
         document_id text NOT NULL REFERENCES {schema}.documents (id) ON DELETE CASCADE,
         position    integer NOT NULL,
         text        text NOT NULL,
         embedding   vector NOT NULL,
         UNIQUE (document_id, position)
     );
     CREATE TABLE {schema}.settings (
         key   text PRIMARY KEY,
         value text NOT NULL
     );",
    ),
    (
        2,
        "keyword index",
        // Each chunk's title and text stemmed for English (`keywords`, GIN-indexed) with its
        // length in words, and the totals BM25 needs (`keyword_stats`, one row) kept by
        // statement triggers: in the same transaction as the rows, whoever writes them.
        "ALTER TABLE {schema}.chunks ADD COLUMN keywords tsvector, ADD COLUMN words integer;
     UPDATE {schema}.chunks c
        SET keywords = to_tsvector('english', coalesce(d.title, '') || E'\\n' || c.text)
        FROM {schema}.documents d WHERE d.id = c.document_id;
     UPDATE {schema}.chunks
        SET words = (SELECT coalesce(sum(cardinality(positions)), 0) FROM unnest(keywords));
     ALTER TABLE {schema}.chunks ALTER COLUMN keywords SET NOT NULL,
                                 ALTER COLUMN words SET NOT NULL;
     CREATE INDEX chunks_keywords ON {schema}.chunks USING gin (keywords);
     CREATE TABLE {schema}.keyword_stats (
         one    boolean PRIMARY KEY DEFAULT true CHECK (one),
         chunks bigint NOT NULL,
         words  bigint NOT NULL
     );
     INSERT INTO {schema}.keyword_stats (chunks, words)
        SELECT count(*), coalesce(sum(words), 0) FROM {schema}.chunks;
     CREATE FUNCTION {schema}.keyword_stats_added() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
         UPDATE {schema}.keyword_stats SET chunks = chunks + a.n, words = words + a.w
         FROM (SELECT count(*) AS n, coalesce(sum(words), 0) AS w FROM added) a;
         RETURN NULL;
     END $$;
     CREATE FUNCTION {schema}.keyword_stats_removed() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
         UPDATE {schema}.keyword_stats SET chunks = chunks - r.n, words = words - r.w
         FROM (SELECT count(*) AS n, coalesce(sum(words), 0) AS w FROM removed) r;
         RETURN NULL;
     END $$;
     CREATE TRIGGER keyword_stats_added AFTER INSERT ON {schema}.chunks
        REFERENCING NEW TABLE AS added FOR EACH STATEMENT
        EXECUTE FUNCTION {schema}.keyword_stats_added();
     CREATE TRIGGER keyword_stats_removed AFTER DELETE ON {schema}.chunks
        REFERENCING OLD TABLE AS removed FOR EACH STATEMENT
        EXECUTE FUNCTION {schema}.keyword_stats_removed();",
    ),
];

/// The newest schema version this binary knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |(version, _, _)| *version)
}

fn migrator(schema: &str) -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                sql_text(sql.replace("{schema}", schema)),
                false,
            )
        })
        .collect();
    let mut migrator = Migrator::with_migrations(migrations);
    migrator.dangerous_set_table_name(format!("{schema}.schema_migrations"));
    migrator.create_schema(schema.to_owned());
    migrator
}

/// Brings the schema to the latest version, then makes the vector column and the HNSW index
/// match the settings. Runs on a connection of its own (advisory locks belong to a session, so
/// a pooled connection would carry the lock on after a failure) with no statement timeout: an
/// index build over a large table takes what it takes.
pub async fn prepare(
    connection: &mut PgConnection,
    schema: &str,
    settings: &Settings,
    dimension: usize,
) -> Result<()> {
    connection
        .execute("SET statement_timeout = 0")
        .await
        .map_err(|e| Error::postgres("setting up", e))?;
    migrator(schema)
        .run_direct(None, connection, false)
        .await
        .map_err(|e| migrate_error(schema, e))?;

    // The settings below are made under a lock of this store's own, for the same reason.
    let lock = lock_key(schema);
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(lock)
        .execute(&mut *connection)
        .await
        .map_err(|e| Error::postgres("locking the schema", e))?;
    let result = configure(connection, schema, settings, dimension).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(lock)
        .execute(&mut *connection)
        .await;
    result?;
    unlocked.map_err(|e| Error::postgres("unlocking the schema", e))?;
    Ok(())
}

async fn configure(
    connection: &mut PgConnection,
    schema: &str,
    settings: &Settings,
    dimension: usize,
) -> Result<()> {
    let mut tx = connection
        .begin()
        .await
        .map_err(|e| Error::postgres("setting up", e))?;
    let stored: Option<String> = sqlx::query_scalar(sql_text(format!(
        "SELECT value FROM {schema}.settings WHERE key = 'dimension'"
    )))
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| Error::postgres("reading the settings", e))?;
    match stored.map(|v| v.parse::<usize>()) {
        Some(Ok(stored)) if stored == dimension => {}
        Some(Ok(stored)) => {
            return Err(Error::Dimension {
                what: format!("Postgres schema \"{schema}\" (vectors stored)"),
                expected: dimension,
                found: stored,
            });
        }
        Some(Err(_)) | None => {
            // A new store (or one whose setting was lost): the column takes the embedder's
            // dimension, which the HNSW index needs; rows of another length make this fail.
            tx.execute(sql_text(format!(
                "ALTER TABLE {schema}.chunks ALTER COLUMN embedding TYPE vector({dimension})"
            )))
            .await
            .map_err(|e| Error::postgres("setting the vector dimension", e))?;
            sqlx::query(sql_text(format!(
                "INSERT INTO {schema}.settings (key, value) VALUES ('dimension', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            )))
            .bind(dimension.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| Error::postgres("recording the vector dimension", e))?;
        }
    }

    // One HNSW index, named for what it was built with; a changed metric or parameter builds
    // the new one and drops the old in the same transaction.
    let wanted = index_name(settings);
    let existing: Vec<String> = sqlx::query(
        "SELECT indexname FROM pg_indexes
         WHERE schemaname = $1 AND tablename = 'chunks' AND indexname LIKE 'chunks_hnsw_%'",
    )
    .bind(schema)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| Error::postgres("listing indexes", e))?
    .iter()
    .filter_map(|row| row.try_get::<String, _>(0).ok())
    .collect();
    if !existing.contains(&wanted) {
        tracing::info!(schema, index = %wanted, "building the HNSW index");
        tx.execute(sql_text(format!(
            "CREATE INDEX {wanted} ON {schema}.chunks USING hnsw (embedding {}) \
             WITH (m = {}, ef_construction = {})",
            opclass(settings.metric),
            settings.hnsw_m,
            settings.ef_construction
        )))
        .await
        .map_err(|e| Error::postgres("building the HNSW index", e))?;
    }
    for old in existing.iter().filter(|name| **name != wanted) {
        tx.execute(sql_text(format!("DROP INDEX {schema}.{old}")))
            .await
            .map_err(|e| Error::postgres("dropping an old index", e))?;
    }
    tx.commit()
        .await
        .map_err(|e| Error::postgres("setting up", e))
}

/// `chunks_hnsw_<metric>_m<m>_ef<ef_construction>`: an identifier well under 63 characters.
fn index_name(settings: &Settings) -> String {
    let metric = match settings.metric {
        PgMetric::Cosine => "cosine",
        PgMetric::InnerProduct => "ip",
        PgMetric::L2 => "l2",
    };
    format!(
        "chunks_hnsw_{metric}_m{}_ef{}",
        settings.hnsw_m, settings.ef_construction
    )
}

/// pgvector's operator class for a metric.
fn opclass(metric: PgMetric) -> &'static str {
    match metric {
        PgMetric::Cosine => "vector_cosine_ops",
        PgMetric::InnerProduct => "vector_ip_ops",
        PgMetric::L2 => "vector_l2_ops",
    }
}

/// pgvector's distance operator for a metric (the one its index serves).
pub fn operator(metric: PgMetric) -> &'static str {
    match metric {
        PgMetric::Cosine => "<=>",
        PgMetric::InnerProduct => "<#>",
        PgMetric::L2 => "<->",
    }
}

/// The advisory lock of one schema's setup: a stable 64-bit number from its name (sqlx's
/// migration lock is per database; this one lets stores of other schemas set up meanwhile).
fn lock_key(schema: &str) -> i64 {
    use sha2::{Digest as _, Sha256};
    let digest = Sha256::digest(format!("ragway pgvector setup {schema}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_le_bytes(bytes)
}

fn migrate_error(schema: &str, error: MigrateError) -> Error {
    let latest = latest_version();
    let message = match error {
        MigrateError::VersionMissing(version) => format!(
            "the database's schema \"{schema}\" is at version {version}, newer than this \
             ragway knows (up to {latest}): it was migrated by a newer ragway. Run that version, \
             or point this store at another schema"
        ),
        MigrateError::VersionMismatch(version) => format!(
            "migration {version} of schema \"{schema}\" differs from the one recorded in the \
             database: the schema was changed by something other than ragway"
        ),
        MigrateError::Dirty(version) => {
            format!("migration {version} of schema \"{schema}\" failed half-way; repair it by hand")
        }
        other => format!("migrating schema \"{schema}\": {other}"),
    };
    Error::Schema { message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(metric: PgMetric, m: u32, ef: u32) -> Settings {
        Settings {
            metric,
            hnsw_m: m,
            ef_construction: ef,
            ef_search: 40,
            chunk_size: 1000,
            chunk_overlap: 100,
        }
    }

    #[test]
    fn the_index_is_named_for_what_it_was_built_with() {
        assert_eq!(
            index_name(&settings(PgMetric::Cosine, 16, 64)),
            "chunks_hnsw_cosine_m16_ef64"
        );
        assert_ne!(
            index_name(&settings(PgMetric::L2, 16, 64)),
            index_name(&settings(PgMetric::Cosine, 16, 64))
        );
        assert!(index_name(&settings(PgMetric::InnerProduct, 100, 1000)).len() < 63);
    }

    #[test]
    fn migrations_are_numbered_in_order_and_name_their_schema() {
        let migrator = migrator("ragway_docs");
        let versions: Vec<i64> = migrator.iter().map(|m| m.version).collect();
        assert_eq!(versions, (1..=latest_version()).collect::<Vec<_>>());
        assert!(
            migrator
                .iter()
                .all(|m| !m.sql.as_str().contains("{schema}"))
        );
        assert_eq!(migrator.table_name, "ragway_docs.schema_migrations");
    }

    #[test]
    fn each_schema_has_its_own_lock() {
        assert_ne!(lock_key("ragway_a"), lock_key("ragway_b"));
        assert_eq!(lock_key("ragway_a"), lock_key("ragway_a"));
    }
}
