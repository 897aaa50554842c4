"""HNSW recall for bench/retrieval.sh: the share of the exact top-K (the flat index) that the
HNSW index finds for the same queries. Both stores were filled with the same vectors in the same
order, so their ids agree.

usage: recall.py FLAT_INDEX HNSW_INDEX QUERIES.f32 K [EF_SEARCH]"""

import sys

import faiss
import numpy as np

flat_path, hnsw_path, queries_path, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ef = int(sys.argv[5]) if len(sys.argv) > 5 else 64
flat, hnsw = faiss.read_index(flat_path), faiss.read_index(hnsw_path)
faiss.ParameterSpace().set_index_parameter(hnsw, "efSearch", ef)
queries = np.fromfile(queries_path, dtype="<f4").reshape(-1, flat.d)
_, exact = flat.search(queries, k)
_, approx = hnsw.search(queries, k)
found = sum(len(set(e) & set(a)) for e, a in zip(exact, approx))
print(f"HNSW recall@{k} vs flat (efSearch {ef}, {len(queries)} queries): {found / exact.size:.3f}")
