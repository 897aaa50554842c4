//! Checks more than one section makes of its entries: paths, URLs, timeouts and counts, and
//! the list of known names an error message offers.

pub(super) fn check_path(
    path: &str,
    value: &std::path::Path,
    issue: &mut impl FnMut(String, String),
) {
    if value.as_os_str().is_empty() {
        issue(path.to_owned(), "must not be empty".into());
    }
}

pub(super) fn at_least_one(path: &str, value: usize, issue: &mut impl FnMut(String, String)) {
    if value == 0 {
        issue(path.to_owned(), "must be at least 1".into());
    }
}

/// Lists names for an error message; "(none)" when there are none.
pub fn known(names: &[&str]) -> String {
    if names.is_empty() {
        "(none)".to_owned()
    } else {
        names.join(", ")
    }
}

pub(super) fn check_url(path: &str, url: &str, issue: &mut impl FnMut(String, String)) {
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= "https://".len()
    {
        issue(
            path.to_owned(),
            format!("\"{url}\" is not an http:// or https:// URL"),
        );
    }
}

pub(super) fn check_timeouts(
    at: &str,
    connect: f64,
    total: f64,
    issue: &mut impl FnMut(String, String),
) {
    for (field, value) in [("connect_timeout_secs", connect), ("timeout_secs", total)] {
        if !(value.is_finite() && value > 0.0 && value <= 86_400.0) {
            issue(
                format!("{at}.{field}"),
                format!("must be between 0 and 86400 seconds, got {value}"),
            );
        }
    }
}
