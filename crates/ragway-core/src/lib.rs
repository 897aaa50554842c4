//! Shared vocabulary of ragway: chat and retrieval types, the component traits, errors,
//! configuration, prompt assembly, the quiet-spell timer every stream's timeouts use, and how
//! calls to OpenAI-compatible servers fail. Every other crate builds on these.

pub mod access;
pub mod config;
pub mod cpu;
pub mod deploy;
pub mod error;
pub mod filter;
pub mod image;
pub mod limits;
pub mod prompt;
pub mod quiet;
pub mod secret;
pub mod state;
pub mod telemetry;
pub mod traits;
pub mod types;
pub mod upstream;
pub mod web;

pub use error::{BuildError, ConfigError, ConfigIssue, ProviderError};
pub use filter::Filter;
pub use image::{Image, ImageData, ImageFormat, ImageLimits, ImageSource};
pub use secret::{EnvKind, EnvOr, EnvReference, SecretRef};
pub use traits::{
    Capabilities, ChatModel, DeltaStream, DocumentStore, Embedder, Reranker, Retriever,
};
pub use types::{
    ChatRequest, ChatResponse, Delta, Document, FinishReason, IngestReport, Message, Passage,
    ResponseFormat, Role, StoreStats, Tool, ToolCall, ToolChoice, Usage,
};
