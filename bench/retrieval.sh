#!/usr/bin/env bash
# Retrieval: FAISS search through ragway's store (Retriever::search with a zero-cost embedder,
# so FAISS + blocking pool + SQLite rows) against the same index file searched directly by
# Python's FAISS (faiss-cpu from PyPI), for a flat and an HNSW index of random unit vectors.
#
#   bench/retrieval.sh [N] [DIM] [QUERIES] [K]        (defaults: 100000 384 2000 4)
#
# PROFILE=dev reuses a debug build (dependencies, FAISS and SQLite are optimised there too).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}; dim=${2:-384}; queries=${3:-2000}; k=${4:-4}
profile=${PROFILE:-release}
flag=(--release); [ "$profile" = dev ] && flag=()
python3 -c 'import faiss, numpy' 2>/dev/null || {
  echo "Python faiss is needed: scripts/install-deps.sh" >&2; exit 1; }
out=bench/out/retrieval; mkdir -p "$out"

for index in flat hnsw; do
  dir="$out/$index-$n-$dim"; mkdir -p "$dir"
  echo "== $index: $n vectors x $dim dims, k=$k, $queries queries, $(nproc) cores"
  cargo run "${flag[@]}" --quiet -p ragway-retrieval --example retrieval_bench -- \
    --dir "$dir" --n "$n" --dim "$dim" --queries "$queries" --k "$k" --index "$index" \
    | tee "$dir/ragway.txt" | grep -v '^index file'
  python3 bench/faiss_direct.py "$dir/store/index.faiss" "$dir/queries.f32" "$k" 64
  echo
done
