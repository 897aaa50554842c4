#!/usr/bin/env bash
# Ingest at scale, two figures:
#
# 1. Memory: `ragway ingest` of DOCS generated documents (one JSON Lines file, about 600
#    characters each) into a pgvector store, embedded by the OpenAI fake (ragway-fakes, so the
#    figure is ragway's reading, batching and committing, not a model; pgvector, so the index
#    lives in Postgres and not in the process measured, as a FAISS store's must). The resident
#    memory of the ingest is sampled every 0.2 s and printed at each tenth of the run: it stays
#    flat after the first batches when documents are read as they are needed. Starts its own
#    PostgreSQL + pgvector (bench/lib.sh start_state) and stops it at the end.
# 2. Throughput: `ragway ingest` of the BEIR SciFact corpus (../shared/data/retrieval/scifact,
#    5,183 abstracts) with the local embedder (all-MiniLM-L6-v2), chunks/s as the command
#    reports it, against sentence-transformers encoding the same chunks (read back from the
#    store) at batch 32 on the same cores. Needs ST_PYTHON, a Python with
#    sentence-transformers and torch; without it only ragway's figure is printed.
#
#   bench/ingest_scale.sh [DOCS]          (default 100000)
#   SKIP_SCIFACT=1 bench/ingest_scale.sh  (the memory figure only)
#   BIN_DIR=path bench/ingest_scale.sh    (prebuilt ragway and ragway-fakes)
set -euo pipefail
cd "$(dirname "$0")/.."
docs=${1:-100000}
pids=(); source bench/lib.sh
release_bins
out=bench/out/ingest_scale; rm -rf "$out"; mkdir -p "$out"
start_fakes "$out"
start_state "$out/state"

# --- 1. Memory over a large corpus -------------------------------------------------------
python3 - "$docs" "$out/corpus.jsonl" <<'PY'
import json, random, sys
count, path = int(sys.argv[1]), sys.argv[2]
words = ("retrieval gateway vector index query answer model passage corpus batch commit "
         "embedding latency memory store replica budget stream token cache schema").split()
rng = random.Random(7)
with open(path, "w") as f:
    for i in range(count):
        text = " ".join(rng.choice(words) for _ in range(80))
        f.write(json.dumps({"id": f"doc-{i}", "text": text}) + "\n")
PY
cat > "$out/fake.toml" <<TOML
[[embedder]]
name = "fake"
type = "openai"
model = "text-embedding-3-small"
base_url = "$upstream/v1"
dimensions = 64

[[vector_store]]
name = "big"
type = "pgvector"
dsn = "env::RAGWAY_PG_DSN"
embedder = "fake"
TOML
echo "ingest of $docs generated documents ($(du -h "$out/corpus.jsonl" | cut -f1)), OpenAI fake embedder"
started=$(date +%s.%N)
"$bin/ragway" ingest --store big --config "$out/fake.toml" "$out/corpus.jsonl" \
  > "$out/big.out" 2> "$out/big.err" & ingest=$!; pids+=($ingest)
: > "$out/rss"
while kill -0 "$ingest" 2>/dev/null; do
  rss=$(ps -o rss= -p "$ingest" 2>/dev/null || true)
  [ -n "$rss" ] && echo "$(date +%s.%N) $rss" >> "$out/rss"
  sleep 0.2
done
wait "$ingest" || { echo "the ingest failed:" >&2; cat "$out/big.err" >&2; exit 1; }
python3 - "$out/rss" "$started" <<'PY'
import sys
rows = [tuple(map(float, line.split())) for line in open(sys.argv[1]) if line.strip()]
start = float(sys.argv[2])
if not rows:
    sys.exit("no memory samples")
print(f"{'time':>8}  {'RSS':>8}")
for k in range(10):
    t, rss = rows[max(0, min(len(rows) - 1, (k + 1) * len(rows) // 10 - 1))]
    print(f"{t - start:7.0f}s  {rss / 1024:6.0f} MB")
peak = max(r for _, r in rows)
late = [r for _, r in rows[len(rows) // 5:]]
print(f"peak {peak / 1024:.0f} MB; after the first fifth of the run between "
      f"{min(late) / 1024:.0f} and {max(late) / 1024:.0f} MB")
PY
tail -1 "$out/big.out"

# --- 2. Throughput on SciFact against sentence-transformers -------------------------------
[ -n "${SKIP_SCIFACT:-}" ] && exit 0
scifact=../shared/data/retrieval/scifact/corpus.jsonl
[ -f "$scifact" ] || { echo "no $scifact; skipping the SciFact figure"; exit 0; }
[ -f models/all-MiniLM-L6-v2/model.safetensors ] || {
  echo "run scripts/fetch-models.sh first" >&2; exit 1; }
cat > "$out/local.toml" <<TOML
[[embedder]]
name = "minilm"
type = "local"
path = "$PWD/models/all-MiniLM-L6-v2"

[[vector_store]]
name = "scifact"
type = "faiss"
path = "$out/scifact"
embedder = "minilm"
TOML
echo
echo "ingest of SciFact ($(wc -l < "$scifact") abstracts), local all-MiniLM-L6-v2"
"$bin/ragway" ingest --store scifact --config "$out/local.toml" "$scifact" \
  > "$out/scifact.out" 2> "$out/scifact.err" || { cat "$out/scifact.err" >&2; exit 1; }
summary=$(tail -1 "$out/scifact.out")
echo "ragway ingest: $summary"
python3 - "$out/scifact/store.sqlite3" "$out/chunks.txt" <<'PY'
import sqlite3, sys
rows = sqlite3.connect(sys.argv[1]).execute("SELECT text FROM chunks ORDER BY id")
with open(sys.argv[2], "w") as f:
    for (text,) in rows:
        f.write(" ".join(text.split()) + "\n")
PY
if [ -n "${ST_PYTHON:-}" ]; then
  "$ST_PYTHON" bench/embed_st.py models/all-MiniLM-L6-v2 "$out/chunks.txt" 1 32 \
    | grep -v "query p50" \
    | sed 's/^/sentence-transformers: /'
else
  echo "sentence-transformers: not measured (set ST_PYTHON to a Python with it)"
fi
