//! What a web browser may do with a ragway server: `[server] allowed_hosts`, the `Host` names
//! it answers to, and `[server.cors]`, the web origins whose pages may call it.
//!
//! Both exist because of pages the user visits, not of callers with keys: a page can make the
//! browser send requests to `localhost`, and with DNS rebinding read the answers, under a name
//! of the attacker's (`Host: evil.example`). A server that answers only to the names it is
//! reached by, and that sends no CORS headers unless told which origins to trust, gives such a
//! page nothing to read.

use serde::Deserialize;

use crate::ConfigIssue;

/// The names a server without API keys answers to when `allowed_hosts` is not set: loopback
/// only (any IP address written as one is accepted too: a rebinding page always sends a name).
pub const LOOPBACK_HOSTS: [&str; 2] = ["localhost", "*.localhost"];

/// One entry of `allowed_hosts`: a name, `*.` and a domain (its subdomains), or `*` (any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com`: `a.example.com`, `b.a.example.com`, not `example.com` itself.
    Subdomains(String),
}

impl HostPattern {
    /// Reads one entry, lower-cased; `None` if it is not a host name, pattern or IP address.
    pub fn parse(entry: &str) -> Option<Self> {
        let entry = entry.trim().to_ascii_lowercase();
        if entry == "*" {
            return Some(Self::Any);
        }
        // A fully qualified name's final dot (`example.com.`) is the same name.
        let entry = entry.strip_suffix('.').unwrap_or(&entry).to_owned();
        if let Some(domain) = entry.strip_prefix("*.") {
            return is_host_name(domain).then(|| Self::Subdomains(domain.to_owned()));
        }
        let bare = entry.trim_start_matches('[').trim_end_matches(']');
        (is_host_name(&entry) || bare.parse::<std::net::IpAddr>().is_ok())
            .then(|| Self::Exact(bare.to_owned()))
    }

    /// Whether `host` (lower-cased, without its port or IPv6 brackets) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(name) => name == host,
            Self::Subdomains(domain) => host
                .strip_suffix(domain.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }
}

/// Letters, digits, hyphens and dots, as DNS names are written (and `_`, which some internal
/// names use).
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        })
}

/// Checks `[server] allowed_hosts`: every entry a name, `*.domain`, an IP address or `*`.
pub(crate) fn validate_allowed_hosts(hosts: &[String], issues: &mut Vec<ConfigIssue>) {
    for (i, entry) in hosts.iter().enumerate() {
        if HostPattern::parse(entry).is_none() {
            issues.push(ConfigIssue {
                path: format!("server.allowed_hosts[{i}]"),
                message: format!(
                    "{entry:?} is not a host name, \"*.\" and a domain, an IP address or \"*\" \
                     (no scheme, port or path)"
                ),
            });
        }
    }
}

/// `[server.cors]`: off (no CORS headers, so browsers keep other origins' pages from reading
/// any answer) unless origins are listed.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins whose pages may call the API (`https://app.example.com`, with a port when it is
    /// not the scheme's), or `["*"]` for any.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// How long a browser may cache a preflight's answer.
    #[serde(default = "default_max_age_secs")]
    pub max_age_secs: u64,
}

fn default_max_age_secs() -> u64 {
    600
}

impl CorsConfig {
    pub fn is_enabled(&self) -> bool {
        !self.allowed_origins.is_empty()
    }

    pub(crate) fn validate(&self, issues: &mut Vec<ConfigIssue>) {
        let any = self.allowed_origins.iter().any(|o| o == "*");
        if any && self.allowed_origins.len() > 1 {
            issues.push(ConfigIssue {
                path: "server.cors.allowed_origins".into(),
                message: "\"*\" allows every origin; list origins or give \"*\" alone".into(),
            });
        }
        for (i, origin) in self.allowed_origins.iter().enumerate() {
            if origin != "*" && !is_origin(origin) {
                issues.push(ConfigIssue {
                    path: format!("server.cors.allowed_origins[{i}]"),
                    message: format!(
                        "{origin:?} is not an origin: write the scheme, the host and the port \
                         if any, as a browser sends it (\"https://app.example.com\"), with no \
                         path or trailing slash"
                    ),
                });
            }
        }
        if self.max_age_secs > 86_400 {
            issues.push(ConfigIssue {
                path: "server.cors.max_age_secs".into(),
                message: format!("must be at most 86400, got {}", self.max_age_secs),
            });
        }
    }
}

/// `http://` or `https://`, a host, an optional port, nothing after: what the `Origin` header
/// carries.
fn is_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, _)) if !host.ends_with(']') && host.contains(':') => (rest, None),
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    port_ok
        && origin == origin.to_ascii_lowercase()
        && (is_host_name(host) || bare.parse::<std::net::IpAddr>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_match_names_subdomains_addresses_and_anything() {
        let exact = HostPattern::parse("API.Example.com.").unwrap();
        assert!(exact.matches("api.example.com"));
        assert!(!exact.matches("evil-api.example.com"));
        let sub = HostPattern::parse("*.example.com").unwrap();
        assert!(sub.matches("a.example.com") && sub.matches("b.a.example.com"));
        assert!(!sub.matches("example.com"));
        assert!(!sub.matches("evilexample.com"));
        let ip = HostPattern::parse("[::1]").unwrap();
        assert!(ip.matches("::1"));
        assert!(HostPattern::parse("*").unwrap().matches("anything"));
        for bad in [
            "",
            "http://a.com",
            "a.com:80",
            "a.com/x",
            "*.",
            "a..b",
            "a b",
        ] {
            assert_eq!(HostPattern::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cors_origins_are_checked_as_a_browser_writes_them() {
        let config = CorsConfig {
            allowed_origins: vec![
                "https://app.example.com".into(),
                "http://localhost:3000".into(),
                "http://[::1]:8080".into(),
                "https://app.example.com/".into(),
                "app.example.com".into(),
                "https://App.example.com".into(),
                "https://a.com:0".into(),
                "*".into(),
            ],
            max_age_secs: 100_000,
        };
        let mut issues = Vec::new();
        config.validate(&mut issues);
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "server.cors.allowed_origins",
                "server.cors.allowed_origins[3]",
                "server.cors.allowed_origins[4]",
                "server.cors.allowed_origins[5]",
                "server.cors.allowed_origins[6]",
                "server.cors.max_age_secs",
            ],
            "{issues:?}"
        );
    }
}
