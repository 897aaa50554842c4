"""Searches an index file with Python's FAISS and prints the result as JSON.

usage: faiss_search.py INDEX QUERIES.f32 K
QUERIES.f32 holds little-endian float32 vectors back to back."""

import json
import sys

import faiss
import numpy as np

index_path, queries_path, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
index = faiss.read_index(index_path)
queries = np.fromfile(queries_path, dtype="<f4").reshape(-1, index.d)
distances, labels = index.search(queries, k)
print(
    json.dumps(
        {
            "class": type(index).__name__,
            "ntotal": int(index.ntotal),
            "d": int(index.d),
            "metric": "inner_product" if index.metric_type == faiss.METRIC_INNER_PRODUCT else "l2",
            "labels": labels.tolist(),
            "distances": distances.tolist(),
        }
    )
)
