#!/usr/bin/env bash
# Embedding and ingestion speed on this machine. ragway's local embedder (embedder/bert.rs) next to
# sentence-transformers on the same all-MiniLM-L6-v2 folder and the same texts: query latency
# (one question per call) and batch throughput over chunk-sized texts; then `ragway ingest` of
# the same texts as files, end to end (reading, chunking, embedding, FAISS, SQLite).
#
#   bench/embedding.sh [CHUNKS]         (default 512 texts of about 1,000 characters)
#
# The anchor needs sentence-transformers; set ST_PYTHON to a Python that has it (e.g. a venv:
# python3 -m venv /tmp/st-venv && /tmp/st-venv/bin/pip install sentence-transformers).
# Without it ragway's figures are printed alone. PROFILE=dev reuses a debug build.
set -euo pipefail
cd "$(dirname "$0")/.."
chunks=${1:-512}
profile=${PROFILE:-release}
flag=(--release); dir=target/release
[ "$profile" = dev ] && { flag=(); dir=target/debug; }
[ -n "${CARGO_TARGET_DIR:-}" ] && dir="$CARGO_TARGET_DIR/${dir#target/}"
model=models/all-MiniLM-L6-v2
[ -f "$model/model.safetensors" ] || { echo "run scripts/fetch-models.sh first" >&2; exit 1; }
out=bench/out/embedding; rm -rf "$out"; mkdir -p "$out/docs"

# Deterministic English-like texts of ~1,000 characters made from the sample corpus' sentences.
python3 - "$chunks" "$out" <<'PY'
import random, re, sys, pathlib
count, out = int(sys.argv[1]), pathlib.Path(sys.argv[2])
text = " ".join(p.read_text() for p in sorted(pathlib.Path("examples/corpus").iterdir()))
text = re.sub(r"\s+", " ", text)
sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", re.sub(r"[#*`]", "", text)) if len(s.strip()) > 20]
rng = random.Random(7)
lines = []
for i in range(count):
    parts = []
    while sum(len(p) + 1 for p in parts) < 950:
        parts.append(rng.choice(sentences))
    lines.append(" ".join(parts)[:1000])
(out / "chunks.txt").write_text("\n".join(lines) + "\n")
for i, line in enumerate(lines):
    (out / "docs" / f"doc-{i:04}.txt").write_text(line + "\n")
PY

# --workspace: building one package resolves other features and recompiles large dependencies.
cargo build "${flag[@]}" --quiet --workspace --bins --examples
echo "== all-MiniLM-L6-v2, $chunks texts of ~1,000 characters, $(nproc) cores"
"$dir/examples/embed_bench" --model "$model" --texts "$out/chunks.txt"
st_python=${ST_PYTHON:-python3}
if "$st_python" -c 'import sentence_transformers' 2>/dev/null; then
  "$st_python" bench/embed_st.py "$model" "$out/chunks.txt"
else
  echo "(sentence-transformers not importable by $st_python: no anchor; set ST_PYTHON)"
fi

cat > "$out/ingest.toml" <<TOML
[[embedder]]
name = "minilm"
type = "local"
path = "$PWD/$model"

[[vector_store]]
name = "bench"
type = "faiss"
path = "$PWD/$out/store"
embedder = "minilm"
TOML
echo "== ragway ingest of the same texts as $chunks files"
"$dir/ragway" ingest --config "$out/ingest.toml" --store bench "$out/docs" 2>/dev/null
