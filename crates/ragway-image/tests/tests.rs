//! ragway-image's integration tests: real files, real tools (tar, gzip, python3, ldd, chroot)
//! and a real registry (Debian's `docker-registry`) on loopback.

// Helpers outside #[test] functions panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod build;
mod libs;
mod push;
mod support;
