//! Constrained decoding: a request's JSON Schema turned into a llama.cpp grammar (GBNF) by
//! llama.cpp's own converter, the one its server uses for `response_format`. The sampler then
//! only ever picks tokens the grammar allows, so even a small model's answer parses.

use serde_json::Value;

/// The grammar of the JSON values `schema` accepts, or why there is none.
pub(super) fn from_schema(schema: &Value) -> Result<String, String> {
    llama_cpp_2::json_schema_to_grammar(&schema.to_string())
        .map_err(|e| format!("the response_format schema cannot be turned into a grammar: {e}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_schema_becomes_a_grammar_with_a_root() {
        let grammar = from_schema(&json!({
            "type": "object",
            "properties": { "name": { "type": "string" }, "age": { "type": "integer" } },
            "required": ["name", "age"],
        }))
        .unwrap();
        assert!(grammar.contains("root ::="), "{grammar}");
        assert!(grammar.contains("name-kv ::="), "{grammar}");
    }
}
