#!/usr/bin/env bash
# Retrieval: FAISS search through ragway's store (Retriever::search with a zero-cost embedder,
# so FAISS + blocking pool + SQLite rows) against the same index file searched directly by
# Python's FAISS (faiss-cpu from PyPI), for a flat and an HNSW index of clustered unit vectors
# (see the example's docs); HNSW recall@10 against the flat index; then `POST /search` on a
# running `ragway serve` over the HNSW store (query embedded by all-MiniLM-L6-v2) next to the
# query embedding alone and FAISS alone, and the server's resident memory with the index and
# the models loaded. Then bench/pgvector.sh on the same vectors: pgvector next to FAISS and to
# Postgres queried directly (NO_PGVECTOR=1 skips it).
#
#   bench/retrieval.sh [N] [DIM] [QUERIES] [K]        (defaults: 100000 384 2000 4)
#
# PROFILE=dev reuses a debug build (dependencies, FAISS and SQLite are optimised there too).
# Builds the whole workspace (the package selection every build in this tree uses, so that
# no build re-resolves features and rebuilds dependencies).
# BIN_DIR=DIR uses a prebuilt ragway and DIR/examples/ instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}; dim=${2:-384}; queries=${3:-2000}; k=${4:-4}
profile=${PROFILE:-release}
flag=(--release); bin=${CARGO_TARGET_DIR:-target}/release
[ "$profile" = dev ] && { flag=(); bin=${CARGO_TARGET_DIR:-target}/debug; }
python3 -c 'import faiss, numpy' 2>/dev/null || {
  echo "Python faiss is needed: scripts/install-deps.sh" >&2; exit 1; }
command -v oha >/dev/null || { echo "oha is needed: cargo install oha --locked" >&2; exit 1; }
out=bench/out/retrieval; mkdir -p "$out"
if [ -n "${BIN_DIR:-}" ]; then bin=$BIN_DIR  # prebuilt: ragway and examples/
else cargo build "${flag[@]}" --quiet --workspace --bins --examples; fi
pgvector() { [ -n "${NO_PGVECTOR:-}" ] || bench/pgvector.sh "$n" "$dim" "$queries" "$k"; }

for index in flat hnsw; do
  dir="$out/$index-$n-$dim"; mkdir -p "$dir"
  echo "== $index: $n vectors x $dim dims, k=$k, $queries queries, $(nproc) cores"
  "$bin/examples/retrieval_bench" --dir "$dir" --n "$n" --dim "$dim" --queries "$queries" \
    --k "$k" --index "$index" \
    | tee "$dir/ragway.txt" | grep -v '^index file'
  python3 bench/faiss_direct.py "$dir/store/index.faiss" "$dir/queries.f32" "$k" 64 \
    | tee "$dir/direct.txt"
  echo
done
python3 bench/recall.py "$out/flat-$n-$dim/store/index.faiss" "$out/hnsw-$n-$dim/store/index.faiss" \
  "$out/flat-$n-$dim/queries.f32" 10 64
[ "$dim" = 384 ] || { pgvector; exit 0; }

# POST /search end to end over the HNSW store, with the default models loaded.
echo
echo "== POST /search over the HNSW store ($n chunks), query embedded by all-MiniLM-L6-v2"
cat > "$out/serve.toml" <<TOML
[[llm]]
name = "smollm2"
type = "local"
path = "$PWD/models/SmolLM2-135M-Instruct.Q4_1.gguf"

[[embedder]]
name = "minilm"
type = "local"
path = "$PWD/models/all-MiniLM-L6-v2"

[[vector_store]]
name = "bench"
type = "faiss"
path = "$PWD/$out/hnsw-$n-$dim/store"
embedder = "minilm"
index = "hnsw"
TOML
query="How does a qubit differ from a classical bit?"
pids=(); source bench/lib.sh
# As scripts/serve.sh runs it: OpenMP threads of FAISS and llama.cpp wait without spinning.
OMP_WAIT_POLICY=PASSIVE RUST_LOG=error start_ragway "$out/serve.toml" "$out/serve.out"; server=$pid
body="{\"query\":\"$query\",\"vector_search_type\":\"bench\",\"top_k\":$k}"
oha --no-tui -n 20 -c 1 -m POST -H 'content-type: application/json' -d "$body" "$url/search" >/dev/null
oha --no-tui --output-format json -n 300 -c 1 -m POST -H 'content-type: application/json' \
  -d "$body" "$url/search" > "$out/search.json"
"$bin/examples/embed_bench" --model models/all-MiniLM-L6-v2 --texts examples/corpus/ragway.md \
  --query "$query" --queries 300 > "$out/embed.txt"
python3 - "$out/search.json" "$out/embed.txt" "$out/hnsw-$n-$dim/direct.txt" "$server" \
  "$out/hnsw-$n-$dim/store/index.faiss" models/all-MiniLM-L6-v2/model.safetensors \
  models/SmolLM2-135M-Instruct.Q4_1.gguf <<'PY'
import json, os, re, sys
search_file, embed_file, direct_file, pid, *files = sys.argv[1:]
search = json.load(open(search_file))
errors = sum(n for code, n in search.get("statusCodeDistribution", {}).items() if code != "200")
errors += sum(search.get("errorDistribution", {}).values())
p50 = search["latencyPercentiles"]["p50"] * 1e3
p99 = search["latencyPercentiles"]["p99"] * 1e3
embed = float(re.search(r"query p50\s+([\d.]+)", open(embed_file).read()).group(1))
direct = float(re.search(r"1 query per call\s+p50\s+([\d.]+)", open(direct_file).read()).group(1))
print(f"POST /search (HTTP, embed, FAISS, rows)  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  errors {errors}")
print(f"query embedding alone (MiniLM)           p50 {embed:7.2f} ms")
print(f"Python faiss, same HNSW index            p50 {direct:7.2f} ms")
print(f"ragway's added p50 beyond embedding + FAISS: {p50 - embed - direct:+.2f} ms")
status = open(f"/proc/{pid}/status").read()
rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024
sizes = {os.path.basename(f): os.path.getsize(f) / 2**20 for f in files}
budget = sum(sizes.values()) + 150
print("resident memory of the server (index + MiniLM + SmolLM2 loaded): "
      f"{rss:.0f} MB now, {hwm:.0f} MB peak")
print("  budget = " + " + ".join(f"{name} {mb:.0f} MB" for name, mb in sizes.items())
      + f" + 150 MB = {budget:.0f} MB")
PY
kill "$server"
echo
pgvector
