//! A request's `response_format` (`/v1/chat/completions`, `/generate`), OpenAI's syntax: `{"type":
//! "text"}` (free text, the default), `{"type": "json_object"}`, or `{"type": "json_schema",
//! "json_schema": {"name", "schema", "strict"?, "description"?}}`. Read into
//! [`ResponseFormat`] with the place of any problem; whether the schema is one ragway can
//! apply is the engine's to say, as it compiles it.

use ragway_core::ResponseFormat;
use serde_json::Value;

/// Longest schema name (OpenAI's limit).
const MAX_NAME: usize = 64;

/// A `response_format` problem: the place under `response_format` (`["json_schema",
/// "name"]`) and what is wrong.
#[derive(Debug, PartialEq)]
pub struct FormatError {
    pub path: Vec<String>,
    pub message: String,
}

fn error(path: &[&str], message: impl Into<String>) -> FormatError {
    FormatError {
        path: path.iter().map(|p| (*p).to_owned()).collect(),
        message: message.into(),
    }
}

/// The format a body asks for; absent, `null` or `{"type": "text"}` is free text (`None`).
pub fn read_response_format(value: Option<&Value>) -> Result<Option<ResponseFormat>, FormatError> {
    let fields = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(fields)) => fields,
        Some(_) => {
            return Err(error(
                &[],
                "response_format must be an object such as {\"type\": \"json_object\"}",
            ));
        }
    };
    match fields.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(ResponseFormat::JsonObject)),
        Some("json_schema") => json_schema(fields.get("json_schema")).map(Some),
        Some(other) => Err(error(
            &["type"],
            format!(
                "response_format.type \"{other}\" is unknown; expected text, json_object or \
                 json_schema"
            ),
        )),
        None => Err(error(
            &["type"],
            "response_format.type is required: text, json_object or json_schema",
        )),
    }
}

fn json_schema(value: Option<&Value>) -> Result<ResponseFormat, FormatError> {
    let Some(Value::Object(fields)) = value else {
        return Err(error(
            &["json_schema"],
            "response_format.json_schema must be an object with a name and a schema",
        ));
    };
    let name = match fields.get("name") {
        Some(Value::String(name))
            if !name.is_empty()
                && name.len() <= MAX_NAME
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
        {
            name.clone()
        }
        Some(_) => {
            return Err(error(
                &["json_schema", "name"],
                format!(
                    "response_format.json_schema.name must be 1 to {MAX_NAME} letters, digits, \
                     underscores or dashes"
                ),
            ));
        }
        None => {
            return Err(error(
                &["json_schema", "name"],
                "response_format.json_schema.name is required",
            ));
        }
    };
    let schema = match fields.get("schema") {
        Some(schema @ Value::Object(_)) => schema.clone(),
        Some(_) => {
            return Err(error(
                &["json_schema", "schema"],
                "response_format.json_schema.schema must be a JSON Schema object",
            ));
        }
        None => {
            return Err(error(
                &["json_schema", "schema"],
                "response_format.json_schema.schema is required",
            ));
        }
    };
    let strict = match fields.get("strict") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(strict)) => *strict,
        Some(_) => {
            return Err(error(
                &["json_schema", "strict"],
                "response_format.json_schema.strict must be true or false",
            ));
        }
    };
    let description = match fields.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => {
            return Err(error(
                &["json_schema", "description"],
                "response_format.json_schema.description must be a string",
            ));
        }
    };
    Ok(ResponseFormat::JsonSchema {
        name,
        description,
        schema,
        strict,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn text_and_nothing_are_free_text_and_json_formats_are_read() {
        assert_eq!(read_response_format(None), Ok(None));
        assert_eq!(read_response_format(Some(&json!(null))), Ok(None));
        assert_eq!(
            read_response_format(Some(&json!({"type": "text"}))),
            Ok(None)
        );
        assert_eq!(
            read_response_format(Some(&json!({"type": "json_object"}))),
            Ok(Some(ResponseFormat::JsonObject))
        );
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let read = read_response_format(Some(&json!({
            "type": "json_schema",
            "json_schema": {"name": "thing_1", "schema": schema, "strict": true},
        })));
        assert_eq!(
            read,
            Ok(Some(ResponseFormat::JsonSchema {
                name: "thing_1".into(),
                description: None,
                schema,
                strict: true,
            }))
        );
    }

    #[test]
    fn every_mistake_names_its_place() {
        let cases = [
            (json!("json"), vec![]),
            (json!({"type": "xml"}), vec!["type"]),
            (json!({}), vec!["type"]),
            (json!({"type": "json_schema"}), vec!["json_schema"]),
            (
                json!({"type": "json_schema", "json_schema": {"schema": {}}}),
                vec!["json_schema", "name"],
            ),
            (
                json!({"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}),
                vec!["json_schema", "name"],
            ),
            (
                json!({"type": "json_schema", "json_schema": {"name": "x".repeat(65), "schema": {}}}),
                vec!["json_schema", "name"],
            ),
            (
                json!({"type": "json_schema", "json_schema": {"name": "a", "schema": "{}"}}),
                vec!["json_schema", "schema"],
            ),
            (
                json!({"type": "json_schema", "json_schema": {"name": "a", "schema": {}, "strict": "yes"}}),
                vec!["json_schema", "strict"],
            ),
        ];
        for (body, place) in cases {
            let error = read_response_format(Some(&body)).unwrap_err();
            assert_eq!(error.path, place, "{body}: {}", error.message);
            assert!(
                error.message.starts_with("response_format"),
                "{}",
                error.message
            );
        }
    }
}
