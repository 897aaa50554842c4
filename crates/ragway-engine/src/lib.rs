//! ragway's engine, whoever asks: the registry of models, stores and embedders built from
//! config; one path that answers (resolve the names, check what the model can do, retrieve,
//! assemble the prompt, call the model through retries, fallbacks and cooldowns); the reading
//! of streamed answers into pieces with their usage and timings; and the metrics and trace
//! spans of that work. It knows nothing of HTTP: the server and the CLI render its answers and
//! map its [`EngineError`]s.

pub mod error;
mod images;
pub mod metrics;
pub mod pipeline;
pub mod registry;
pub mod resilience;
pub mod shape;
pub mod stream;
pub mod telemetry;

pub use error::EngineError;
pub use pipeline::{Answer, Choice, Conversation, Prepared, Question, Search, Timings};
pub use registry::{ComponentCheck, EmbedderModel, Llm, Registry, StartupError, Store};
pub use resilience::Answered;
pub use stream::{Accounted, Piece, Summary};
