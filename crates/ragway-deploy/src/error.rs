//! What can stop a deploy, each saying which step failed and why, in words an operator acts on
//! (the AWS error code and message are kept; credentials never appear in them).

use std::error::Error as StdError;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The command line or the config asks for something impossible.
    #[error("{0}")]
    Invalid(String),
    /// No region or no credentials: nothing was called.
    #[error("{0}")]
    Setup(String),
    /// An AWS call failed.
    #[error("{step}: {message}")]
    Aws { step: String, message: String },
    /// Building or pushing the image failed.
    #[error("image: {0}")]
    Image(String),
    /// The service did not become stable, or ECS rolled the deployment back.
    #[error("{0}")]
    Rollout(String),
}

impl DeployError {
    /// An AWS SDK error at `step` (e.g. "ecr CreateRepository ragway-demo"), classified so the
    /// message says whether AWS refused, could not be reached, or answered oddly.
    pub fn aws<E, R>(step: impl Into<String>, error: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        let message = match &error {
            SdkError::ServiceError(_) => format!(
                "{}: {}",
                error.code().unwrap_or("UnknownError"),
                error.message().unwrap_or("no message")
            ),
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => format!(
                "cannot reach AWS (check AWS_ENDPOINT_URL, the network and the region): {}",
                DisplayErrorContext(&error)
            ),
            SdkError::ConstructionFailure(_) => {
                let text = DisplayErrorContext(&error).to_string();
                if text.contains("credential") {
                    format!(
                        "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, \
                         AWS_PROFILE, or run where a role is available ({text})"
                    )
                } else {
                    text
                }
            }
            _ => DisplayErrorContext(&error).to_string(),
        };
        DeployError::Aws {
            step: step.into(),
            message,
        }
    }
}

/// The error code of a service error, to treat "already exists" / "not found" as answers.
pub fn code<E, R>(error: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match error {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}
