//! `push` and `manifest_digest`: a built image sent to a registry over the OCI distribution API.
//!
//! Every call goes through `oci-client`, which covers all that is needed here: `blob_exists`
//! is the HEAD on a blob, `push_blob_stream` with `use_monolithic_push` streams a file-backed
//! blob as one `POST /v2/<name>/blobs/uploads/` then one `PUT <location>?digest=…` with its
//! `Content-Length` (never chunked PATCHes, which ECR rejects in some cases, and never the whole
//! blob in memory), `push_manifest_raw` sends the manifest bytes exactly as built (so the
//! digest the registry computes is ours), and `fetch_manifest_digest` is the HEAD on a tag.
//! What this module adds is the order (HEAD, skip or upload, manifest, verify), names that are
//! checked before any request, and errors that say which registry failed and how.

use std::time::Duration;

use futures::TryStreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciEnvelope, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use tokio_util::io::ReaderStream;

use crate::error::{ImageError, Result};
use crate::image::{Blob, BuiltImage, MANIFEST_MEDIA_TYPE};

const USER_AGENT: &str = concat!("ragway-image/", env!("CARGO_PKG_VERSION"));
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Between two reads of a response; a registry may take a while to answer after a large
/// upload (it checks the digest of the whole blob), so this is generous.
const READ_TIMEOUT: Duration = Duration::from_secs(300);
/// Read size when streaming a blob from disk.
const UPLOAD_READ_SIZE: usize = 256 * 1024;

/// A registry endpoint and repository; `insecure` means plain http (loopback registries in tests).
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port` (or `host`), without a scheme: `123456789012.dkr.ecr.us-east-1.amazonaws.com`.
    pub registry: String,
    /// Repository path, lower case: `ragway` or `team/ragway`.
    pub repository: String,
    /// Tag to push or look up: `v1.2.3`.
    pub tag: String,
    /// Basic auth, e.g. ECR's `("AWS", token)`; `None` for anonymous access.
    pub auth: Option<(String, String)>,
    /// Plain http instead of https.
    pub insecure: bool,
}

impl std::fmt::Debug for Target {
    /// Everything but the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("registry", &self.registry)
            .field("repository", &self.repository)
            .field("tag", &self.tag)
            .field(
                "auth",
                &self.auth.as_ref().map(|(user, _)| (user, "<redacted>")),
            )
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl Target {
    /// `registry/repository:tag`, for messages.
    pub fn reference(&self) -> String {
        format!("{}/{}:{}", self.registry, self.repository, self.tag)
    }
}

/// What `push` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// The manifest digest the tag now resolves to (equal to `BuiltImage::manifest_digest`).
    pub digest: String,
    /// Blobs (layers and config) uploaded.
    pub blobs_pushed: usize,
    /// Blobs the registry already had (HEAD answered 200), not uploaded again.
    pub blobs_skipped: usize,
    /// Bytes of the uploaded blobs.
    pub bytes_pushed: u64,
    /// False when the tag already resolved to this manifest, so nothing was written for it.
    pub manifest_pushed: bool,
}

/// Pushes `image` to `target`: for each blob (layers, then config) a HEAD, and an upload only
/// when the registry lacks it; then the manifest by tag (skipped when the tag already
/// resolves to it), and a HEAD on the tag to check that it resolves to the digest built here.
pub async fn push(image: &BuiltImage, target: &Target) -> Result<PushReport> {
    let reference = reference(target)?;
    let client = client(target);
    let auth = registry_auth(target);
    client
        .auth(&reference, &auth, RegistryOperation::Push)
        .await
        .map_err(|e| {
            registry_error(
                target,
                format!("sign in to push to {}", target.repository),
                e,
            )
        })?;

    let mut report = PushReport {
        digest: image.manifest_digest.clone(),
        blobs_pushed: 0,
        blobs_skipped: 0,
        bytes_pushed: 0,
        manifest_pushed: false,
    };
    for blob in image.layers.iter().chain(std::iter::once(&image.config)) {
        let present = client
            .blob_exists(&reference, &blob.digest)
            .await
            .map_err(|e| {
                registry_error(
                    target,
                    format!("check blob {} in {}", blob.digest, target.repository),
                    e,
                )
            })?;
        if present {
            report.blobs_skipped += 1;
            continue;
        }
        upload(&client, &reference, blob, target).await?;
        report.blobs_pushed += 1;
        report.bytes_pushed += blob.size;
    }

    let current = tag_digest(&client, &reference, &auth, target).await?;
    if current.as_deref() != Some(image.manifest_digest.as_str()) {
        let content_type = reqwest::header::HeaderValue::from_static(MANIFEST_MEDIA_TYPE);
        client
            .push_manifest_raw(&reference, image.manifest.clone(), content_type)
            .await
            .map_err(|e| {
                registry_error(
                    target,
                    format!("store the manifest as {}", target.reference()),
                    e,
                )
            })?;
        report.manifest_pushed = true;
        let stored = tag_digest(&client, &reference, &auth, target).await?;
        if stored.as_deref() != Some(image.manifest_digest.as_str()) {
            return Err(ImageError::DigestMismatch {
                what: format!("manifest of {}", target.reference()),
                expected: image.manifest_digest.clone(),
                actual: stored.unwrap_or_else(|| "no manifest for the tag".to_owned()),
            });
        }
    }
    Ok(report)
}

/// The digest of `tag` in the registry, or None if the tag (or the repository) does not
/// exist (HEAD on the manifest).
pub async fn manifest_digest(target: &Target) -> Result<Option<String>> {
    let reference = reference(target)?;
    let client = client(target);
    tag_digest(&client, &reference, &registry_auth(target), target).await
}

async fn tag_digest(
    client: &Client,
    reference: &Reference,
    auth: &RegistryAuth,
    target: &Target,
) -> Result<Option<String>> {
    match client.fetch_manifest_digest(reference, auth).await {
        Ok(digest) => Ok(Some(digest)),
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(registry_error(
            target,
            format!("look up {}", target.reference()),
            error,
        )),
    }
}

/// Streams one blob from disk as a monolithic upload.
async fn upload(
    client: &Client,
    reference: &Reference,
    blob: &Blob,
    target: &Target,
) -> Result<()> {
    let file = tokio::fs::File::open(&blob.path)
        .await
        .map_err(|e| ImageError::io("cannot open blob", &blob.path, e))?;
    let size = file
        .metadata()
        .await
        .map_err(|e| ImageError::io("cannot read blob", &blob.path, e))?
        .len();
    if size != blob.size {
        let message = format!(
            "its size is {size} bytes, the image says {} (changed since the build?)",
            blob.size
        );
        return Err(ImageError::io(
            "blob changed",
            &blob.path,
            std::io::Error::other(message),
        ));
    }
    let stream =
        ReaderStream::with_capacity(file, UPLOAD_READ_SIZE).map_err(OciDistributionError::from);
    client
        .push_blob_stream(reference, stream, &blob.digest, Some(blob.size))
        .await
        .map_err(|e| {
            registry_error(
                target,
                format!(
                    "upload blob {} ({} bytes) to {}",
                    blob.digest, blob.size, target.repository
                ),
                e,
            )
        })?;
    Ok(())
}

fn client(target: &Target) -> Client {
    Client::new(ClientConfig {
        protocol: if target.insecure {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        use_monolithic_push: true,
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(READ_TIMEOUT),
        user_agent: USER_AGENT,
        ..ClientConfig::default()
    })
}

fn registry_auth(target: &Target) -> RegistryAuth {
    match &target.auth {
        Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
        None => RegistryAuth::Anonymous,
    }
}

/// The target as an oci-client reference, checked against the distribution spec's grammar so
/// that a bad name fails here with the reason, not as a registry's 404.
fn reference(target: &Target) -> Result<Reference> {
    let invalid = |reason: &str| ImageError::InvalidReference {
        reference: target.reference(),
        reason: reason.to_owned(),
    };
    if target.registry.is_empty()
        || target.registry.contains('/')
        || target.registry.contains(char::is_whitespace)
    {
        return Err(invalid(
            "the registry must be host or host:port, without a scheme or path",
        ));
    }
    if target.repository.is_empty() || !target.repository.split('/').all(valid_repository_component)
    {
        return Err(invalid(
            "the repository must be lower-case path components of letters and digits, \
             separated inside by `.`, `_`, `__` or dashes (e.g. `team/ragway`)",
        ));
    }
    if !valid_tag(&target.tag) {
        return Err(invalid(
            "the tag must be 1 to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`",
        ));
    }
    Ok(Reference::with_tag(
        target.registry.clone(),
        target.repository.clone(),
        target.tag.clone(),
    ))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` from the distribution spec.
fn valid_repository_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(alnum) || !bytes.last().is_some_and(alnum) {
        return false;
    }
    let mut separator = String::new();
    for &b in bytes {
        if alnum(&b) {
            let ok = separator.is_empty()
                || separator == "."
                || separator == "_"
                || separator == "__"
                || separator.bytes().all(|s| s == b'-');
            if !ok {
                return false;
            }
            separator.clear();
        } else if matches!(b, b'.' | b'_' | b'-') {
            separator.push(char::from(b));
        } else {
            return false;
        }
    }
    true
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}` from the distribution spec.
fn valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    bytes.len() <= 128
        && bytes.first().is_some_and(|b| word(*b))
        && bytes.iter().all(|b| word(*b) || *b == b'.' || *b == b'-')
}

fn is_not_found(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound
            )
        }),
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::RequestError(e) => e.status().is_some_and(|s| s.as_u16() == 404),
        _ => false,
    }
}

/// Turns an oci-client error into one that names the registry, the action and the cause.
fn registry_error(target: &Target, action: String, error: OciDistributionError) -> ImageError {
    let registry = target.registry.clone();
    let auth_refused = |status| ImageError::AuthRefused {
        registry: target.registry.clone(),
        action: action.clone(),
        anonymous: target.auth.is_none(),
        status,
    };
    match error {
        OciDistributionError::UnauthorizedError { .. } => auth_refused(Some(401)),
        OciDistributionError::AuthenticationFailure(_) => auth_refused(None),
        OciDistributionError::ServerError {
            code: code @ (401 | 403),
            ..
        } => auth_refused(Some(code)),
        OciDistributionError::ServerError { code, message, .. } => ImageError::Refused {
            registry,
            action,
            status: Some(code),
            message: error_messages(&message),
        },
        OciDistributionError::RegistryError { envelope, .. } => {
            if envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                return auth_refused(None);
            }
            ImageError::Refused {
                registry,
                action,
                status: None,
                message: envelope_messages(&envelope),
            }
        }
        OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => {
            ImageError::Unreachable {
                registry,
                message: error_chain(&e),
            }
        }
        OciDistributionError::RequestError(e) => match e.status().map(|s| s.as_u16()) {
            Some(code @ (401 | 403)) => auth_refused(Some(code)),
            Some(code) => ImageError::Refused {
                registry,
                action,
                status: Some(code),
                message: error_chain(&e),
            },
            None => ImageError::Transfer {
                registry,
                action,
                message: error_chain(&e),
            },
        },
        other => ImageError::Transfer {
            registry,
            action,
            message: error_chain(&other),
        },
    }
}

/// The `errors[].message` of an OCI error body, or the body itself (shortened) when it is not one.
fn error_messages(body: &str) -> String {
    match serde_json::from_str::<OciEnvelope>(body) {
        Ok(envelope) if !envelope.errors.is_empty() => envelope_messages(&envelope),
        _ => {
            let body = body.trim();
            match body.char_indices().nth(500) {
                Some((cut, _)) => format!("{}…", &body[..cut]),
                None if body.is_empty() => "(empty response body)".to_owned(),
                None => body.to_owned(),
            }
        }
    }
}

fn envelope_messages(envelope: &OciEnvelope) -> String {
    let messages: Vec<String> = envelope
        .errors
        .iter()
        .map(|e| {
            let code = serde_json::to_value(&e.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            if e.message.is_empty() {
                code
            } else {
                format!("{code}: {}", e.message)
            }
        })
        .collect();
    messages.join("; ")
}

/// An error and its sources, joined: reqwest's own message rarely names the cause.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(repository: &str, tag: &str) -> Target {
        Target {
            registry: "127.0.0.1:5000".into(),
            repository: repository.into(),
            tag: tag.into(),
            auth: None,
            insecure: true,
        }
    }

    #[test]
    fn names_follow_the_distribution_grammar() {
        for good in ["ragway", "team/ragway", "a.b_c__d---e/f0"] {
            assert!(reference(&target(good, "v1")).is_ok(), "{good} refused");
        }
        for bad in [
            "Ragway",
            "team//ragway",
            "-ragway",
            "rag_.way",
            "a___b",
            "ragway/",
            "",
        ] {
            assert!(
                matches!(
                    reference(&target(bad, "v1")),
                    Err(ImageError::InvalidReference { .. })
                ),
                "{bad} accepted"
            );
        }
        for bad in ["", ".v1", "-v1", "v 1", &"x".repeat(129)] {
            assert!(
                reference(&target("ragway", bad)).is_err(),
                "tag {bad} accepted"
            );
        }
    }

    #[test]
    fn error_bodies_give_their_messages() {
        let body = r#"{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported.","detail":{}}]}"#;
        assert_eq!(
            error_messages(body),
            "UNSUPPORTED: The operation is unsupported."
        );
        assert_eq!(error_messages("404 page not found\n"), "404 page not found");
    }

    #[test]
    fn debug_hides_the_password() {
        let mut t = target("ragway", "v1");
        t.auth = Some(("AWS".into(), "secret-token".into()));
        assert!(!format!("{t:?}").contains("secret-token"));
    }
}
