#!/usr/bin/env bash
# Ingest throughput into pgvector against the FAISS store: the same texts, embedded by the same
# model (all-MiniLM-L6-v2, ragway's local embedder), through `ragway ingest` into a FAISS store
# and into a pgvector store (chunks/s as the command reports it: reading, chunking, embedding,
# writing, indexing; model loading excluded); then the copy path, `ragway ingest --store pg
# --from-store faiss`, which moves the FAISS store's chunks and vectors into pgvector without
# embedding again. bench/pgvector.sh gives the stores' own cost apart from embedding (100k
# vectors, zero-cost embedder).
#
#   bench/ingest.sh [DOCS] [ROUNDS]    (defaults: 512 texts of about 1,000 characters, 2 rounds)
#
# Each round ingests into fresh stores of both kinds, in turn FAISS first and pgvector first, so
# that neither side always runs on the warmer machine.
# Starts its own PostgreSQL + pgvector (bench/lib.sh start_state) on free loopback ports and
# stops it at the end. PROFILE=dev uses a debug build (dependencies optimised).
# BIN_DIR=DIR uses a prebuilt ragway and DIR/examples/ instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
docs=${1:-512}; rounds=${2:-2}
profile=${PROFILE:-release}
flag=(--release); bin=${CARGO_TARGET_DIR:-target}/release
[ "$profile" = dev ] && { flag=(); bin=${CARGO_TARGET_DIR:-target}/debug; }
python3 -c 'import pg8000' 2>/dev/null || {
  echo "Python pg8000 is needed: scripts/install-deps.sh" >&2; exit 1; }
[ -f models/all-MiniLM-L6-v2/model.safetensors ] || {
  echo "run scripts/fetch-models.sh first" >&2; exit 1; }
if [ -n "${BIN_DIR:-}" ]; then bin=$BIN_DIR  # prebuilt: ragway and examples/
else cargo build "${flag[@]}" --quiet --workspace --bins --examples; fi
out=bench/out/ingest; rm -rf "$out/docs" "$out"/faiss* "$out/warm-up"; mkdir -p "$out/docs"
pids=(); source bench/lib.sh
start_state "$out/state"

# Deterministic English-like texts of ~1,000 characters from the sample corpus' sentences (as
# bench/embedding.sh makes them).
python3 - "$docs" "$out" <<'PY'
import random, re, sys, pathlib
count, out = int(sys.argv[1]), pathlib.Path(sys.argv[2])
text = " ".join(p.read_text() for p in sorted(pathlib.Path("examples/corpus").iterdir()))
text = re.sub(r"\s+", " ", text)
sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", re.sub(r"[#*`]", "", text)) if len(s.strip()) > 20]
rng = random.Random(7)
for i in range(count):
    parts = []
    while sum(len(p) + 1 for p in parts) < 950:
        parts.append(rng.choice(sentences))
    (out / "docs" / f"doc-{i:04}.txt").write_text(" ".join(parts)[:1000] + "\n")
PY

{ cat <<TOML
[[embedder]]
name = "minilm"
type = "local"
path = "$PWD/models/all-MiniLM-L6-v2"

[[vector_store]]
name = "warm_up"
type = "faiss"
path = "$PWD/$out/warm-up"
embedder = "minilm"
TOML
  for r in $(seq "$rounds"); do cat <<TOML

[[vector_store]]
name = "faiss$r"
type = "faiss"
path = "$PWD/$out/faiss$r"
embedder = "minilm"
index = "hnsw"

[[vector_store]]
name = "pg$r"
type = "pgvector"
dsn = "env::RAGWAY_PG_DSN"
embedder = "minilm"

[[vector_store]]
name = "pg_copy$r"
type = "pgvector"
dsn = "env::RAGWAY_PG_DSN"
embedder = "minilm"
TOML
  done; } > "$out/ingest.toml"
ingest() { RUST_LOG=warn "$bin/ragway" ingest --config "$out/ingest.toml" "$@" 2>/dev/null; }
# Warm up: the model file into the page cache, the embedder's first run.
ingest --store warm_up "$out"/docs/doc-000* > /dev/null
echo "== ingest: $docs texts of ~1,000 characters, all-MiniLM-L6-v2, $(nproc) cores ($profile build)"
faiss() { echo "round $1, FAISS (HNSW):    $(ingest --store "faiss$1" "$out/docs")"; }
pg() { echo "round $1, pgvector (HNSW): $(ingest --store "pg$1" "$out/docs")"; }
for r in $(seq "$rounds"); do
  if [ $((r % 2)) = 1 ]; then faiss "$r"; pg "$r"; else pg "$r"; faiss "$r"; fi
  echo "round $r, copy FAISS -> pgvector, no embedding: $(ingest --store "pg_copy$r" --from-store "faiss$r")"
done
