//! `[server.auth]`: who may call the API. Keys are never written in the file: each is an
//! `env::NAME` reference, a SHA-256 hash, or a line of a file of hashes. Each key may be limited
//! to some models and stores and to a number of requests and tokens per minute. Reading a store
//! (searching it, grounding answers in it) and writing it (adding and deleting its documents)
//! are separate grants: `stores` and `write_stores`.

use std::path::PathBuf;

use serde::Deserialize;

use crate::ConfigIssue;
use crate::secret::SecretRef;

/// The `[server.auth]` section. With no keys at all, the API is open (and `serve` refuses a
/// non-loopback address unless told `--insecure-no-auth`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Keys one by one, each with its own allow-lists and limits.
    #[serde(default)]
    pub keys: Vec<ApiKeyConfig>,
    /// A file of SHA-256 hashes of keys, one per line: `<64 hex digits> [name]`; blank lines
    /// and `#` comments are skipped. Its keys get the section's default limits.
    #[serde(default)]
    pub keys_file: Option<PathBuf>,
    /// Requests per minute for every key that sets none of its own; unlimited when absent.
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Tokens (prompt and answer) per minute for every key that sets none of its own.
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    /// Stores whose documents every key without `write_stores` of its own may add and delete:
    /// the keys of `keys_file`, and keys that leave it out. None when absent, so that a key
    /// handed out to read never deletes by default.
    #[serde(default)]
    pub write_stores: Vec<String>,
}

impl AuthConfig {
    /// Whether any key is configured (a keys file counts even before it is read).
    pub fn is_enabled(&self) -> bool {
        !self.keys.is_empty() || self.keys_file.is_some()
    }
}

/// `[[server.auth.keys]]`: one API key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who holds the key; logs and metrics say this, never the key.
    pub name: String,
    /// The key itself, read from the environment at start-up (`env::RAGWAY_KEY_TEAM_A`).
    #[serde(default)]
    pub key: Option<SecretRef>,
    /// Or the SHA-256 of the key, as 64 hex digits (`printf %s "$KEY" | sha256sum`).
    #[serde(default)]
    pub sha256: Option<String>,
    /// Chat and embedding models this key may use; all when absent.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// Stores this key may search and ground answers in; all when absent. Requests without
    /// retrieval (`"none"`) are always allowed.
    #[serde(default)]
    pub stores: Option<Vec<String>>,
    /// Stores whose documents this key may add and delete (it must also be allowed to read
    /// them); `[server.auth] write_stores` when absent, which is none unless set.
    #[serde(default)]
    pub write_stores: Option<Vec<String>>,
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
}

/// Whether `text` is a SHA-256 digest written as 64 hex digits.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

impl AuthConfig {
    /// Checks the section against the configured names.
    pub(crate) fn validate(&self, models: &[&str], stores: &[&str], issues: &mut Vec<ConfigIssue>) {
        let mut issue = |path: String, message: String| issues.push(ConfigIssue { path, message });
        if self.requests_per_minute == Some(0) {
            issue(
                "server.auth.requests_per_minute".into(),
                "must be at least 1 (leave it out for no limit)".into(),
            );
        }
        if self.tokens_per_minute == Some(0) {
            issue(
                "server.auth.tokens_per_minute".into(),
                "must be at least 1 (leave it out for no limit)".into(),
            );
        }
        if let Some(path) = &self.keys_file
            && path.as_os_str().is_empty()
        {
            issue("server.auth.keys_file".into(), "must not be empty".into());
        }
        for (j, name) in self.write_stores.iter().enumerate() {
            if !stores.contains(&name.as_str()) {
                issue(
                    format!("server.auth.write_stores[{j}]"),
                    format!(
                        "no store named \"{name}\"; known: {}",
                        crate::config::known(stores)
                    ),
                );
            }
        }
        let mut seen: Vec<&str> = Vec::new();
        for (i, key) in self.keys.iter().enumerate() {
            let at = format!("server.auth.keys[{i}]");
            if key.name.trim().is_empty() {
                issue(format!("{at}.name"), "must not be empty".into());
            } else if seen.contains(&key.name.as_str()) {
                issue(
                    format!("{at}.name"),
                    format!("\"{}\" is used by another key", key.name),
                );
            }
            seen.push(&key.name);
            match (&key.key, &key.sha256) {
                (None, None) => issue(
                    at.clone(),
                    "give the key as `key = \"env::NAME\"` or its hash as `sha256 = \"...\"`"
                        .into(),
                ),
                (Some(_), Some(_)) => {
                    issue(at.clone(), "give either `key` or `sha256`, not both".into())
                }
                (None, Some(hash)) if !is_sha256_hex(hash) => issue(
                    format!("{at}.sha256"),
                    "must be 64 hex digits (the output of `sha256sum`)".into(),
                ),
                _ => {}
            }
            if let Some(allowed) = &key.models {
                for (j, name) in allowed.iter().enumerate() {
                    if !models.contains(&name.as_str()) {
                        issue(
                            format!("{at}.models[{j}]"),
                            format!(
                                "no model named \"{name}\"; known: {}",
                                crate::config::known(models)
                            ),
                        );
                    }
                }
            }
            for (field, names) in [("stores", &key.stores), ("write_stores", &key.write_stores)] {
                for (j, name) in names.iter().flatten().enumerate() {
                    if !stores.contains(&name.as_str()) {
                        issue(
                            format!("{at}.{field}[{j}]"),
                            format!(
                                "no store named \"{name}\"; known: {}",
                                crate::config::known(stores)
                            ),
                        );
                    }
                }
            }
            if let (Some(readable), Some(writable)) = (&key.stores, &key.write_stores) {
                for (j, name) in writable.iter().enumerate() {
                    if stores.contains(&name.as_str()) && !readable.contains(name) {
                        issue(
                            format!("{at}.write_stores[{j}]"),
                            format!(
                                "\"{name}\" is not in this key's `stores`: a key writes only \
                                 stores it may read"
                            ),
                        );
                    }
                }
            }
            if key.requests_per_minute == Some(0) {
                issue(
                    format!("{at}.requests_per_minute"),
                    "must be at least 1 (leave it out for no limit)".into(),
                );
            }
            if key.tokens_per_minute == Some(0) {
                issue(
                    format!("{at}.tokens_per_minute"),
                    "must be at least 1 (leave it out for no limit)".into(),
                );
            }
        }
    }
}

/// One key read from a keys file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashedKey {
    pub name: String,
    /// The SHA-256 digest of the key.
    pub sha256: [u8; 32],
}

/// Parses a keys file: `<64 hex digits> [name]` per line, `#` comments and blank lines
/// skipped. Unnamed keys are called `line N`. Every bad line is reported, by number.
pub fn parse_keys_file(text: &str) -> Result<Vec<HashedKey>, Vec<String>> {
    let mut keys = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split_whitespace();
        let hash = fields.next().unwrap_or_default();
        let name = fields.collect::<Vec<_>>().join(" ");
        match decode_sha256(hash) {
            Some(sha256) => keys.push(HashedKey {
                name: if name.is_empty() {
                    format!("line {number}")
                } else {
                    name
                },
                sha256,
            }),
            None => errors.push(format!(
                "line {number}: expected a SHA-256 hash (64 hex digits) then an optional name"
            )),
        }
    }
    if errors.is_empty() {
        Ok(keys)
    } else {
        Err(errors)
    }
}

/// The 32 bytes of a hash written as 64 hex digits.
pub fn decode_sha256(text: &str) -> Option<[u8; 32]> {
    if !is_sha256_hex(text) {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(text.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn keys_files_parse_names_comments_and_report_bad_lines() {
        let text = format!(
            "# team keys\n{HASH} team a\n\n{} # no name\n",
            HASH.to_uppercase()
        );
        let keys = parse_keys_file(&text).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].name, "team a");
        assert_eq!(keys[1].name, "line 4");
        assert_eq!(keys[0].sha256, keys[1].sha256);
        assert_eq!(keys[0].sha256[0], 0x9f);
        assert_eq!(keys[0].sha256[31], 0x08);

        let errors = parse_keys_file("nothex\n\nsk-live-abc name\n").unwrap_err();
        assert_eq!(errors.len(), 2);
        assert!(errors[0].starts_with("line 1:"), "{errors:?}");
        assert!(errors[1].starts_with("line 3:"), "{errors:?}");
        // A key pasted by mistake is not echoed back.
        assert!(!errors[1].contains("sk-live-abc"));
    }
}
