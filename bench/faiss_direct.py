"""The anchor for bench/retrieval.sh: the same index file searched directly by Python's FAISS,
one query at a time (latency) and all queries in one call (throughput of batched search).

usage: faiss_direct.py INDEX QUERIES.f32 K [EF_SEARCH]"""

import sys
import time

import faiss
import numpy as np

index_path, queries_path, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
index = faiss.read_index(index_path)
if len(sys.argv) > 4:
    try:
        faiss.ParameterSpace().set_index_parameter(index, "efSearch", int(sys.argv[4]))
    except RuntimeError:
        pass  # not an HNSW index
queries = np.fromfile(queries_path, dtype="<f4").reshape(-1, index.d)
for q in queries[:50]:
    index.search(q[None, :], k)

times = []
start = time.perf_counter()
for q in queries:
    t = time.perf_counter()
    index.search(q[None, :], k)
    times.append(time.perf_counter() - t)
wall = time.perf_counter() - start
times.sort()
p = lambda x: times[round((len(times) - 1) * x)] * 1e3  # noqa: E731
print(
    f"{'Python faiss, 1 query per call':<34} p50 {p(0.5):>8.3f} ms  p99 {p(0.99):>8.3f} ms  "
    f"mean {sum(times) / len(times) * 1e3:>8.3f} ms  {len(times) / wall:>9.1f} QPS"
)
start = time.perf_counter()
index.search(queries, k)
wall = time.perf_counter() - start
print(
    f"{'Python faiss, batch of ' + str(len(queries)):<34} {'':>48}{len(queries) / wall:>9.1f} QPS"
)
print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads")
