//! JSON bodies parsed with the field path of every error, so a malformed body gets an error
//! that says what is wrong and where.

use serde::de::DeserializeOwned;

use crate::error::{FieldError, RequestError};

/// Parses a JSON body, locating the first problem.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RequestError> {
    // JSON is UTF-8 (RFC 8259). Checked up front: serde_json skips the strings of fields it
    // ignores without checking them, which would let a body that is not JSON through.
    let text = std::str::from_utf8(bytes).map_err(|error| {
        RequestError::Invalid(vec![FieldError {
            loc: vec!["body".into(), error.valid_up_to().to_string()],
            msg: format!(
                "JSON decode error: the body is not UTF-8 (invalid byte at offset {})",
                error.valid_up_to()
            ),
            kind: "json_invalid".into(),
        }])
    })?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize::<_, T>(&mut deserializer).map_err(|error| {
        RequestError::Invalid(vec![describe(&error.path().to_string(), error.inner())])
    })?;
    deserializer
        .end()
        .map_err(|error| RequestError::Invalid(vec![describe(".", &error)]))?;
    Ok(value)
}

fn describe(path: &str, inner: &serde_json::Error) -> FieldError {
    let mut loc: Vec<String> = vec!["body".into()];
    if path != "." {
        loc.extend(path.split('.').map(str::to_owned));
    }
    if inner.is_syntax() || inner.is_eof() {
        return FieldError {
            loc: vec!["body".into(), inner.column().to_string()],
            msg: format!("JSON decode error: {inner}"),
            kind: "json_invalid".into(),
        };
    }
    let message = strip_position(&inner.to_string());
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        loc.push(field.to_owned());
        return FieldError {
            loc,
            msg: "Field required".into(),
            kind: "missing".into(),
        };
    }
    FieldError {
        loc,
        msg: message,
        kind: "type_error".into(),
    }
}

/// serde_json appends " at line 1 column 9"; the location is already in `loc`.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Shape {
        prompt: String,
        top_k: Option<u32>,
    }

    fn error_of(body: &str) -> FieldError {
        match parse::<Shape>(body.as_bytes()) {
            Err(RequestError::Invalid(mut errors)) => errors.remove(0),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn missing_fields_are_located() {
        let error = error_of("{}");
        assert_eq!(error.loc, ["body", "prompt"]);
        assert_eq!(error.kind, "missing");
    }

    #[test]
    fn wrong_types_are_located() {
        let error = error_of(r#"{"prompt": "x", "top_k": "five"}"#);
        assert_eq!(error.loc, ["body", "top_k"]);
        assert!(error.msg.contains("expected u32"), "{}", error.msg);
    }

    #[test]
    fn broken_json_is_json_invalid() {
        assert_eq!(error_of(r#"{"prompt": "#).kind, "json_invalid");
        assert_eq!(error_of("").kind, "json_invalid");
        assert_eq!(error_of(r#"{"prompt": "x"} trailing"#).kind, "json_invalid");
    }

    #[test]
    fn bodies_that_are_not_utf8_are_json_invalid_even_in_ignored_fields() {
        // Found by the generate_request fuzz target: an unknown field's string is skipped
        // unchecked by serde_json.
        let body = b"{\"prompt\": \"x\", \"unknown\": \"do\xcds\"}";
        let Err(RequestError::Invalid(errors)) = parse::<Shape>(body) else {
            panic!("a body that is not UTF-8 was accepted");
        };
        assert_eq!(errors[0].kind, "json_invalid");
        assert_eq!(errors[0].loc, ["body", "30"]);
        assert!(errors[0].msg.contains("not UTF-8"), "{}", errors[0].msg);
    }
}
