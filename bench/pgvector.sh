#!/usr/bin/env bash
# pgvector next to FAISS, on the same clustered unit vectors as the FAISS figures of
# bench/retrieval.sh (which runs this script at its end; it also runs alone). Starts its own
# PostgreSQL 17 + pgvector 0.8 (scripts/state-servers.sh, a fresh cluster under bench/out, free
# loopback ports, shared_buffers 1 GB) and stops it when it ends. Prints, each beside its anchor:
#
#   1. ingest: the N vectors added through the store's own add (one transaction, rows into the
#      live HNSW index), embedder at zero cost, against the FAISS store's add of the same
#      documents into an HNSW index of the same degree (m 16): the stores' own chunks/s;
#   2. search: Retriever::search on the pgvector store (zero-cost embedder: pooled connection,
#      SQL round trip, rows into passages) against ragway's very statement sent by Python's
#      pg8000 with the same query vectors; HNSW recall@10 against exact search (the same
#      statement with index scans off: Postgres compares with every row), over RECALL_QUERIES
#      (500) of them;
#   3. POST /search on `ragway serve` over the pgvector store (query embedded by
#      all-MiniLM-L6-v2) against the query embedding alone plus the SQL alone for the same
#      vector (fetched from the server's /v1/embeddings).
#
#   bench/pgvector.sh [N] [DIM] [QUERIES] [K]        (defaults: 100000 384 2000 4)
#   HNSW_M=16 EF_CONSTRUCTION=64 EF_SEARCH=64        (the pgvector index; the defaults are
#                                                     pgvector's and ragway's)
#
# Needs Python's numpy and pg8000 (scripts/install-deps.sh) and oha (cargo install oha
# --locked). PROFILE=dev uses a debug build (dependencies optimised), as retrieval.sh.
# BIN_DIR=DIR uses a prebuilt ragway and DIR/examples/ instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}; dim=${2:-384}; queries=${3:-2000}; k=${4:-4}
m=${HNSW_M:-16}; efc=${EF_CONSTRUCTION:-64}; ef=${EF_SEARCH:-64}
profile=${PROFILE:-release}
flag=(--release); bin=${CARGO_TARGET_DIR:-target}/release
[ "$profile" = dev ] && { flag=(); bin=${CARGO_TARGET_DIR:-target}/debug; }
python3 -c 'import numpy, pg8000' 2>/dev/null || {
  echo "Python numpy and pg8000 are needed: scripts/install-deps.sh" >&2; exit 1; }
command -v oha >/dev/null || { echo "oha is needed: cargo install oha --locked" >&2; exit 1; }
out=bench/out/retrieval; mkdir -p "$out"
if [ -n "${BIN_DIR:-}" ]; then bin=$BIN_DIR  # prebuilt: ragway and examples/
else cargo build "${flag[@]}" --quiet --workspace --bins --examples; fi

pids=(); source bench/lib.sh
start_state "$out/pgvector-state"
export RAGWAY_BENCH_PG_DSN=$RAGWAY_PG_DSN

echo "== ingest: $n vectors x $dim dims, zero-cost embedder, HNSW m $m, $(nproc) cores"
rm -rf "$out/ingest-faiss-hnsw"
"$bin/examples/retrieval_bench" --store faiss --index hnsw --hnsw-m "$m" --n "$n" --dim "$dim" \
  --dir "$out/ingest-faiss-hnsw" --queries 100 --k "$k" | grep '^ingested'
"$bin/examples/retrieval_bench" --store pgvector --dir "$out/pgvector-$n-$dim" --n "$n" \
  --dim "$dim" --queries "$queries" --k "$k" --hnsw-m "$m" --ef-construction "$efc" \
  --ef-search "$ef" > "$out/pgvector-$n-$dim.txt"
grep '^ingested' "$out/pgvector-$n-$dim.txt"
rm -rf "$out/ingest-faiss-hnsw"

echo
echo "== pgvector HNSW (m $m, ef_construction $efc, ef_search $ef): k=$k, $queries queries"
grep -v '^ingested' "$out/pgvector-$n-$dim.txt"
python3 bench/pg_direct.py "$PGPORT" "$out/pgvector-$n-$dim/queries.f32" "$dim" "$k" "$ef" \
  --recall "${RECALL_QUERIES:-500}" | tee "$out/pgvector-direct.txt"
python3 - "$out/pgvector-$n-$dim.txt" "$out/pgvector-direct.txt" <<'PY'
import re, sys
ragway = re.search(r"store search, 1 at a time\s+p50\s+([\d.]+) ms\s+p99\s+([\d.]+)", open(sys.argv[1]).read())
direct = re.search(r"same SQL\s+p50\s+([\d.]+) ms\s+p99\s+([\d.]+)", open(sys.argv[2]).read())
(r50, r99), (d50, d99) = (map(float, ragway.groups()), map(float, direct.groups()))
print(f"ragway's added latency over the SQL alone: p50 {r50 - d50:+.3f} ms  p99 {r99 - d99:+.3f} ms")
PY
[ "$dim" = 384 ] || exit 0

echo
echo "== POST /search over the pgvector store ($n chunks), query embedded by all-MiniLM-L6-v2"
cat > "$out/serve-pgvector.toml" <<TOML
[[embedder]]
name = "minilm"
type = "local"
path = "$PWD/models/all-MiniLM-L6-v2"

[[vector_store]]
name = "bench"
type = "pgvector"
dsn = "env::RAGWAY_BENCH_PG_DSN"
embedder = "minilm"
metric = "inner_product"
hnsw_m = $m
ef_construction = $efc
ef_search = $ef
TOML
query="How does a qubit differ from a classical bit?"
RUST_LOG=error start_ragway "$out/serve-pgvector.toml" "$out/serve-pgvector.out"
body="{\"query\":\"$query\",\"vector_search_type\":\"bench\",\"top_k\":$k}"
oha --no-tui -n 20 -c 1 -m POST -H 'content-type: application/json' -d "$body" "$url/search" >/dev/null
oha --no-tui --output-format json -n 300 -c 1 -m POST -H 'content-type: application/json' \
  -d "$body" "$url/search" > "$out/search-pgvector.json"
curl -sf "$url/v1/embeddings" -H 'content-type: application/json' \
  -d "{\"model\":\"minilm\",\"input\":\"$query\"}" | python3 -c '
import json, sys, numpy as np
np.asarray(json.load(sys.stdin)["data"][0]["embedding"], dtype="<f4").tofile(sys.argv[1])' \
  "$out/query-minilm.f32"
python3 bench/pg_direct.py "$PGPORT" "$out/query-minilm.f32" "$dim" "$k" "$ef" --repeat 300 \
  --label "Python pg8000, same SQL + vector" > "$out/pgvector-direct-query.txt"
"$bin/examples/embed_bench" --model models/all-MiniLM-L6-v2 --texts examples/corpus/ragway.md \
  --query "$query" --queries 300 > "$out/embed-pgvector.txt"
python3 - "$out/search-pgvector.json" "$out/embed-pgvector.txt" "$out/pgvector-direct-query.txt" <<'PY'
import json, re, sys
search = json.load(open(sys.argv[1]))
errors = sum(n for code, n in search.get("statusCodeDistribution", {}).items() if code != "200")
errors += sum(search.get("errorDistribution", {}).values())
p50 = search["latencyPercentiles"]["p50"] * 1e3
p99 = search["latencyPercentiles"]["p99"] * 1e3
embed = re.search(r"query p50\s+([\d.]+)", open(sys.argv[2]).read())
sql = re.search(r"p50\s+([\d.]+) ms\s+p99\s+([\d.]+)", open(sys.argv[3]).read())
embed, sql50, sql99 = float(embed.group(1)), float(sql.group(1)), float(sql.group(2))
print(f"POST /search (HTTP, embed, SQL, rows)     p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  errors {errors}")
print(f"query embedding alone (MiniLM)            p50 {embed:7.2f} ms")
print(f"Python pg8000, same SQL, same vector      p50 {sql50:7.2f} ms  p99 {sql99:7.2f} ms")
print(f"ragway's added p50 beyond embedding + SQL: {p50 - embed - sql50:+.2f} ms")
PY
