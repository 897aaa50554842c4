//! Retries, fallbacks and cooldowns around every model call: the named model is called again
//! (after a jittered, growing pause) while its failures are worth retrying, then each of its
//! fallbacks in order; a model that keeps failing is skipped for a while.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt as _;
use ragway_core::config::{CooldownPolicy, RetryPolicy};
use ragway_core::{ChatModel, DeltaStream, ProviderError};
use tokio::time::Instant;

use crate::error::EngineError;
use crate::registry::{Llm, Registry};

/// The model that answered a request, and the one asked for when a fallback answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answered {
    pub model: String,
    pub fallback_from: Option<String>,
}

/// A model's recent failures: how many calls in a row failed and whether it is set aside.
#[derive(Debug)]
pub struct Health {
    policy: CooldownPolicy,
    state: Mutex<HealthState>,
}

#[derive(Debug, Default)]
struct HealthState {
    failures: u32,
    cooling_until: Option<Instant>,
}

/// What one failure did to a model's health.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterFailure {
    StillAvailable,
    /// The failure started a cooldown of this long.
    CoolingDown(Duration),
}

impl Health {
    pub fn new(policy: CooldownPolicy) -> Self {
        Self {
            policy,
            state: Mutex::new(HealthState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long the model is still set aside, if it is.
    pub fn cooling_for(&self, now: Instant) -> Option<Duration> {
        let mut state = self.state();
        match state.cooling_until {
            Some(until) if until > now => Some(until - now),
            Some(_) => {
                // The cooldown is over: the model gets one call on probation, and one more
                // failure sets it aside again.
                state.cooling_until = None;
                state.failures = self.policy.after_failures.saturating_sub(1);
                None
            }
            None => None,
        }
    }

    pub fn succeeded(&self) {
        let mut state = self.state();
        state.failures = 0;
        state.cooling_until = None;
    }

    /// Counts a failure that is the provider's fault; the one that reaches the policy's
    /// threshold starts a cooldown.
    pub fn failed(&self, now: Instant) -> AfterFailure {
        let mut state = self.state();
        state.failures = state.failures.saturating_add(1);
        let threshold = self.policy.after_failures;
        if threshold > 0 && state.failures >= threshold && state.cooling_until.is_none() {
            let length = self.policy.duration();
            state.cooling_until = Some(now + length);
            return AfterFailure::CoolingDown(length);
        }
        AfterFailure::StillAvailable
    }
}

/// The pause before retry number `retry` (1 for the first retry): a uniformly random share of
/// `initial * 2^(retry-1)` ("full jitter", so that clients throttled together do not return
/// together), at least the provider's `Retry-After`, never more than `max_backoff_ms`.
pub fn backoff(
    policy: &RetryPolicy,
    retry: u32,
    retry_after: Option<Duration>,
    random: f64,
) -> Duration {
    let max = Duration::from_millis(policy.max_backoff_ms);
    let ceiling = Duration::from_millis(policy.initial_backoff_ms)
        .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)))
        .min(max);
    let jittered = ceiling.mul_f64(random.clamp(0.0, 1.0));
    jittered.max(retry_after.unwrap_or_default()).min(max)
}

/// A random number in [0, 1), from the standard library's randomly keyed hasher.
fn random_unit() -> f64 {
    let bits = RandomState::new().build_hasher().finish() >> 11;
    bits as f64 / (1u64 << 53) as f64
}

/// Waits for a stream's first event: a stream whose first event is a failure (a refusal, a
/// throttling exception, a cut before anything) is retried like any other call, and the
/// client still gets an ordinary error status. The event read is kept and replayed. From
/// here on the answer is the client's: it is not held back until the model's first words,
/// so ragway's first byte follows the upstream's.
pub async fn opened(mut stream: DeltaStream) -> Result<DeltaStream, ProviderError> {
    let first = stream.next().await.transpose()?;
    Ok(Box::pin(futures::stream::iter(first.map(Ok)).chain(stream)))
}

impl Registry {
    /// Calls `call` with the model named `requested`, retrying what is worth retrying, then
    /// with each of its fallbacks in order, skipping models in cooldown. When the model asked
    /// for fails through the request's own fault (a 400, an unsupported request), that failure
    /// is returned at once. Otherwise the last failure is returned, or a 503 naming the models
    /// when every one of them was cooling down. A fallback that `serves` says cannot serve the
    /// request (it reads no images, calls no tools) is passed over: it would answer without
    /// what was asked, not fail.
    pub async fn call_with_fallbacks<T, F, Fut>(
        &self,
        requested: &str,
        serves: impl Fn(&Llm) -> Result<(), EngineError>,
        mut call: F,
    ) -> Result<(T, Answered), EngineError>
    where
        F: FnMut(Arc<dyn ChatModel>) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let first = self.llm(requested)?;
        let candidates = std::iter::once(first).chain(
            first
                .fallbacks
                .iter()
                // Validated at load; a registry built in code may name models it lacks.
                .filter_map(|name| self.llm(name).ok()),
        );
        let mut last_error = None;
        let mut cooling = Vec::new();
        for (position, llm) in candidates.enumerate() {
            if let Some(left) = llm.health.cooling_for(Instant::now()) {
                cooling.push((llm.name.clone(), left));
                continue;
            }
            if position > 0
                && let Err(cannot) = serves(llm)
            {
                tracing::info!(from = requested, to = %llm.name, reason = %cannot, "passing over a fallback that cannot serve this request");
                continue;
            }
            if position > 0 {
                metrics::counter!("ragway_fallbacks_total", "from" => requested.to_owned(), "to" => llm.name.clone())
                    .increment(1);
                tracing::info!(from = requested, to = %llm.name, "falling back to another model");
            }
            match attempt(llm, &mut call).await {
                Ok(value) => {
                    let answered = Answered {
                        model: llm.name.clone(),
                        fallback_from: (position > 0).then(|| requested.to_owned()),
                    };
                    return Ok((value, answered));
                }
                // The request's own fault: no other model will do better.
                Err(error) if !error.is_provider_fault() && position == 0 => {
                    return Err(error.into());
                }
                // A fallback refusing the request (its context window is smaller, it lacks a
                // feature) does not hide why the model asked for failed.
                Err(error) if !error.is_provider_fault() => {
                    last_error.get_or_insert(error);
                }
                Err(error) => last_error = Some(error),
            }
        }
        match last_error {
            Some(error) => Err(error.into()),
            None => Err(EngineError::CoolingDown { models: cooling }),
        }
    }
}

/// One model with its retry policy: the answer, or the last failure.
async fn attempt<T, F, Fut>(llm: &Llm, call: &mut F) -> Result<T, ProviderError>
where
    F: FnMut(Arc<dyn ChatModel>) -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let mut retry = 0;
    loop {
        let error = match call(llm.model.clone()).await {
            Ok(value) => {
                llm.health.succeeded();
                return Ok(value);
            }
            Err(error) => error,
        };
        let kind = error.kind();
        metrics::counter!("ragway_provider_errors_total", "model" => llm.name.clone(), "kind" => kind)
            .increment(1);
        if !error.is_provider_fault() {
            return Err(error);
        }
        if let AfterFailure::CoolingDown(length) = llm.health.failed(Instant::now()) {
            metrics::counter!("ragway_cooldowns_total", "model" => llm.name.clone()).increment(1);
            tracing::warn!(model = %llm.name, %error, secs = length.as_secs_f64(), "model failed repeatedly; cooling it down");
            return Err(error);
        }
        retry += 1;
        if !error.is_retryable() || retry >= llm.retry.attempts {
            return Err(error);
        }
        let pause = backoff(&llm.retry, retry, error.retry_after(), random_unit());
        metrics::counter!("ragway_retries_total", "model" => llm.name.clone(), "kind" => kind)
            .increment(1);
        tracing::info!(model = %llm.name, %error, retry, pause_ms = pause.as_millis() as u64, "retrying");
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(initial: u64, max: u64) -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            initial_backoff_ms: initial,
            max_backoff_ms: max,
        }
    }

    #[test]
    fn backoff_doubles_its_ceiling_jitters_below_it_and_stays_under_the_cap() {
        let p = policy(100, 1_000);
        let ms = |retry, random| backoff(&p, retry, None, random).as_millis();
        assert_eq!(ms(1, 0.999_999), 99);
        assert_eq!(ms(2, 0.999_999), 199);
        assert_eq!(ms(3, 0.999_999), 399);
        assert_eq!(ms(5, 0.999_999), 999, "capped at max_backoff_ms");
        assert_eq!(ms(40, 0.999_999), 999, "no overflow on many retries");
        assert_eq!(ms(3, 0.0), 0);
        assert_eq!(ms(3, 0.5), 200);
        for _ in 0..1_000 {
            let pause = backoff(&p, 3, None, random_unit());
            assert!(pause < Duration::from_millis(400), "{pause:?}");
        }
    }

    #[test]
    fn backoff_honours_retry_after_up_to_the_cap() {
        let p = policy(100, 1_000);
        let wait = |secs: f64| backoff(&p, 1, Some(Duration::from_secs_f64(secs)), 0.5);
        assert_eq!(wait(0.3), Duration::from_millis(300));
        assert_eq!(wait(30.0), Duration::from_millis(1_000));
        assert_eq!(
            wait(0.01),
            Duration::from_millis(50),
            "the jitter was longer"
        );
    }

    #[test]
    fn random_units_are_in_range_and_vary() {
        let draws: Vec<f64> = (0..100).map(|_| random_unit()).collect();
        assert!(draws.iter().all(|r| (0.0..1.0).contains(r)));
        assert!(draws.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn a_model_cools_down_after_failures_in_a_row_and_is_tried_again_after() {
        let health = Health::new(CooldownPolicy {
            after_failures: 3,
            secs: 10.0,
        });
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        assert_eq!(health.failed(at(0)), AfterFailure::StillAvailable);
        health.succeeded();
        assert_eq!(health.failed(at(0)), AfterFailure::StillAvailable);
        assert_eq!(health.failed(at(0)), AfterFailure::StillAvailable);
        assert_eq!(health.cooling_for(at(0)), None, "a success reset the count");
        assert_eq!(
            health.failed(at(0)),
            AfterFailure::CoolingDown(Duration::from_secs(10))
        );
        assert_eq!(health.cooling_for(at(0)), Some(Duration::from_secs(10)));
        assert_eq!(health.cooling_for(at(4)), Some(Duration::from_secs(6)));
        assert_eq!(health.cooling_for(at(10)), None, "tried again after");
        // On probation: one more failure sets it aside again at once ...
        assert_eq!(
            health.failed(at(10)),
            AfterFailure::CoolingDown(Duration::from_secs(10))
        );
        assert_eq!(health.cooling_for(at(15)), Some(Duration::from_secs(5)));
        assert_eq!(health.cooling_for(at(20)), None);
        // ... and one success makes it healthy.
        health.succeeded();
        assert_eq!(health.failed(at(20)), AfterFailure::StillAvailable);
    }

    #[test]
    fn a_cooldown_after_zero_failures_never_starts() {
        let health = Health::new(CooldownPolicy {
            after_failures: 0,
            secs: 10.0,
        });
        for _ in 0..100 {
            assert_eq!(health.failed(Instant::now()), AfterFailure::StillAvailable);
        }
        assert_eq!(health.cooling_for(Instant::now()), None);
    }

    /// A model that fails with the queued errors, then answers with its name.
    struct Scripted {
        name: &'static str,
        failures: Mutex<Vec<ProviderError>>,
        calls: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl ChatModel for Scripted {
        async fn generate(
            &self,
            _: ragway_core::ChatRequest,
        ) -> Result<ragway_core::ChatResponse, ProviderError> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let next = self.failures.lock().unwrap().pop();
            match next {
                Some(error) => Err(error),
                None => Ok(ragway_core::ChatResponse {
                    text: self.name.into(),
                    tool_calls: Vec::new(),
                    usage: Default::default(),
                    finish_reason: ragway_core::FinishReason::Stop,
                }),
            }
        }

        async fn stream(&self, _: ragway_core::ChatRequest) -> Result<DeltaStream, ProviderError> {
            Err(ProviderError::unreachable(self.name, "not streamed here"))
        }
    }

    fn model(name: &'static str, mut failures: Vec<ProviderError>) -> Arc<Scripted> {
        failures.reverse();
        Arc::new(Scripted {
            name,
            failures: Mutex::new(failures),
            calls: Default::default(),
        })
    }

    fn llm(name: &str, model: Arc<Scripted>, fallbacks: &[&str], after_failures: u32) -> Llm {
        Llm {
            name: name.into(),
            kind: "openai",
            model_id: name.into(),
            context_window: 1000,
            default_max_tokens: None,
            model,
            retry: policy(1, 2),
            fallbacks: fallbacks.iter().map(|f| (*f).to_owned()).collect(),
            health: Health::new(CooldownPolicy {
                after_failures,
                secs: 60.0,
            }),
        }
    }

    fn server_error() -> ProviderError {
        ProviderError::upstream("p", Some(500), "boom")
    }

    fn bad_request() -> ProviderError {
        ProviderError::upstream("p", Some(400), "too long")
    }

    async fn ask(registry: &Registry, name: &str) -> Result<(String, Answered), EngineError> {
        registry
            .call_with_fallbacks(
                name,
                |_| Ok(()),
                |model| async move { model.generate(Default::default()).await.map(|r| r.text) },
            )
            .await
    }

    #[tokio::test]
    async fn retries_then_fallbacks_then_cooldowns() {
        let main = model("main", (0..12).map(|_| server_error()).collect());
        let refuses = model("refuses", (0..9).map(|_| bad_request()).collect());
        let backup = model("backup", vec![]);
        let registry = Registry::from_parts(
            Default::default(),
            vec![
                llm("main", main.clone(), &["refuses", "backup"], 10),
                llm("refuses", refuses.clone(), &[], 0),
                llm("backup", backup.clone(), &[], 0),
                llm("alone", model("alone", vec![bad_request()]), &["backup"], 0),
            ],
            vec![],
        );
        let calls = |m: &Scripted| m.calls.load(std::sync::atomic::Ordering::SeqCst);

        let (text, answered) = ask(&registry, "main").await.unwrap();
        assert_eq!(text, "backup");
        assert_eq!(answered.fallback_from.as_deref(), Some("main"));
        assert_eq!((calls(&main), calls(&refuses), calls(&backup)), (5, 1, 1));

        // The asked-for model's own 400 goes to the client; no fallback is tried.
        let error = ask(&registry, "alone").await.unwrap_err();
        assert!(
            matches!(&error, EngineError::Provider(e) if !e.is_provider_fault()),
            "{error}"
        );
        assert_eq!(calls(&backup), 1);

        // Five more failures make ten in a row: main cools down, then is skipped without a call.
        let (text, _) = ask(&registry, "main").await.unwrap();
        assert_eq!((text.as_str(), calls(&main)), ("backup", 10));
        let (text, _) = ask(&registry, "main").await.unwrap();
        assert_eq!((text.as_str(), calls(&main)), ("backup", 10));

        // With no fallback, a cooling model is a 503 that names it.
        let only_main = Registry::from_parts(
            Default::default(),
            vec![llm("main", model("main", vec![server_error()]), &[], 1)],
            vec![],
        );
        let error = ask(&only_main, "main").await.unwrap_err();
        assert!(
            matches!(&error, EngineError::Provider(e) if e.is_provider_fault()),
            "{error}"
        );
        let error = ask(&only_main, "main").await.unwrap_err();
        assert!(matches!(error, EngineError::CoolingDown { .. }), "{error}");
        assert!(error.to_string().contains("\"main\""), "{error}");
    }

    #[tokio::test]
    async fn a_fallback_that_cannot_serve_the_request_is_passed_over() {
        let main = model("main", (0..5).map(|_| server_error()).collect());
        let blind = model("blind", vec![]);
        let backup = model("backup", vec![]);
        let registry = Registry::from_parts(
            Default::default(),
            vec![
                llm("main", main.clone(), &["blind", "backup"], 10),
                llm("blind", blind.clone(), &[], 0),
                llm("backup", backup.clone(), &[], 0),
            ],
            vec![],
        );
        let (text, answered) = registry
            .call_with_fallbacks(
                "main",
                |llm| match llm.name.as_str() {
                    "blind" => Err(EngineError::bad_request("messages", "reads no images")),
                    _ => Ok(()),
                },
                |model| async move { model.generate(Default::default()).await.map(|r| r.text) },
            )
            .await
            .unwrap();
        assert_eq!(
            (text.as_str(), answered.model.as_str()),
            ("backup", "backup")
        );
        let calls = |m: &Scripted| m.calls.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(calls(&blind), 0, "a fallback that cannot serve was called");
    }

    #[tokio::test]
    async fn a_stream_is_opened_by_its_first_event_and_replayed_whole() {
        use ragway_core::{Delta, FinishReason};
        let items = vec![
            Ok(Delta::Started),
            Err(ProviderError::unreachable("p", "cut")),
        ];
        let stream = opened(Box::pin(futures::stream::iter(items)))
            .await
            .unwrap();
        let all: Vec<_> = stream.collect().await;
        assert_eq!(all.len(), 2);
        assert!(matches!(&all[0], Ok(Delta::Started)));
        assert!(
            all[1].is_err(),
            "an error after the stream opened stays in the stream"
        );

        let refused = vec![
            Err(ProviderError::unreachable("p", "cut")),
            Ok(Delta::Text("never read".into())),
        ];
        let error = opened(Box::pin(futures::stream::iter(refused)))
            .await
            .err()
            .unwrap();
        assert_eq!(error.kind(), "unreachable");

        let silent = vec![Ok(Delta::Finish(FinishReason::Stop))];
        let stream = opened(Box::pin(futures::stream::iter(silent)))
            .await
            .unwrap();
        assert_eq!(stream.collect::<Vec<_>>().await.len(), 1);

        let empty = opened(Box::pin(futures::stream::iter(Vec::new())))
            .await
            .unwrap();
        assert_eq!(empty.collect::<Vec<_>>().await.len(), 0);
    }
}
