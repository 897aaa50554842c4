//! Reading the TOML text into a [`Config`]: each section, and each entry of a list, is parsed
//! on its own, so that one bad entry does not hide the errors of the others, and serde's
//! messages become issues that carry the field in their path.

use std::collections::HashMap;

use serde::de::DeserializeOwned;

use super::{Config, EmbedderConfig, LlmConfig, RerankerConfig, VectorStoreConfig};
use crate::ConfigIssue;

/// Splits the file into sections and parses each entry on its own, so that one bad entry
/// does not hide the errors of the others.
pub(super) fn parse_sections(text: &str, issues: &mut Vec<ConfigIssue>) -> Option<Config> {
    let table: toml::Table = match text.parse() {
        Ok(table) => table,
        Err(e) => {
            issues.push(ConfigIssue {
                path: String::new(),
                message: format!("not valid TOML: {e}"),
            });
            return None;
        }
    };
    let mut config = Config::default();
    let before = issues.len();
    let mut name_issues = Vec::new();
    for (key, value) in table {
        if let toml::Value::Array(entries) = &value {
            check_names(&key, entries, &mut name_issues);
        }
        match key.as_str() {
            "server" => {
                if let Some(server) = parse_entry(value, "server", issues) {
                    config.server = server;
                }
            }
            "llm" => {
                config.llm = parse_list(
                    value,
                    "llm",
                    LlmConfig::KINDS,
                    LlmConfig::parse_kind,
                    issues,
                )
            }
            "embedder" => {
                config.embedder = parse_list(
                    value,
                    "embedder",
                    EmbedderConfig::KINDS,
                    EmbedderConfig::parse_kind,
                    issues,
                )
            }
            "vector_store" => {
                config.vector_store = parse_list(
                    value,
                    "vector_store",
                    VectorStoreConfig::KINDS,
                    VectorStoreConfig::parse_kind,
                    issues,
                )
            }
            "reranker" => {
                config.reranker = parse_list(
                    value,
                    "reranker",
                    RerankerConfig::KINDS,
                    RerankerConfig::parse_kind,
                    issues,
                )
            }
            "deploy" => {
                if let Some(deploy) = parse_entry(value, "deploy", issues) {
                    config.deploy = deploy;
                }
            }
            other => issues.push(ConfigIssue {
                path: other.to_owned(),
                message: "unknown section; expected one of server, llm, embedder, vector_store, \
                     reranker, deploy"
                    .into(),
            }),
        }
    }
    let parsed = issues.len() == before;
    issues.extend(name_issues);
    parsed.then_some(config)
}

/// Names must be non-empty and unique within a section. Checked on the raw entries, so that
/// a duplicate is reported even when another entry fails to parse.
fn check_names(section: &str, entries: &[toml::Value], issues: &mut Vec<ConfigIssue>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        // Entries without a string name get serde's own "missing field" / "invalid type".
        let Some(name) = entry.get("name").and_then(toml::Value::as_str) else {
            continue;
        };
        let path = format!("{section}[{i}].name");
        if name.trim().is_empty() {
            issues.push(ConfigIssue {
                path,
                message: "must not be empty".into(),
            });
        } else if let Some(first) = seen.get(name) {
            let message = format!("duplicate name \"{name}\" (also {section}[{first}])");
            issues.push(ConfigIssue { path, message });
        } else {
            seen.insert(name, i);
        }
    }
}

/// A section's parser of one entry by its `type` (each section enum's `parse_kind`): `None`
/// for a type it does not know, `Some(None)` when the body does not parse.
type ParseKind<T> = fn(&str, toml::Value, &str, &mut Vec<ConfigIssue>) -> Option<Option<T>>;

fn parse_list<T>(
    value: toml::Value,
    section: &str,
    kinds: &[&str],
    parse_kind: ParseKind<T>,
    issues: &mut Vec<ConfigIssue>,
) -> Vec<T> {
    let toml::Value::Array(entries) = value else {
        issues.push(ConfigIssue {
            path: section.to_owned(),
            message: format!("must be a list of tables, written [[{section}]]"),
        });
        return Vec::new();
    };
    let mut parsed = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let at = format!("{section}[{i}]");
        let toml::Value::Table(mut body) = entry else {
            issues.push(ConfigIssue {
                path: at,
                message: "must be a table".into(),
            });
            continue;
        };
        let kind = match body.remove("type") {
            Some(toml::Value::String(kind)) => kind,
            Some(_) => {
                issues.push(ConfigIssue {
                    path: format!("{at}.type"),
                    message: "must be a string".into(),
                });
                continue;
            }
            None => {
                issues.push(ConfigIssue {
                    path: format!("{at}.type"),
                    message: format!("missing field; expected one of {}", kinds.join(", ")),
                });
                continue;
            }
        };
        match parse_kind(&kind, toml::Value::Table(body), &at, issues) {
            Some(Some(component)) => parsed.push(component),
            Some(None) => {}
            None => issues.push(ConfigIssue {
                path: format!("{at}.type"),
                message: format!(
                    "unknown type \"{kind}\"; expected one of {}",
                    kinds.join(", ")
                ),
            }),
        }
    }
    parsed
}

/// Deserialises one section or entry found at `at`, recording serde's error with the path of
/// the field it is about.
pub(super) fn parse_entry<T: DeserializeOwned>(
    body: toml::Value,
    at: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(body) {
        Ok(value) => Some(value),
        Err(error) => {
            let mut path = at.to_owned();
            let inner = error.path().to_string();
            if inner != "." {
                path = format!("{path}.{inner}");
            }
            let message = error.inner().message().to_owned();
            issues.push(locate_field(path, message));
            None
        }
    }
}

/// Moves the field that serde names inside its message into the path:
/// "missing field `model_id`" at `llm[1]` becomes `llm[1].model_id: missing field`.
fn locate_field(path: String, message: String) -> ConfigIssue {
    for (prefix, label) in [
        ("missing field `", "missing field"),
        ("unknown field `", "unknown field"),
    ] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((field, tail)) = rest.split_once('`')
        {
            let tail = tail.trim_start_matches(',').trim();
            let message = if tail.is_empty() {
                label.to_owned()
            } else {
                format!("{label}; {tail}")
            };
            let already_there = path.ends_with(&format!(".{field}"));
            let path = if already_there {
                path
            } else {
                format!("{path}.{field}")
            };
            return ConfigIssue { path, message };
        }
    }
    ConfigIssue { path, message }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::issues;

    #[test]
    fn every_error_is_reported_with_its_path() {
        let found = issues(
            r#"
            [server]
            bind = "nowhere"
            [[llm]]
            name = "a"
            type = "openai"
            model = "gpt-4o"
            [[llm]]
            name = "b"
            type = "bedrock"
            [[llm]]
            name = "c"
            type = "openai"
            model = "x"
            api_key = "sk-123"
            [[llm]]
            name = "d"
            type = "nonsense"
            [[llm]]
            name = "e"
            type = "openai"
            model = "x"
            colour = "blue"
            [[vector_store]]
            name = "k"
            type = "kendra"
            index_id = "idx"
            min_score_confidence = "SORT_OF"
            "#,
        );
        let text = found.join("\n");
        assert!(text.contains("server.bind:"), "{text}");
        assert!(text.contains("llm[1].model_id: missing field"), "{text}");
        assert!(
            text.contains("llm[2].api_key: secrets must be references"),
            "{text}"
        );
        assert!(
            !text.contains("sk-123"),
            "a secret leaked into an error: {text}"
        );
        assert!(
            text.contains(
                "llm[3].type: unknown type \"nonsense\"; expected one of openai, bedrock"
            ),
            "{text}"
        );
        assert!(text.contains("llm[4].colour: unknown field"), "{text}");
        assert!(
            text.contains("vector_store[0].min_score_confidence:"),
            "{text}"
        );
        assert_eq!(found.len(), 6, "{text}");
    }

    #[test]
    fn type_errors_inside_an_entry_name_the_field() {
        let found = issues(
            r#"
            [[llm]]
            name = "a"
            type = "bedrock"
            model_id = "m"
            context_window = "big"
            "#,
        );
        assert_eq!(found.len(), 1);
        assert!(
            found[0].starts_with("llm[0].context_window: invalid type"),
            "{found:?}"
        );
    }

    #[test]
    fn syntax_errors_and_unknown_sections_are_reported() {
        assert!(issues("[[llm]\nname=")[0].starts_with("not valid TOML"));
        let found = issues("llm = 3\n[servr]\nbind = \"127.0.0.1:1\"");
        assert!(
            found
                .iter()
                .any(|i| i.starts_with("servr: unknown section")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|i| i.starts_with("llm: must be a list of tables")),
            "{found:?}"
        );
    }
}
