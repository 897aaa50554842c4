//! The deterministic answers the fakes give: default text, word counts, truncation, chunking
//! and embedding vectors.

use serde_json::Value;

/// The answer when nothing is scripted: `ragway fake answer from <model>.`, or with
/// `words` set, that many words (the sentence, then `more` repeated), for streams as long as
/// a real model's.
pub(crate) fn default_text(model: &str, words: Option<usize>) -> String {
    let sentence = format!("ragway fake answer from {model}.");
    match words {
        Some(n) if n > 5 => format!("{sentence}{}", " more".repeat(n - 5)),
        _ => sentence,
    }
}

/// A small JSON value that follows `schema`, as a model that honours structured outputs would
/// answer: every property of an object (required or not), the first of an `enum` or
/// `anyOf`, one item of an array (or `minItems`), local `$ref`s (`#/$defs/Address`, as
/// Pydantic writes nested models) followed. Enough of JSON Schema for the fakes' tests.
pub(crate) fn instance_of(schema: &Value) -> Value {
    instance_within(schema, schema, 0)
}

fn instance_within(schema: &Value, root: &Value, depth: usize) -> Value {
    // A schema that refers to itself ends in `null` rather than recursing forever.
    if depth > 16 {
        return Value::Null;
    }
    let instance_of = |schema: &Value| instance_within(schema, root, depth + 1);
    if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
        let found = target
            .strip_prefix('#')
            .and_then(|pointer| root.pointer(pointer));
        return found.map_or(Value::Null, instance_of);
    }
    if let Some(value) = schema.get("const") {
        return value.clone();
    }
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|v| v.first())
    {
        return first.clone();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(first) = schema
            .get(key)
            .and_then(Value::as_array)
            .and_then(|v| v.first())
        {
            return instance_of(first);
        }
    }
    let kind = match schema.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        // `["string", "null"]`: the first.
        Some(Value::Array(kinds)) => kinds.first().and_then(Value::as_str).unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "null",
    };
    match kind {
        "object" => {
            let properties = schema.get("properties").and_then(Value::as_object);
            Value::Object(
                properties
                    .into_iter()
                    .flatten()
                    .map(|(name, property)| (name.clone(), instance_of(property)))
                    .collect(),
            )
        }
        "array" => {
            let items = schema.get("items").cloned().unwrap_or(Value::Null);
            let count = schema
                .get("minItems")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .clamp(1, 16);
            Value::Array((0..count).map(|_| instance_of(&items)).collect())
        }
        "string" => Value::from("fake"),
        "integer" => Value::from(schema.get("minimum").and_then(Value::as_i64).unwrap_or(1)),
        "number" => Value::from(schema.get("minimum").and_then(Value::as_f64).unwrap_or(1.5)),
        "boolean" => Value::Bool(true),
        _ => Value::Null,
    }
}

/// Whitespace-separated words: the fakes' token count.
pub(crate) fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The answer after applying the request's output limit.
#[derive(Debug, PartialEq)]
pub(crate) struct Answer {
    pub(crate) text: String,
    /// The limit cut the answer short.
    pub(crate) truncated: bool,
}

impl Answer {
    /// Keeps at most `max_words` words of `text`.
    pub(crate) fn new(text: String, max_words: Option<u64>) -> Self {
        match max_words {
            Some(max) if words(&text) > max => {
                let kept = first_words(&text, max).to_owned();
                Self {
                    text: kept,
                    truncated: true,
                }
            }
            _ => Self {
                text,
                truncated: false,
            },
        }
    }

    pub(crate) fn words(&self) -> u64 {
        words(&self.text)
    }

    /// Stream chunks: split after each space, so they concatenate back to the text.
    pub(crate) fn chunks(&self) -> impl Iterator<Item = &str> {
        self.text.split_inclusive(' ')
    }
}

/// The prefix of `text` holding its first `n` words, without trailing whitespace.
fn first_words(text: &str, n: u64) -> &str {
    if n == 0 {
        return "";
    }
    let mut seen = 0;
    let mut in_word = false;
    for (at, c) in text.char_indices() {
        if c.is_whitespace() {
            if in_word {
                seen += 1;
                in_word = false;
                if seen == n {
                    return &text[..at];
                }
            }
        } else {
            in_word = true;
        }
    }
    text
}

/// A unit vector seeded by a hash of `text`: the same text always embeds the same way.
pub fn embed(text: &str, dimensions: usize) -> Vec<f32> {
    // FNV-1a: stable across runs and platforms, unlike the std hasher.
    let mut seed = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut vector: Vec<f32> = (0..dimensions)
        .map(|_| {
            // splitmix64
            seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            // The top 24 bits fit an f32 exactly; map them onto [-1, 1).
            (z >> 40) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect();
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|v| *v /= norm);
    }
    vector
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn chunks_concatenate_to_the_text() {
        let answer = Answer::new(default_text("gpt-4o", None), None);
        let chunks: Vec<&str> = answer.chunks().collect();
        assert_eq!(chunks, ["ragway ", "fake ", "answer ", "from ", "gpt-4o."]);
        assert_eq!(chunks.concat(), answer.text);
        assert_eq!(answer.words(), 5);
    }

    #[test]
    fn a_longer_default_answer_has_the_words_asked_for() {
        let text = default_text("gpt-4o", Some(50));
        assert_eq!(words(&text), 50);
        assert!(
            text.starts_with("ragway fake answer from gpt-4o. more more"),
            "{text}"
        );
        assert_eq!(default_text("m", Some(3)), default_text("m", None));
    }

    #[test]
    fn limit_truncates_to_whole_words() {
        let answer = Answer::new(default_text("m", None), Some(2));
        assert_eq!(
            answer,
            Answer {
                text: "ragway fake".into(),
                truncated: true
            }
        );
        assert_eq!(Answer::new("a b".into(), Some(0)).text, "");
        assert!(!Answer::new("a b".into(), Some(2)).truncated);
    }
}
