//! What a request body can be wrong with, in the words of the field at fault.

use serde::Serialize;

/// A body that is not what the route expects.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// Not JSON, a missing field, a wrong type, or values out of range, each located (ragway's
    /// own routes report them all at once, in FastAPI's shape).
    #[error("invalid request: {}", .0.iter().map(|e| format!("{}: {}", e.loc.join("."), e.msg)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),

    /// A well-formed body that asks for something out of range or contradictory, named by its
    /// field in OpenAI's style (`messages.2.content`).
    #[error("{message}")]
    BadRequest { param: String, message: String },
}

impl RequestError {
    pub fn bad(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadRequest {
            param: param.into(),
            message: message.into(),
        }
    }
}

/// One validation problem in FastAPI's (pydantic's) shape.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Where: `["body", "prompt"]`.
    pub loc: Vec<String>,
    pub msg: String,
    /// `missing`, `json_invalid`, `type_error`, `string_too_short`, `greater_than_equal`, ...
    #[serde(rename = "type")]
    pub kind: String,
}

impl FieldError {
    pub fn new(loc: &[&str], msg: impl Into<String>, kind: &str) -> Self {
        Self {
            loc: loc.iter().map(|s| (*s).to_owned()).collect(),
            msg: msg.into(),
            kind: kind.to_owned(),
        }
    }
}
