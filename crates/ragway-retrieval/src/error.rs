//! The crate's own errors (FAISS, SQLite, files, ingestion), mapped to `ProviderError` and
//! `BuildError` where they cross a `ragway_core` trait.

use std::path::PathBuf;

use ragway_core::ProviderError;

/// What a store, a reader or an import can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The document database failed.
    #[error("document database {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },

    /// FAISS refused an operation (reading, writing, adding, searching).
    #[error("faiss: {message}")]
    Faiss { message: String },

    /// Vectors of two different lengths met (the embedder's and the index's, say).
    #[error("{what}: expected {expected} dimensions, found {found}")]
    Dimension {
        what: String,
        expected: usize,
        found: usize,
    },

    /// A store folder or an index file holds something ragway cannot use.
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },

    /// A document file could not be turned into text (an unreadable PDF, bad UTF-8).
    #[error("{}: {message}", path.display())]
    Read { path: PathBuf, message: String },

    /// An S3 source or object could not be listed or read (`location` is its s3:// address).
    #[error("{location}: {message}")]
    S3 { location: String, message: String },

    /// A JSON Lines file has a bad line.
    #[error("{}:{line}: {message}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },

    /// Postgres failed or could not be reached (`context` says what ragway was doing).
    #[error("postgres, {context}: {source}")]
    Postgres {
        context: String,
        source: sqlx::Error,
    },

    /// A document the store cannot take as it is (the message names it and why).
    #[error("{message}")]
    Rejected { message: String },

    /// A pgvector store's schema or connection settings cannot be used as they are.
    #[error("{message}")]
    Schema { message: String },

    /// The embedder failed, or the CPU pool had no room (passed on as it is).
    #[error(transparent)]
    Embed(#[from] ProviderError),

    /// The embedder failed on a batch of an ingest: named by the first document in it.
    #[error("embedding the chunks of document \"{document}\" failed: {cause}")]
    EmbedDocument {
        document: String,
        cause: ProviderError,
    },

    /// Another process holds a FAISS store's write lock and did not let go in time.
    #[error("another writer holds the store's write lock ({holder}); try again when it is done")]
    Locked { path: PathBuf, holder: String },

    /// A FAISS store whose folder cannot be written (an image's, say) was asked to change.
    #[error("the store's folder is read-only: it can be searched, not written")]
    ReadOnly,

    /// A blocking task panicked or was cancelled.
    #[error("background task failed: {message}")]
    Task { message: String },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sqlite(path: impl Into<PathBuf>, source: rusqlite::Error) -> Self {
        Self::Sqlite {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn faiss(context: &str, error: ::faiss::error::Error) -> Self {
        Self::Faiss {
            message: format!("{context}: {error}"),
        }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn postgres(context: &str, source: sqlx::Error) -> Self {
        Self::Postgres {
            context: context.to_owned(),
            source,
        }
    }

    pub(crate) fn task(error: tokio::task::JoinError) -> Self {
        Self::Task {
            message: error.to_string(),
        }
    }

    /// Whether Postgres cancelled the statement because it ran past `statement_timeout`
    /// (SQLSTATE 57014, `query_canceled`; ragway cancels no statement itself).
    pub(crate) fn is_statement_timeout(&self) -> bool {
        matches!(self, Self::Postgres { source: sqlx::Error::Database(db), .. }
            if db.code().is_some_and(|code| code == "57014"))
    }

    /// The error as a provider error of `provider` (an embedder's error passes through).
    pub fn into_provider(self, provider: &str) -> ProviderError {
        match self {
            Self::Embed(error) | Self::EmbedDocument { cause: error, .. } => error,
            Self::Rejected { message } => ProviderError::Unsupported {
                provider: provider.to_owned(),
                message,
            },
            error @ Self::ReadOnly => ProviderError::Unsupported {
                provider: provider.to_owned(),
                message: error.to_string(),
            },
            error @ Self::Locked { .. } => ProviderError::Unavailable {
                provider: provider.to_owned(),
                message: error.to_string(),
            },
            Self::Postgres { context, source } if is_outage(&source) => {
                ProviderError::Unavailable {
                    provider: provider.to_owned(),
                    message: format!("postgres, {context}: {source}"),
                }
            }
            other => ProviderError::Internal {
                provider: provider.to_owned(),
                message: other.to_string(),
            },
        }
    }
}

/// Whether a Postgres error means the database is down or out of reach (a 503 for the
/// caller) rather than that this statement failed. Postgres's own codes: class 08 is a lost or
/// refused connection, 57P01-57P03 an administrator or crash shutdown, or a server starting up.
fn is_outage(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}
