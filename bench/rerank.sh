#!/usr/bin/env bash
# What reranking adds to a search: one local cross-encoder call scoring N candidates (a store's
# `rerank = { candidates = N }`), per query, on this machine's cores. The model has the size and
# shape of cross-encoder/ms-marco-MiniLM-L-6-v2 (6 layers, 384 wide, 512 tokens): it is
# all-MiniLM-L6-v2's encoder with a pooler and a one-label head of random weights, as no
# trained cross-encoder is on a package registry. The cost is the same; the scores mean nothing.
# Passages are SciFact abstracts (title and text, about 300 tokens each) and queries its claims.
#
#   bench/rerank.sh [DATASET_DIR] [CANDIDATES] [QUERIES]
#     (defaults: ../shared/data/retrieval/scifact, 20, 30)
#
# The anchor scores the same pairs with sentence-transformers' CrossEncoder when ST_PYTHON (or
# python3) imports it, else with BERT in NumPy. PROFILE=dev reuses a debug build (dependencies
# are optimised in it as in release).
set -euo pipefail
cd "$(dirname "$0")/.."
dataset=${1:-../shared/data/retrieval/scifact}
candidates=${2:-20}
queries=${3:-30}
profile=${PROFILE:-release}
flag=(--release); dir=target/release
[ "$profile" = dev ] && { flag=(); dir=target/debug; }
[ -n "${CARGO_TARGET_DIR:-}" ] && dir="$CARGO_TARGET_DIR/${dir#target/}"
base=models/all-MiniLM-L6-v2
[ -f "$base/model.safetensors" ] || { echo "run scripts/fetch-models.sh first" >&2; exit 1; }
[ -f "$dataset/corpus.jsonl" ] || { echo "no corpus.jsonl in $dataset" >&2; exit 1; }
out=bench/out/rerank; rm -rf "$out"; mkdir -p "$out/cross-encoder"

python3 - "$base" "$out" "$dataset" "$queries" <<'PY'
import json, shutil, struct, sys
from pathlib import Path
import numpy as np
sys.path.insert(0, "bench")
from rerank_anchor import load_safetensors
base, out, dataset, queries = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
folder = out / "cross-encoder"
# Named as Hugging Face saves a BertForSequenceClassification: the encoder under `bert.`.
tensors = {f"bert.{k}": v for k, v in load_safetensors(base / "model.safetensors").items()}
rng = np.random.default_rng(7)
hidden = tensors["bert.embeddings.word_embeddings.weight"].shape[1]
tensors["bert.pooler.dense.weight"] = (rng.standard_normal((hidden, hidden)) * 0.05).astype(np.float32)
tensors["bert.pooler.dense.bias"] = np.zeros(hidden, np.float32)
tensors["classifier.weight"] = (rng.standard_normal((1, hidden)) * 0.05).astype(np.float32)
tensors["classifier.bias"] = np.zeros(1, np.float32)
header, offset, blobs = {}, 0, []
for name, array in tensors.items():
    data = np.ascontiguousarray(array, dtype="<f4").tobytes()
    header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
    offset += len(data)
    blobs.append(data)
head = json.dumps(header).encode()
head += b" " * (-len(head) % 8)
(folder / "model.safetensors").write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))
config = json.loads((base / "config.json").read_text())
config.update(architectures=["BertForSequenceClassification"], id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
(folder / "config.json").write_text(json.dumps(config, indent=2))
for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
    if (base / name).exists():
        shutil.copy(base / name, folder / name)
docs = [json.loads(l) for _, l in zip(range(200), open(dataset / "corpus.jsonl"))]
passages = [" ".join(f"{d.get('title', '')} {d['text']}".split()) for d in docs if len(d["text"]) > 800]
(out / "passages.txt").write_text("\n".join(passages[:100]) + "\n")
claims = [json.loads(l)["text"] for _, l in zip(range(queries), open(dataset / "queries.jsonl"))]
(out / "queries.txt").write_text("\n".join(" ".join(c.split()) for c in claims) + "\n")
PY

cargo build "${flag[@]}" --quiet --workspace --example rerank_bench
echo "== rerank $candidates candidates per query (SciFact abstracts over 800 characters), $queries queries, $(nproc) cores"
"$dir/examples/rerank_bench" --model "$out/cross-encoder" --passages "$out/passages.txt" \
  --queries "$out/queries.txt" --candidates "$candidates"
"${ST_PYTHON:-python3}" bench/rerank_anchor.py "$out/cross-encoder" "$out/passages.txt" \
  "$out/queries.txt" "$candidates"
