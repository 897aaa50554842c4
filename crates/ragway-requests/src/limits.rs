//! Checks shared by the routes that read a prompt: its length, `max_tokens` and `top_k`
//! against `[server]` and `[server.limits]`.

use crate::error::FieldError;

/// Whether `text` has more than `max` characters.
pub fn too_long(text: &str, max: usize) -> bool {
    // Bytes bound characters from above: most texts are settled without counting.
    text.len() > max && text.chars().count() > max
}

/// A 422 entry if `text` is longer than `[server.limits] max_prompt_chars`.
pub fn check_length(loc: &[&str], text: &str, max: usize) -> Option<FieldError> {
    too_long(text, max).then(|| {
        FieldError::new(
            loc,
            format!("String should have at most {max} characters (server.limits.max_prompt_chars)"),
            "string_too_long",
        )
    })
}

/// A 422 entry unless `max_tokens` is between 1 and `[server.limits] max_tokens`.
pub fn check_max_tokens(max_tokens: Option<u32>, ceiling: u32) -> Option<FieldError> {
    match max_tokens {
        Some(0) => Some(FieldError::new(
            &["body", "max_tokens"],
            "Input should be greater than or equal to 1",
            "greater_than_equal",
        )),
        Some(n) if n > ceiling => Some(FieldError::new(
            &["body", "max_tokens"],
            format!("Input should be less than or equal to {ceiling} (server.limits.max_tokens)"),
            "less_than_equal",
        )),
        _ => None,
    }
}

/// A 422 entry unless `top_k` is between 1 and `[server] max_top_k`.
pub fn check_top_k(top_k: Option<usize>, max: usize) -> Option<FieldError> {
    match top_k {
        Some(0) => Some(FieldError::new(
            &["body", "top_k"],
            "Input should be greater than or equal to 1",
            "greater_than_equal",
        )),
        Some(k) if k > max => Some(FieldError::new(
            &["body", "top_k"],
            format!("Input should be less than or equal to {max}"),
            "less_than_equal",
        )),
        _ => None,
    }
}
