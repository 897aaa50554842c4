//! Wire-level fakes of OpenAI, Bedrock Runtime, Bedrock Agent Runtime ([`bedrock_agent`]: Rerank
//! and knowledge-base Retrieve) and Kendra that ragway's tests and benchmarks talk to, a fake
//! OpenTelemetry collector ([`otlp`]) that records the spans it receives, a real PostgreSQL with
//! pgvector ([`postgres`]) for the shared store's tests, with a TLS front ([`postgres_tls`]), and a
//! real `redis-server` started on a free port ([`redis`]) for the limits replicas share, and a real
//! `moto_server` ([`moto`]) for S3 and the deploy path's services. The chat
//! fakes check the images they receive as the real services do ([`image`], which also makes
//! header-only test images).
//!
//! Each fake is an axum server on `127.0.0.1` inside the caller's tokio runtime; dropping its
//! [`Fake`] handle stops it. Behaviour for the next requests is queued with [`Fake::push`] or,
//! from another process, with `POST /__fake/script`; `GET /__fake/requests` lists what was received.

pub mod bedrock;
pub mod bedrock_agent;
pub mod image;
pub mod kendra;
pub mod moto;
pub mod openai;
pub mod otlp;
pub mod postgres;
pub mod postgres_tls;
pub mod redis;
mod reply;
mod server;

pub use reply::embed;
pub use server::{Fake, FakeOptions, RecordedRequest, Scripted};
