"""The anchor of bench/rerank.sh: the same cross-encoder scoring the same query-passage pairs
outside ragway, one call per query, printed in rerank_bench's layout.

    rerank_anchor.py MODEL_DIR PASSAGES QUERIES CANDIDATES

With sentence-transformers importable, its CrossEncoder (PyTorch) scores them; otherwise BERT in
NumPy (float32, the pairs padded to the longest, attention masked), with Hugging Face's
`tokenizers` cutting each pair to 512 tokens, the longer text first, as ragway does.
"""

import json
import math
import struct
import sys
import time
from pathlib import Path

import numpy as np


def lines(path):
    return [l for l in Path(path).read_text().splitlines() if l.strip()]


def load_safetensors(path):
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__" or meta["dtype"] != "F32":
            continue
        start, end = meta["data_offsets"]
        tensors[name] = np.frombuffer(data[start:end], dtype="<f4").reshape(meta["shape"])
    return tensors


class NumpyCrossEncoder:
    def __init__(self, folder):
        from tokenizers import Tokenizer
        from scipy.special import erf

        self.erf = erf
        self.config = json.loads((folder / "config.json").read_text())
        self.t = {k.removeprefix("bert."): v for k, v in load_safetensors(folder / "model.safetensors").items()}
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=512, strategy="longest_first")
        self.tokenizer.enable_padding()

    def dense(self, name, x):
        return x @ self.t[name + ".weight"].T + self.t[name + ".bias"]

    def norm(self, name, x):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self.config["layer_norm_eps"]) * self.t[name + ".weight"] + self.t[name + ".bias"]

    def predict(self, pairs):
        encodings = self.tokenizer.encode_batch(pairs)
        ids = np.array([e.ids for e in encodings])
        types = np.array([e.type_ids for e in encodings])
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        t, heads = self.t, self.config["num_attention_heads"]
        x = t["embeddings.word_embeddings.weight"][ids] + t["embeddings.position_embeddings.weight"][np.arange(ids.shape[1])] + t["embeddings.token_type_embeddings.weight"][types]
        x = self.norm("embeddings.LayerNorm", x)
        batch, length, hidden = x.shape
        size = hidden // heads
        bias = (1.0 - mask)[:, None, None, :] * -1e4
        for i in range(self.config["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            q, k, v = (self.dense(p + f"attention.self.{n}", x).reshape(batch, length, heads, size).transpose(0, 2, 1, 3) for n in ("query", "key", "value"))
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(size) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            context = (scores / scores.sum(-1, keepdims=True)) @ v
            context = context.transpose(0, 2, 1, 3).reshape(batch, length, hidden)
            x = self.norm(p + "attention.output.LayerNorm", self.dense(p + "attention.output.dense", context) + x)
            inner = self.dense(p + "intermediate.dense", x)
            inner = 0.5 * inner * (1 + self.erf(inner / math.sqrt(2)))
            x = self.norm(p + "output.LayerNorm", self.dense(p + "output.dense", inner) + x)
        pooled = np.tanh(self.dense("pooler.dense", x[:, 0]))
        return self.dense("classifier", pooled)[:, 0]


def main():
    folder, passages, queries, candidates = Path(sys.argv[1]), lines(sys.argv[2]), lines(sys.argv[3]), int(sys.argv[4])
    passages = passages[:candidates]
    try:
        from sentence_transformers import CrossEncoder

        model, name = CrossEncoder(str(folder), max_length=512, device="cpu"), "sentence-transformers CrossEncoder"
    except ImportError:
        model, name = NumpyCrossEncoder(folder), "NumPy BERT (float32, batched)"
    for query in queries[:3]:
        model.predict([(query, p) for p in passages])
    times = []
    for query in queries:
        started = time.perf_counter()
        model.predict([(query, p) for p in passages])
        times.append(time.perf_counter() - started)
    times.sort()
    pick = lambda q: times[round((len(times) - 1) * q)] * 1e3
    print(f"{name:<34} {len(passages)} candidates  p50 {pick(0.5):>7.1f} ms  p99 {pick(0.99):>7.1f} ms")


if __name__ == "__main__":
    main()
