//! The bodies of ragway's answer routes, `POST /generate` and `POST /v1/chat/completions`, read
//! and checked as the routes read them: JSON with the place of any error, then every value
//! against the server's limits. No HTTP here: the server maps [`RequestError`] to a status in
//! its one error mapping, and the fuzz targets (`fuzz/`) call these functions directly.

pub mod chat;
mod error;
mod filter;
pub mod generate;
mod image;
mod json;
mod limits;
mod response_format;
pub mod schemas;

pub use chat::Conversation;
pub use error::{FieldError, RequestError};
pub use filter::{filter_field_error, read_filter};
pub use generate::Question;
pub use json::parse;
pub use limits::{check_length, check_max_tokens, check_top_k, too_long};
pub use response_format::{FormatError, read_response_format};
