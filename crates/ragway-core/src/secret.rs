//! Secrets in config are references (`env::NAME`), never values. `SecretRef` holds the
//! reference; resolving it yields a `SecretString` that never prints.

use std::fmt;

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

const ENV_PREFIX: &str = "env::";

/// A reference to a secret: `env::NAME` reads the environment variable `NAME` at start-up.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretRef {
    var: String,
}

impl SecretRef {
    /// Parses `env::NAME`; anything else is refused so that keys never sit in config files.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.strip_prefix(ENV_PREFIX) {
            Some(var) if is_env_name(var) => Ok(Self { var: var.to_owned() }),
            Some(var) => Err(format!("\"{var}\" is not a valid environment variable name")),
            None => Err(
                "secrets must be references like \"env::OPENAI_API_KEY\", not values written in the file"
                    .to_owned(),
            ),
        }
    }

    /// The environment variable this reference reads.
    pub fn var(&self) -> &str {
        &self.var
    }

    /// Reads the secret now.
    pub fn resolve(&self) -> Result<SecretString, String> {
        match std::env::var(&self.var) {
            Ok(value) if !value.is_empty() => Ok(SecretString::from(value)),
            Ok(_) => Err(format!("environment variable {} is empty", self.var)),
            Err(_) => Err(format!("environment variable {} is not set", self.var)),
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ENV_PREFIX}{}", self.var)
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A setting given either literally or as an `env::NAME` reference (for values such as a
/// Kendra index id that differ per deployment but are not secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvOr {
    Literal(String),
    Env(SecretRef),
}

impl EnvOr {
    /// The value, reading the environment if it is a reference.
    pub fn resolve(&self) -> Result<String, String> {
        match self {
            Self::Literal(value) => Ok(value.clone()),
            Self::Env(reference) => std::env::var(reference.var())
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("environment variable {} is not set", reference.var())),
        }
    }
}

impl<'de> Deserialize<'de> for EnvOr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.starts_with(ENV_PREFIX) {
            SecretRef::parse(&text)
                .map(Self::Env)
                .map_err(serde::de::Error::custom)
        } else if text.is_empty() {
            Err(serde::de::Error::custom("must not be empty"))
        } else {
            Ok(Self::Literal(text))
        }
    }
}

/// One `env::NAME` the configuration reads at start-up, and where it is written. Listed by
/// [`crate::config::Config::env_references`], so that whatever must hand the process its
/// environment (serve's start-up check, `ragway deploy`'s task definition) sees every one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvReference {
    /// The config path of the field (`llm[0].api_key`).
    pub path: String,
    /// The environment variable it reads.
    pub var: String,
    pub kind: EnvKind,
}

/// What an `env::` reference holds, which decides how a deployment may provide it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvKind {
    /// A [`SecretRef`] field (an API key, a DSN, a URL with a password): only ever from a
    /// secret store, never written in plain text anywhere.
    Secret,
    /// An [`EnvOr`] field (a Kendra index id): differs per deployment but is not secret, so a
    /// plain environment variable will do.
    Setting,
}

impl EnvReference {
    pub(crate) fn secret(path: String, reference: &SecretRef) -> Self {
        Self {
            path,
            var: reference.var.clone(),
            kind: EnvKind::Secret,
        }
    }

    /// The reference of an [`EnvOr`] field, if it is one rather than a literal.
    pub(crate) fn setting(path: String, value: &EnvOr) -> Option<Self> {
        match value {
            EnvOr::Env(reference) => Some(Self {
                path,
                var: reference.var.clone(),
                kind: EnvKind::Setting,
            }),
            EnvOr::Literal(_) => None,
        }
    }

    /// Reads the variable now: why not, when it is unset or empty.
    pub fn check(&self) -> Result<(), String> {
        match std::env::var(&self.var) {
            Ok(value) if !value.is_empty() => Ok(()),
            Ok(_) => Err(format!("environment variable {} is empty", self.var)),
            Err(_) => Err(format!("environment variable {} is not set", self.var)),
        }
    }
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_secrets_are_refused() {
        let err = SecretRef::parse("sk-live-123").unwrap_err();
        assert!(err.contains("env::OPENAI_API_KEY"), "{err}");
        assert!(!err.contains("sk-live-123"));
    }

    #[test]
    fn references_parse_and_print_as_references() {
        let secret = SecretRef::parse("env::MY_KEY").unwrap();
        assert_eq!(secret.var(), "MY_KEY");
        assert_eq!(format!("{secret:?}"), "env::MY_KEY");
        assert!(SecretRef::parse("env::1BAD").is_err());
        assert!(SecretRef::parse("env::").is_err());
    }

    #[test]
    fn missing_variable_names_the_variable() {
        let secret = SecretRef::parse("env::RAGWAY_TEST_SURELY_UNSET_VAR").unwrap();
        let err = secret.resolve().unwrap_err();
        assert!(err.contains("RAGWAY_TEST_SURELY_UNSET_VAR"));
    }
}
