//! Structured outputs (`response_format`) on `/v1/chat/completions` and `/generate`: passed
//! to OpenAI as it is and to Bedrock as Converse's `outputConfig` (the fakes refuse what
//! those services would refuse), a 400 naming the model for one that cannot follow a schema,
//! and every answer, whole or streamed, checked against the schema: a model's answer that is
//! not the JSON asked for is a 502, never passed on.

use ragway_testkit::Scripted;
use serde_json::{Value, json};

use crate::support::{Server, config};

/// A person with a nested address and a list: the shape a client's Pydantic model makes.
fn person() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": { "type": "string" },
            "age": { "type": "integer" },
            "address": {
                "type": "object",
                "properties": { "city": { "type": "string" }, "zip": { "type": "string" } },
                "required": ["city", "zip"],
                "additionalProperties": false,
            },
            "tags": { "type": "array", "items": { "type": "string" } },
        },
        "required": ["name", "age", "address", "tags"],
        "additionalProperties": false,
    })
}

fn as_person() -> Value {
    json!({ "type": "json_schema", "json_schema": { "name": "person", "schema": person(), "strict": true } })
}

fn chat(model: &str, format: Value) -> Value {
    json!({
        "model": model,
        "messages": [{ "role": "user", "content": "Describe Ada Lovelace as JSON." }],
        "response_format": format,
    })
}

/// The answer's text parsed, checked to be a person.
fn parsed_person(text: &str) -> Value {
    let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(value["name"].is_string(), "{value}");
    assert!(value["age"].is_i64(), "{value}");
    assert!(value["address"]["city"].is_string(), "{value}");
    assert!(value["tags"].is_array(), "{value}");
    value
}

#[tokio::test(flavor = "multi_thread")]
async fn structured_answers_follow_their_schema_on_both_apis_and_are_checked() {
    let openai = ragway_testkit::openai::start().await.unwrap();
    let bedrock = ragway_testkit::bedrock::start().await.unwrap();
    let kendra = ragway_testkit::kendra::start().await.unwrap();
    let server = Server::start(&format!(
        r#"{}
[[llm]]
name = "claude-sonnet-4-5"
type = "bedrock"
model_id = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
region = "us-west-2"
endpoint_url = "{}"
max_attempts = 1

# A model id ragway does not know, said to follow schemas.
[[llm]]
name = "newer-model"
type = "bedrock"
model_id = "us.example.newer-model-v1:0"
region = "us-west-2"
endpoint_url = "{}"
structured_output = true
"#,
        config(&openai.url(), &bedrock.url(), &kendra.url()),
        bedrock.url(),
        bedrock.url()
    ))
    .await;

    // OpenAI: `response_format` goes as it came; the answer follows the schema.
    let (status, _, answer) = server
        .post("/v1/chat/completions", &chat("gpt-4o", as_person()))
        .await;
    assert_eq!(status, 200, "{answer}");
    parsed_person(answer["choices"][0]["message"]["content"].as_str().unwrap());
    let sent = openai.requests().pop().unwrap().body;
    assert_eq!(sent["response_format"], as_person());

    // Bedrock: Converse's outputConfig, the schema as JSON text.
    let (status, _, answer) = server
        .post(
            "/v1/chat/completions",
            &chat("claude-sonnet-4-5", as_person()),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    parsed_person(answer["choices"][0]["message"]["content"].as_str().unwrap());
    let sent = bedrock.requests().pop().unwrap().body;
    let format = &sent["outputConfig"]["textFormat"];
    assert_eq!(format["type"], "json_schema", "{sent}");
    assert_eq!(format["structure"]["jsonSchema"]["name"], "person");
    let schema: Value = serde_json::from_str(
        format["structure"]["jsonSchema"]["schema"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(schema, person());

    // A Bedrock model without structured outputs: a 400 naming it, before any call.
    let calls = bedrock.requests().len();
    let (status, _, refused) = server
        .post("/v1/chat/completions", &chat("claude-3-opus", as_person()))
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["param"], "response_format");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("\"claude-3-opus\""), "{message}");
    assert_eq!(bedrock.requests().len(), calls, "the model was called");

    // `/generate` takes the same `response_format`, and `json_object` too.
    let generate = json!({
        "prompt": "Describe Ada Lovelace as JSON.",
        "llm_name": "gpt-4o",
        "response_format": { "type": "json_object" },
    });
    let (status, _, answer) = server.post("/generate", &generate).await;
    assert_eq!(status, 200, "{answer}");
    let object: Value = serde_json::from_str(answer["response"].as_str().unwrap()).unwrap();
    assert!(object.is_object(), "{object}");
    let sent = openai.requests().pop().unwrap().body;
    assert_eq!(sent["response_format"], json!({ "type": "json_object" }));

    // A model whose answer is not the JSON asked for: a 502 that says so, whole or streamed.
    for (model, fake) in [("gpt-4o", &openai), ("claude-sonnet-4-5", &bedrock)] {
        fake.push(Scripted::Text("Sure! Ada was born in 1815.".into()));
        let (status, _, failed) = server
            .post("/v1/chat/completions", &chat(model, as_person()))
            .await;
        assert_eq!(status, 502, "{model}: {failed}");
        let message = failed["error"]["message"].as_str().unwrap();
        assert!(message.contains("response_format"), "{message}");
        assert!(message.contains("not JSON"), "{message}");

        fake.push(Scripted::Text(
            r#"{"name": "Ada", "age": "old", "address": {"city": "London", "zip": "W1"}, "tags": []}"#
                .into(),
        ));
        let mut streamed = chat(model, as_person());
        streamed["stream"] = json!(true);
        let (_, text) = server
            .post_raw("/v1/chat/completions", streamed.to_string().into_bytes())
            .await;
        let last = text
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .next_back()
            .unwrap();
        let last: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {text}"));
        let message = last["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("/age"), "{model}: {text}");
    }
    openai.push(Scripted::Text("[1, 2]".into()));
    let (status, _, failed) = server.post("/generate", &generate).await;
    assert_eq!(status, 502, "{failed}");
    assert!(
        failed["detail"].as_str().unwrap().contains("not an object"),
        "{failed}"
    );

    // A schema ragway cannot apply, or a malformed response_format: the caller's 400 / 422.
    let remote = json!({ "type": "json_schema", "json_schema": { "name": "x", "schema": { "$ref": "https://example.com/s.json" } } });
    let (status, _, refused) = server
        .post("/v1/chat/completions", &chat("gpt-4o", remote))
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["error"]["param"],
        "response_format.json_schema.schema"
    );
    let (status, _, refused) = server
        .post(
            "/v1/chat/completions",
            &chat(
                "gpt-4o",
                json!({ "type": "json_schema", "json_schema": { "schema": {} } }),
            ),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["error"]["param"],
        "response_format.json_schema.name"
    );
    let mut bad = generate.clone();
    bad["response_format"] = json!({ "type": "yaml" });
    let (status, _, refused) = server.post("/generate", &bad).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(
        refused["detail"][0]["loc"],
        json!(["body", "response_format", "type"])
    );
}
