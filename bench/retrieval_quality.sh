#!/usr/bin/env bash
# Retrieval quality on a public labelled set in BEIR's layout, beside the published figures for
# the same split: `ragway ingest` of the set's corpus into a FAISS store (local all-MiniLM-L6-v2
# embedder, the store's defaults), timed, then `ragway eval` of every judged query in each
# retrieval mode: dense (the vectors), keyword (BM25 over the store's keyword index) and hybrid
# (both, reciprocal rank fusion) — nDCG@10, Recall@10/@100, MRR@10, MAP with trec_eval's
# definitions; search latency per query, embedding the query included.
#
#   bench/retrieval_quality.sh [DATASET_DIR]   (default: ../shared/data/retrieval/scifact)
#
# The anchors printed are SciFact's (test split, 300 queries): BM25 0.665 (BEIR paper, Table 2),
# Anserini BM25 flat 0.679 (k1 0.9, b 0.4), BM25 + MiniLM cross-encoder 0.688 (the best system in
# the BEIR table), all-MiniLM-L6-v2 dense about 0.645 (MTEB). The set is read where it is, never
# copied. The store is kept in bench/out/retrieval_quality/ and reused when the corpus is
# unchanged (ingest skips what is there); delete it to time the ingest again.
#
# Then the same documents in a pgvector store (PostgreSQL + pgvector started on a free loopback
# port, as bench/pgvector.sh does; the chunks and vectors copied by `ragway ingest --from-store`,
# not embedded again) are measured in the same three modes: keyword there is BM25 over Postgres
# full-text search. PGVECTOR=0 skips it.
# PROFILE=dev uses a debug build (dependencies optimised); BIN_DIR=DIR a prebuilt ragway.
set -euo pipefail
cd "$(dirname "$0")/.."
pids=()
source bench/lib.sh
dataset=$(realpath "${1:-../shared/data/retrieval/scifact}")
name=$(basename "$dataset")
profile=${PROFILE:-release}
[ -f "$dataset/corpus.jsonl" ] || { echo "$dataset has no corpus.jsonl (BEIR layout)" >&2; exit 1; }
[ -f models/all-MiniLM-L6-v2/model.safetensors ] || {
  echo "run scripts/fetch-models.sh first" >&2; exit 1; }
if [ -n "${BIN_DIR:-}" ]; then bin=$BIN_DIR
elif [ "$profile" = dev ]; then cargo build --quiet --workspace --bins; bin=${CARGO_TARGET_DIR:-target}/debug
else cargo build --release --quiet -p ragway; bin=${CARGO_TARGET_DIR:-target}/release; fi

out=bench/out/retrieval_quality; mkdir -p "$out"
config=$out/$name.toml
cat > "$config" <<EOF
[[embedder]]
name = "minilm"
type = "local"
path = "$PWD/models/all-MiniLM-L6-v2"

[[vector_store]]
name = "dense"
type = "faiss"
path = "$PWD/$out/$name-faiss"
embedder = "minilm"
EOF

echo "ingest: $dataset/corpus.jsonl into a FAISS store (all-MiniLM-L6-v2, local, $(nproc) cores)"
started=$(date +%s.%N)
"$bin/ragway" --config "$config" ingest --store dense "$dataset/corpus.jsonl" | tail -1
ingest_s=$(python3 -c "import time; print(f'{time.time() - $started:.0f}')")

"$bin/ragway" --config "$config" eval --store dense "$dataset" --json --mode dense,keyword,hybrid \
  --run-file "$out/$name-dense.trec" > "$out/$name-eval.json"
reports=("$out/$name-eval.json")

if [ "${PGVECTOR:-1}" != 0 ]; then
  start_state "$out/pgvector-state"
  export RAGWAY_BENCH_PG_DSN=$RAGWAY_PG_DSN
  cat >> "$config" <<EOF

[[vector_store]]
name = "pg"
type = "pgvector"
dsn = "env::RAGWAY_BENCH_PG_DSN"
embedder = "minilm"
EOF
  echo "copy: the FAISS store's documents, chunks and vectors into a pgvector store"
  "$bin/ragway" --config "$config" ingest --store pg --from-store dense | tail -1
  "$bin/ragway" --config "$config" eval --store pg "$dataset" --json --mode dense,keyword,hybrid \
    > "$out/$name-eval-pgvector.json"
  reports+=("$out/$name-eval-pgvector.json")
fi

python3 - "$name" "$ingest_s" "${reports[@]}" <<'PY'
import json, sys
name, ingest_s, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
labels = [
    {"dense": "dense (MiniLM, FAISS HNSW)", "keyword": "keyword (BM25, SQLite FTS5)",
     "hybrid": "hybrid (RRF of both)"},
    {"dense": "pgvector dense (HNSW)", "keyword": "pgvector keyword (BM25, Postgres FTS)",
     "hybrid": "pgvector hybrid (RRF of both)"},
]
first = json.load(open(paths[0]))
print(f"\n{name} ({first['split']}): {first['queries']} queries, {first['judgements']} judgements;"
      f" FAISS ingest (incl. model load) {ingest_s} s\n")
print(f"{'system':<44} {'nDCG@10':>8} {'R@10':>7} {'R@100':>7} {'MRR@10':>7} {'MAP':>7} {'p50 ms':>7} {'p99 ms':>7}")
for path, label in zip(paths, labels):
    for r in json.load(open(path))["results"]:
        print(f"{'ragway ' + label[r['mode']]:<44} {r['ndcg@10']:>8.4f} {r['recall@10']:>7.4f}"
              f" {r['recall@100']:>7.4f} {r['mrr@10']:>7.4f} {r['map']:>7.4f}"
              f" {r['search_ms']['p50']:>7.2f} {r['search_ms']['p99']:>7.2f}")
if name == "scifact":
    for system, ndcg, r100 in [
        ("BM25, BEIR paper (Elasticsearch)", 0.665, None),
        ("BM25 flat, Anserini (k1 0.9, b 0.4)", 0.6789, 0.9253),
        ("BM25 + MiniLM cross-encoder, BEIR paper", 0.688, None),
        ("all-MiniLM-L6-v2 dense, MTEB", 0.645, None),
    ]:
        print(f"{system:<44} {ndcg:>8.4f} {'':>7} {r100 if r100 else '':>7}")
PY
