//! `ImageError`: every way building or pushing an image fails, each saying what and where.

use std::path::PathBuf;

/// Why an image could not be built, inspected or pushed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file listed in the image spec cannot be opened or read.
    #[error("image file {target}: cannot read its source {}: {source}", path.display())]
    SourceMissing {
        /// The file on disk that was asked for.
        path: PathBuf,
        /// Where it was to go in the image.
        target: String,
        /// The underlying error (usually "No such file or directory").
        source: std::io::Error,
    },

    /// A source is not a regular file (a folder, a device, a socket).
    #[error("image file {target}: its source {} is not a regular file", path.display())]
    SourceNotFile {
        /// The file on disk that was asked for.
        path: PathBuf,
        /// Where it was to go in the image.
        target: String,
    },

    /// A target path inside the image is not a clean absolute path.
    #[error("layer {layer}: target {target:?} is not allowed: {reason}")]
    InvalidTarget {
        /// The layer's name.
        layer: String,
        /// The target as given.
        target: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// Two files of one layer go to the same path, or a path is both a file and a folder.
    #[error("layer {layer}: {target} is given twice (or is both a file and a folder)")]
    TargetConflict {
        /// The layer's name.
        layer: String,
        /// The path inside the image.
        target: String,
    },

    /// Reading or writing the build folder failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("cannot write layer", "cannot create folder", ...).
        action: String,
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// The image config or manifest could not be put together.
    #[error("cannot assemble the image {what}: {message}")]
    Assemble {
        /// "config" or "manifest".
        what: &'static str,
        /// The builder's or serializer's message.
        message: String,
    },

    /// `ldd` could not be run or did not understand the binary.
    #[error("cannot list the shared libraries of {}: {message}", binary.display())]
    Ldd {
        /// The binary that was inspected.
        binary: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// The binary needs a shared library that the dynamic loader cannot find here.
    #[error("{} needs {library}, which is not installed on this machine", binary.display())]
    LibraryNotFound {
        /// The binary that was inspected.
        binary: PathBuf,
        /// The library's name as `ldd` printed it.
        library: String,
    },

    /// The registry, repository or tag is not a valid OCI reference.
    #[error("invalid image reference {reference}: {reason}")]
    InvalidReference {
        /// `registry/repository:tag`.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Nothing answered at the registry's address.
    #[error("registry {registry} is unreachable: {message}")]
    Unreachable {
        /// `host:port`.
        registry: String,
        /// The connection error.
        message: String,
    },

    /// The registry refused the credentials (HTTP 401 or 403).
    #[error("registry {registry} refused the credentials{} while trying to {action}{}", if *.anonymous { " (none were given: anonymous access)" } else { "" }, status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    AuthRefused {
        /// `host:port`.
        registry: String,
        /// What was being done.
        action: String,
        /// True when no credentials were given.
        anonymous: bool,
        /// 401 or 403, when known.
        status: Option<u16>,
    },

    /// The registry answered with an error.
    #[error("registry {registry} refused to {action}{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Refused {
        /// `host:port`.
        registry: String,
        /// What was being done.
        action: String,
        /// The HTTP status, when known.
        status: Option<u16>,
        /// The registry's `errors[].message` (or its whole body when it is not an OCI error).
        message: String,
    },

    /// The connection broke or the answer made no sense (after the registry was reached).
    #[error("talking to registry {registry} failed while trying to {action}: {message}")]
    Transfer {
        /// `host:port`.
        registry: String,
        /// What was being done.
        action: String,
        /// The underlying error.
        message: String,
    },

    /// The registry stored something other than what was computed here.
    #[error("digest mismatch for {what}: computed {expected}, registry has {actual}")]
    DigestMismatch {
        /// What was compared ("manifest of repo:tag", "blob at path").
        what: String,
        /// The digest computed locally.
        expected: String,
        /// The digest the registry reported.
        actual: String,
    },
}

/// `Result` with [`ImageError`].
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

impl ImageError {
    /// An I/O error on a file or folder of the build.
    pub(crate) fn io(
        action: impl Into<String>,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action: action.into(),
            path: path.into(),
            source,
        }
    }
}
