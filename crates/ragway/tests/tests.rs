//! ragway's integration tests: the real binary over real sockets, against wire-level fakes.

mod cli;
mod e2e;
mod errors;
mod support;
