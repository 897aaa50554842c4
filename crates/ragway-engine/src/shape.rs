//! Structured outputs: the shape a request asks its answer to take (`response_format`), its
//! JSON Schema compiled once per request (a schema that does not compile is the caller's
//! mistake, a 400), and every answer checked against it before it is returned: an answer that
//! is not the JSON asked for is the model's failure, never passed on as if it were.

use std::sync::Arc;

use ragway_core::ResponseFormat;
use serde_json::Value;

use crate::error::EngineError;

/// How many of an answer's faults the error lists.
const MAX_FAULTS: usize = 3;

/// A request's `response_format`, ready to check answers with.
#[derive(Clone)]
pub struct Shape {
    /// `None` for `json_object`: any JSON object.
    validator: Option<Arc<jsonschema::Validator>>,
}

impl std::fmt::Debug for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shape")
            .field("schema", &self.validator.is_some())
            .finish()
    }
}

impl Shape {
    /// Compiles `format`'s schema; one that is not a JSON Schema ragway can apply (a
    /// reference to another document, an unknown draft, a malformed keyword) is a 400.
    pub fn compile(format: &ResponseFormat) -> Result<Self, EngineError> {
        let validator = match format {
            ResponseFormat::JsonObject => None,
            ResponseFormat::JsonSchema { schema, .. } => {
                let validator = jsonschema::validator_for(schema).map_err(|error| {
                    EngineError::bad_request(
                        "response_format.json_schema.schema",
                        format!(
                            "response_format.json_schema.schema is not a JSON Schema ragway \
                             can apply: {error}"
                        ),
                    )
                })?;
                Some(Arc::new(validator))
            }
        };
        Ok(Self { validator })
    }

    /// Whether `text`, `model`'s answer, is the JSON asked for; the error says how it is not.
    pub fn check(&self, model: &str, text: &str) -> Result<(), EngineError> {
        let invalid = |reason: String| EngineError::InvalidAnswer {
            model: model.to_owned(),
            reason,
            tokens_spent: 0,
        };
        let value: Value = serde_json::from_str(text.trim())
            .map_err(|error| invalid(format!("the answer is not JSON ({error})")))?;
        match &self.validator {
            None if value.is_object() => Ok(()),
            None => Err(invalid("the answer is JSON but not an object".to_owned())),
            Some(validator) => {
                let faults: Vec<String> = validator
                    .iter_errors(&value)
                    .take(MAX_FAULTS)
                    .map(|error| {
                        let at = error.instance_path().to_string();
                        let at = if at.is_empty() { "/".to_owned() } else { at };
                        format!("at {at}: {error}")
                    })
                    .collect();
                if faults.is_empty() {
                    Ok(())
                } else {
                    Err(invalid(format!(
                        "the answer does not follow the schema: {}",
                        faults.join("; ")
                    )))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema(schema: Value) -> Shape {
        Shape::compile(&ResponseFormat::JsonSchema {
            name: "person".into(),
            description: None,
            schema,
            strict: true,
        })
        .unwrap()
    }

    #[test]
    fn an_answer_is_checked_against_the_schema_with_its_place() {
        let shape = schema(json!({
            "type": "object",
            "properties": {
                "name": { "type": "string" },
                "address": {
                    "type": "object",
                    "properties": { "zip": { "type": "integer" } },
                    "required": ["zip"],
                },
            },
            "required": ["name", "address"],
            "additionalProperties": false,
        }));
        assert!(
            shape
                .check("m", r#" {"name": "Ada", "address": {"zip": 1}} "#)
                .is_ok()
        );
        let error = shape
            .check("m", r#"{"name": "Ada", "address": {"zip": "x"}}"#)
            .unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, EngineError::InvalidAnswer { .. }));
        assert!(message.contains("\"m\""), "{message}");
        assert!(message.contains("/address/zip"), "{message}");
        let error = shape.check("m", "Sure! Here is the JSON:").unwrap_err();
        assert!(error.to_string().contains("not JSON"), "{error}");
    }

    #[test]
    fn json_object_takes_any_object_and_nothing_else() {
        let shape = Shape::compile(&ResponseFormat::JsonObject).unwrap();
        assert!(shape.check("m", r#"{"a": [1, 2]}"#).is_ok());
        assert!(shape.check("m", "[1, 2]").is_err());
        assert!(shape.check("m", "").is_err());
    }

    #[test]
    fn a_pattern_made_to_backtrack_forever_still_ends() {
        // Exponential for a naive backtracking engine; jsonschema's is bounded.
        let shape = schema(json!({ "type": "string", "pattern": "^(a+)+$" }));
        let answer = format!("\"{}!\"", "a".repeat(64));
        let error = shape.check("m", &answer).unwrap_err();
        assert!(error.to_string().contains("does not match"), "{error}");
        // With a back-reference, which needs the backtracking engine itself.
        let shape = schema(json!({ "type": "string", "pattern": "^(a+)+\\1$" }));
        assert!(shape.check("m", &answer).is_err());
    }

    #[test]
    fn a_schema_that_cannot_be_applied_is_the_callers_mistake() {
        for bad in [
            json!({ "type": "no-such-type" }),
            json!({ "$ref": "https://example.com/schema.json" }),
            json!({ "properties": 3 }),
        ] {
            let error = Shape::compile(&ResponseFormat::JsonSchema {
                name: "x".into(),
                description: None,
                schema: bad.clone(),
                strict: false,
            })
            .unwrap_err();
            assert!(
                matches!(&error, EngineError::BadRequest { param: Some(p), .. } if p == "response_format.json_schema.schema"),
                "{bad}: {error}"
            );
        }
    }
}
