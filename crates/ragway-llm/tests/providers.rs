//! One shared suite run over every remote chat provider against its wire-level fake, so a new
//! provider gets the whole suite by adding one line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ragway_core::config::LlmConfig;
use ragway_core::{
    ChatModel, ChatRequest, Delta, FinishReason, Message, ProviderError, Tool, ToolCall, ToolChoice,
};
use ragway_testkit::{Fake, Scripted};

/// What a provider under test needs: its fake and a model built over it.
struct Subject {
    fake: Fake,
    model: Arc<dyn ChatModel>,
    /// The model id the fake echoes in its default answer.
    model_id: &'static str,
}

async fn build(config: &str, aws: bool) -> Arc<dyn ChatModel> {
    let config: LlmConfig = toml::from_str(config).unwrap();
    let sdk = if aws {
        Some(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_sdk_bedrockruntime::config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_bedrockruntime::config::Credentials::new(
                    "a", "b", None, None, "test",
                ))
                .load()
                .await,
        )
    } else {
        None
    };
    let shared = ragway_llm::Shared {
        http: reqwest::Client::new(),
        aws: sdk.as_ref(),
    };
    ragway_llm::build(&config, &shared).unwrap()
}

async fn openai() -> Subject {
    let fake = ragway_testkit::openai::start().await.unwrap();
    let config = format!(
        "type = 'openai'\nname = 'm'\nmodel = 'gpt-test'\nbase_url = '{}/v1'\ntimeout_secs = 1\n",
        fake.url()
    );
    Subject {
        model: build(&config, false).await,
        fake,
        model_id: "gpt-test",
    }
}

async fn bedrock() -> Subject {
    let fake = ragway_testkit::bedrock::start().await.unwrap();
    let config = format!(
        "type = 'bedrock'\nname = 'm'\nmodel_id = 'anthropic.claude-test'\nendpoint_url = '{}'\nmax_attempts = 1\ntimeout_secs = 1\n",
        fake.url()
    );
    Subject {
        model: build(&config, true).await,
        fake,
        model_id: "anthropic.claude-test",
    }
}

fn request() -> ChatRequest {
    ChatRequest {
        messages: vec![
            Message::system("Be brief."),
            Message::user("What is a qubit?"),
        ],
        ..Default::default()
    }
}

fn tool_request() -> ChatRequest {
    ChatRequest {
        tools: vec![Tool {
            name: "get_weather".into(),
            description: Some("The weather in a city".into()),
            parameters: serde_json::json!({
                "type": "object",
                "properties": { "city": { "type": "string" }, "days": { "type": "integer" } },
                "required": ["city"],
            }),
        }],
        tool_choice: Some(ToolChoice::Auto),
        ..request()
    }
}

macro_rules! provider_suite {
    ($($provider:ident),*) => {$(
        mod $provider {
            use super::*;

            #[tokio::test]
            async fn generate_returns_text_usage_and_finish() {
                let s = $provider().await;
                let answer = s.model.generate(request()).await.unwrap();
                assert_eq!(answer.text, format!("ragway fake answer from {}.", s.model_id));
                assert_eq!(answer.finish_reason, FinishReason::Stop);
                assert_eq!(answer.usage.output_tokens, 5);
                assert_eq!(answer.usage.input_tokens, 6, "system and user words");
            }

            #[tokio::test]
            async fn stream_concatenates_to_the_whole_answer() {
                let s = $provider().await;
                let whole = s.model.generate(request()).await.unwrap();
                let mut stream = s.model.stream(request()).await.unwrap();
                assert_eq!(stream.next().await.unwrap().unwrap(), Delta::Started, "the stream opens with its start");
                let (mut text, mut pieces, mut finish, mut usage) = (String::new(), 0, None, None);
                while let Some(delta) = stream.next().await {
                    match delta.unwrap() {
                        Delta::Started => panic!("the stream started twice"),
                        Delta::Text(t) => { text.push_str(&t); pieces += 1; }
                        Delta::Finish(f) => finish = Some(f),
                        Delta::Usage(u) => usage = Some(u),
                        Delta::ToolCall { .. } => panic!("no tools were offered"),
                    }
                }
                assert_eq!(text, whole.text);
                assert!(pieces > 1, "streamed in pieces");
                assert_eq!(finish, Some(FinishReason::Stop));
                assert_eq!(usage, Some(whole.usage));
            }

            #[tokio::test]
            async fn max_tokens_cuts_with_length() {
                let s = $provider().await;
                let answer = s.model.generate(ChatRequest { max_tokens: Some(2), ..request() }).await.unwrap();
                assert_eq!(answer.finish_reason, FinishReason::Length);
                assert_eq!(answer.text.split_whitespace().count(), 2);
            }

            #[tokio::test]
            async fn errors_are_classified() {
                let s = $provider().await;
                s.fake.push(Scripted::Error { status: 500, kind: "InternalServerException".into(), message: "exploded".into() });
                match s.model.generate(request()).await {
                    Err(ProviderError::Upstream { status: Some(500), message, .. }) => assert!(message.contains("exploded"), "{message}"),
                    other => panic!("{other:?}"),
                }
                s.fake.push(Scripted::Error { status: 429, kind: "ThrottlingException".into(), message: "slow down".into() });
                assert!(matches!(s.model.generate(request()).await, Err(ProviderError::Throttled { .. })));
                s.fake.push(Scripted::Delay(Duration::from_secs(3)));
                assert!(matches!(s.model.generate(request()).await, Err(ProviderError::Timeout { .. })));
            }

            #[tokio::test]
            async fn a_stream_broken_midway_ends_with_an_error() {
                let s = $provider().await;
                s.fake.push(Scripted::StreamException { after_chunks: 2, kind: "throttlingException".into(), message: "stop".into() });
                let mut stream = s.model.stream(request()).await.unwrap();
                let mut texts = 0;
                let mut error = None;
                while let Some(delta) = stream.next().await {
                    match delta {
                        Ok(Delta::Text(_)) => texts += 1,
                        Ok(_) => {}
                        Err(e) => { error = Some(e); break; }
                    }
                }
                assert_eq!(texts, 2);
                assert!(error.is_some(), "the break was reported");
            }

            #[tokio::test]
            async fn a_stream_may_outlast_the_timeout_while_its_events_keep_coming() {
                // Five chunks 400 ms apart: 2 s in all against a 1 s timeout, each within it.
                let s = $provider().await;
                s.fake.push(Scripted::StreamDelay(Duration::from_millis(400)));
                let mut stream = s.model.stream(request()).await.unwrap();
                let mut text = String::new();
                while let Some(delta) = stream.next().await {
                    if let Delta::Text(t) = delta.unwrap() {
                        text.push_str(&t);
                    }
                }
                assert_eq!(text, format!("ragway fake answer from {}.", s.model_id));

                // A stall longer than the timeout between two events ends the stream.
                s.fake.push(Scripted::StreamDelay(Duration::from_millis(1_500)));
                let mut stream = s.model.stream(request()).await.unwrap();
                let mut error = None;
                while let Some(delta) = stream.next().await {
                    if let Err(e) = delta {
                        error = Some(e);
                        break;
                    }
                }
                assert!(matches!(error, Some(ProviderError::Timeout { .. })), "{error:?}");
            }

            #[tokio::test]
            async fn unknown_stop_reasons_are_kept() {
                let s = $provider().await;
                s.fake.push(Scripted::StopReason("brand_new_reason".into()));
                let answer = s.model.generate(request()).await.unwrap();
                assert_eq!(answer.finish_reason, FinishReason::Other("brand_new_reason".into()));
            }

            #[tokio::test]
            async fn tool_calls_come_back_whole_and_streamed() {
                let s = $provider().await;
                let arguments = r#"{"city":"Paris","days":3}"#;
                let script = || Scripted::ToolCall { name: "get_weather".into(), arguments: arguments.into() };
                s.fake.push(script());
                let answer = s.model.generate(tool_request()).await.unwrap();
                assert_eq!(answer.finish_reason, FinishReason::ToolCalls);
                assert_eq!(answer.tool_calls.len(), 1);
                let call = &answer.tool_calls[0];
                assert_eq!(call.name, "get_weather");
                assert!(!call.id.is_empty());
                assert_eq!(
                    serde_json::from_str::<serde_json::Value>(&call.arguments).unwrap(),
                    serde_json::from_str::<serde_json::Value>(arguments).unwrap()
                );

                s.fake.push(script());
                let mut stream = s.model.stream(tool_request()).await.unwrap();
                let (mut id, mut name, mut streamed, mut finish) = (None, None, String::new(), None);
                while let Some(delta) = stream.next().await {
                    match delta.unwrap() {
                        Delta::ToolCall { index, id: i, name: n, arguments } => {
                            assert_eq!(index, 0);
                            id = id.or(i);
                            name = name.or(n);
                            streamed.push_str(&arguments);
                        }
                        Delta::Finish(f) => finish = Some(f),
                        Delta::Text(t) => assert!(t.is_empty(), "no text: {t}"),
                        Delta::Started | Delta::Usage(_) => {}
                    }
                }
                assert!(id.is_some());
                assert_eq!(name.as_deref(), Some("get_weather"));
                assert_eq!(
                    serde_json::from_str::<serde_json::Value>(&streamed).unwrap(),
                    serde_json::from_str::<serde_json::Value>(arguments).unwrap()
                );
                assert_eq!(finish, Some(FinishReason::ToolCalls));
                // The fake refuses a scripted call when the request carries no tools, so both
                // answers above prove the tools were sent.
                s.fake.push(script());
                assert!(s.model.generate(request()).await.is_err());
            }

            #[tokio::test]
            async fn a_tool_result_is_sent_back_with_its_call() {
                let s = $provider().await;
                let mut request = tool_request();
                request.messages.push(Message {
                    tool_calls: vec![ToolCall {
                        id: "call_1".into(),
                        name: "get_weather".into(),
                        arguments: r#"{"city":"Paris"}"#.into(),
                    }],
                    ..Message::assistant("")
                });
                request.messages.push(Message::tool("call_1", "18 degrees and sunny"));
                let answer = s.model.generate(request).await.unwrap();
                assert_eq!(answer.text, format!("ragway fake answer from {}.", s.model_id));
                let sent = serde_json::to_string(&s.fake.requests().last().unwrap().body).unwrap();
                assert!(sent.contains("call_1") && sent.contains("18 degrees and sunny"), "{sent}");
                assert!(sent.contains("Paris"), "{sent}");
            }

            #[tokio::test]
            async fn dropping_the_stream_cancels_the_upstream_request() {
                let s = $provider().await;
                s.fake.push(Scripted::StreamDelay(Duration::from_millis(200)));
                let mut stream = s.model.stream(request()).await.unwrap();
                assert_eq!(stream.next().await.unwrap().unwrap(), Delta::Started);
                let first = stream.next().await.unwrap().unwrap();
                assert!(matches!(first, Delta::Text(_)), "{first:?}");
                drop(stream);
                let deadline = std::time::Instant::now() + Duration::from_secs(1);
                while s.fake.cancelled() == 0 && std::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                assert_eq!(s.fake.cancelled(), 1, "the fake saw the request cancelled within 1 s");
            }
        }
    )*};
}

provider_suite!(openai, bedrock);
