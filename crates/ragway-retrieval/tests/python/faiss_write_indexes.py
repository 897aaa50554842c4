"""Writes one index file per supported type (flat, HNSW-flat, IVF-flat; L2 and inner product;
bare, IndexIDMap and IndexIDMap2) plus the data, queries and Python's own search results.

usage: faiss_write_indexes.py OUT_DIR
Writes OUT_DIR/<name>.faiss, base.f32, queries.f32 and expected.json:
{"d", "k", "indexes": {name: {"type", "id_map", "metric", "ids", "labels", "distances"}}}."""

import json
import os
import sys

import faiss
import numpy as np

out = sys.argv[1]
d, nb, nq, k = 32, 1500, 25, 5
rng = np.random.default_rng(1234)
base = rng.standard_normal((nb, d)).astype("float32")
queries = rng.standard_normal((nq, d)).astype("float32")
base.tofile(os.path.join(out, "base.f32"))
queries.tofile(os.path.join(out, "queries.f32"))
ids = (1000 + 7 * np.arange(nb)).astype("int64")


def make(kind, metric):
    if kind == "flat":
        return faiss.IndexFlatL2(d) if metric == faiss.METRIC_L2 else faiss.IndexFlatIP(d)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, 16, metric)
        index.hnsw.efSearch = 48
        return index
    quantizer = faiss.IndexFlatL2(d) if metric == faiss.METRIC_L2 else faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, 16, metric)
    index.train(base)
    index.nprobe = 4
    return index


expected = {"d": d, "k": k, "indexes": {}}
for kind in ["flat", "hnsw", "ivf_flat"]:
    for metric_name, metric in [("l2", faiss.METRIC_L2), ("inner_product", faiss.METRIC_INNER_PRODUCT)]:
        for wrapper in ["bare", "idmap", "idmap2"]:
            inner = make(kind, metric)
            if wrapper == "bare":
                index = inner
                index.add(base)
                labels_of = np.arange(nb)
            else:
                index = faiss.IndexIDMap(inner) if wrapper == "idmap" else faiss.IndexIDMap2(inner)
                index.add_with_ids(base, ids)
                labels_of = ids
            name = f"{kind}_{metric_name}_{wrapper}"
            path = os.path.join(out, name + ".faiss")
            faiss.write_index(index, path)
            loaded = faiss.read_index(path)
            distances, labels = loaded.search(queries, k)
            expected["indexes"][name] = {
                "type": kind,
                "id_map": wrapper != "bare",
                "metric": metric_name,
                "ids": labels_of.tolist(),
                "labels": labels.tolist(),
                "distances": distances.tolist(),
            }

with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump(expected, f)
