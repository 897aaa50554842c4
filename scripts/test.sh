#!/usr/bin/env bash
# The test command: formatting, lints, and every test of the workspace (unit, integration,
# end-to-end over real sockets against the fakes, and the boto3 checks of the fakes).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
