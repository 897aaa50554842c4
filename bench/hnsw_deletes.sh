#!/usr/bin/env bash
# HNSW deletes: on a FAISS HNSW store of N one-chunk documents (clustered unit vectors, m 32,
# efSearch 64), the time to delete and to replace one document before (a store configured
# with hnsw_max_deleted_share = 0 rebuilds its index at every delete, as every store did
# before) and after (the vectors stay, skipped by searches); search p50/p99 and recall@K
# against exact search over the live vectors with 0 %, 10 % and 20 % of the index deleted;
# and the commit that crosses 20 % and compacts. The anchor: Python's FAISS building the same
# HNSW index over the same vectors, the work each delete used to redo.
#
#   bench/hnsw_deletes.sh [N] [DIM] [QUERIES] [K]        (defaults: 100000 384 500 10)
#
# PROFILE=dev reuses a debug build (dependencies, FAISS and ragway-retrieval are optimised
# there too). Builds the whole workspace, as bench/retrieval.sh does. BIN_DIR=DIR uses a
# prebuilt DIR/examples/hnsw_deletes_bench instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}; dim=${2:-384}; queries=${3:-500}; k=${4:-10}
profile=${PROFILE:-release}
flag=(--release); bin=${CARGO_TARGET_DIR:-target}/release
[ "$profile" = dev ] && { flag=(); bin=${CARGO_TARGET_DIR:-target}/debug; }
python3 -c 'import faiss, numpy' 2>/dev/null || {
  echo "Python faiss is needed: scripts/install-deps.sh" >&2; exit 1; }
out=bench/out/hnsw_deletes; mkdir -p "$out"
if [ -n "${BIN_DIR:-}" ]; then bin=$BIN_DIR
else cargo build "${flag[@]}" --quiet --workspace --bins --examples; fi

"$bin/examples/hnsw_deletes_bench" --dir "$out" --n "$n" --dim "$dim" --queries "$queries" \
  --k "$k" | tee "$out/ragway.txt"
python3 - "$out/base.f32" "$dim" <<'PY'
import sys, time
import faiss, numpy as np
base = np.fromfile(sys.argv[1], dtype="<f4").reshape(-1, int(sys.argv[2]))
index = faiss.IndexIDMap2(faiss.IndexHNSWFlat(base.shape[1], 32, faiss.METRIC_INNER_PRODUCT))
started = time.perf_counter()
index.add_with_ids(base, np.arange(len(base), dtype="int64"))
took = time.perf_counter() - started
print(f"{'anchor: Python faiss builds the same HNSW':<44} {took * 1e3:>10.1f} ms  "
      f"(faiss {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads)")
PY
rm -f "$out/base.f32"
