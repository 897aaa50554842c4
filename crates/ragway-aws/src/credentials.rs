//! Whether an AWS component's credentials resolve now, for `/readyz`: the standard chain
//! (environment, profile, web identity, container or instance role) is asked for credentials,
//! as the SDK would before its next call. A success is trusted for a while, so a load balancer
//! probing every few seconds does not call the credential endpoints each time; a failure is
//! looked at again on the next probe.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_types::SdkConfig;

/// How long resolved credentials count as resolvable without asking again.
const TRUST_SUCCESS_FOR: Duration = Duration::from_secs(60);

/// One component's credential check.
#[derive(Debug)]
pub struct CredentialsCheck {
    provider: Option<SharedCredentialsProvider>,
    resolved_at: Mutex<Option<Instant>>,
}

impl CredentialsCheck {
    /// The check of the credentials `config` resolves with.
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            provider: config.credentials_provider(),
            resolved_at: Mutex::new(None),
        }
    }

    /// Ok when credentials resolve; otherwise what the chain said.
    pub async fn check(&self) -> Result<(), String> {
        let Some(provider) = &self.provider else {
            return Err("no AWS credential provider is configured".to_owned());
        };
        if self
            .last_success()
            .is_some_and(|at| at.elapsed() < TRUST_SUCCESS_FOR)
        {
            return Ok(());
        }
        match provider.provide_credentials().await {
            Ok(_) => {
                self.set_last_success(Some(Instant::now()));
                Ok(())
            }
            Err(error) => {
                self.set_last_success(None);
                Err(format!(
                    "AWS credentials do not resolve: {} (set AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY, a profile, or a task or instance role)",
                    aws_smithy_types::error::display::DisplayErrorContext(&error)
                ))
            }
        }
    }

    fn last_success(&self) -> Option<Instant> {
        *self
            .resolved_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_last_success(&self, at: Option<Instant>) {
        *self
            .resolved_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;

    #[tokio::test]
    async fn static_credentials_resolve() {
        let config = SdkConfig::builder()
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIDTEST", "secret", None, None, "test",
            )))
            .build();
        assert_eq!(CredentialsCheck::new(&config).check().await, Ok(()));
    }

    #[tokio::test]
    async fn no_provider_is_not_ready() {
        let error = CredentialsCheck::new(&SdkConfig::builder().build())
            .check()
            .await
            .unwrap_err();
        assert!(error.contains("no AWS credential provider"), "{error}");
    }
}
