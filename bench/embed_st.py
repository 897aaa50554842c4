"""The anchor for bench/embedding.sh: sentence-transformers itself on the same model folder and
texts as ragway's local embedder, printing the same figures (query latency, batch throughput).

usage: embed_st.py MODEL_DIR TEXTS_FILE [QUERIES] [BATCH]

Needs sentence-transformers (and torch); runs offline from the model folder."""

import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

model_dir, texts_path = sys.argv[1], sys.argv[2]
queries = int(sys.argv[3]) if len(sys.argv) > 3 else 200
batch = int(sys.argv[4]) if len(sys.argv) > 4 else 32
with open(texts_path, encoding="utf-8") as f:
    texts = [line.strip() for line in f if line.strip()]
model = SentenceTransformer(model_dir, device="cpu")
model.max_seq_length = 256
query = "How does a qubit differ from a classical bit?"
label = "sentence-transformers"

for _ in range(10):
    model.encode([query], normalize_embeddings=True)
times = []
for _ in range(queries):
    started = time.perf_counter()
    model.encode([query], normalize_embeddings=True)
    times.append(time.perf_counter() - started)
times.sort()
pick = lambda q: times[round((len(times) - 1) * q)] * 1e3  # noqa: E731
print(f"{label:<28} query p50 {pick(0.5):>7.2f} ms  p99 {pick(0.99):>7.2f} ms")

model.encode(texts[:batch], batch_size=batch, normalize_embeddings=True)
started = time.perf_counter()
model.encode(texts, batch_size=batch, normalize_embeddings=True)
seconds = time.perf_counter() - started
print(f"{label:<28} {len(texts)} chunks (batches of {batch}) {len(texts) / seconds:>7.1f} chunks/s")
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
