//! ragway's integration tests: the real binary over real sockets, against wire-level fakes.

// Helpers outside #[test] functions panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cache;
mod cli;
mod connections;
mod deploy;
mod dockerfile;
mod e2e;
mod errors;
mod eval;
mod faults;
mod guard_rails;
mod images;
mod ingest_s3;
mod load;
mod offline;
mod openai_api;
mod openapi;
mod readiness;
mod replicas;
mod shared_limits;
mod shutdown;
mod store_grants;
mod stores;
mod structured;
mod support;
mod traces;
mod web_pages;
