"""The anchor for bench/pgvector.sh: ragway's search statement sent straight to Postgres by a
Python client (pg8000), one query at a time, on a session set up as ragway's pool sets up its
own (hnsw.ef_search, iterative scans); and with --recall Q, the HNSW recall@10 of that
statement over the first Q queries against exact search: the same statement with index scans
off, so Postgres compares the query with every row.

The vectors go as pgvector's text form, made before the clock starts (ragway makes its binary
float4[] inside its timed path), so the anchor is if anything the faster side.

usage: pg_direct.py PORT VECTORS.f32 DIM K EF_SEARCH [--repeat R] [--recall Q] [--label L]
  VECTORS.f32 holds the query vectors (little-endian f32); with --repeat, the first vector
  alone is sent R times (the embedding of the query POST /search was timed with)."""

import argparse
import time

import numpy as np
import pg8000.native

SCHEMA = "ragway_bench"
# ragway's own statement (crates/ragway-retrieval/src/pgvector/mod.rs, Queries::new) for the
# inner-product metric, but for the vector's cast: text here, float4[] there.
SEARCH = f"""SELECT c.document_id, c.position, c.text, d.title, d.uri, d.metadata,
                    c.embedding <#> :v::vector AS distance
             FROM {SCHEMA}.chunks c JOIN {SCHEMA}.documents d ON d.id = c.document_id
             ORDER BY distance LIMIT :k"""

parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("vectors")
parser.add_argument("dim", type=int)
parser.add_argument("k", type=int)
parser.add_argument("ef_search", type=int)
parser.add_argument("--repeat", type=int)
parser.add_argument("--recall", type=int)
parser.add_argument("--label", default="Python pg8000, same SQL")
args = parser.parse_args()

vectors = np.fromfile(args.vectors, dtype="<f4").reshape(-1, args.dim)
if args.repeat:
    vectors = np.repeat(vectors[:1], args.repeat, axis=0)
texts = ["[" + ",".join(repr(float(x)) for x in v) + "]" for v in vectors]

con = pg8000.native.Connection("ragway", host="127.0.0.1", port=args.port, database="postgres")
con.run(f"SET hnsw.ef_search = {int(args.ef_search)}")
con.run("SET hnsw.iterative_scan = strict_order")
search = con.prepare(SEARCH)
for text in texts[:50]:
    search.run(v=text, k=args.k)

times = []
start = time.perf_counter()
for text in texts:
    t = time.perf_counter()
    rows = search.run(v=text, k=args.k)
    times.append(time.perf_counter() - t)
    assert len(rows) == args.k, rows
wall = time.perf_counter() - start
times.sort()
p = lambda x: times[round((len(times) - 1) * x)] * 1e3  # noqa: E731
print(
    f"{args.label:<34} p50 {p(0.5):>8.3f} ms  p99 {p(0.99):>8.3f} ms  "
    f"mean {sum(times) / len(times) * 1e3:>8.3f} ms  {len(times) / wall:>9.1f} QPS"
)

if args.recall:
    found = 0
    sample = texts[: args.recall]
    for text in sample:
        ids = lambda rows: {row[0] for row in rows}  # noqa: E731
        approx = ids(search.run(v=text, k=10))
        con.run("BEGIN")
        con.run("SET LOCAL enable_indexscan = off")
        exact = ids(search.run(v=text, k=10))
        con.run("COMMIT")
        found += len(approx & exact)
    print(
        f"pgvector HNSW recall@10 vs exact SQL (ef_search {args.ef_search}, "
        f"{len(sample)} queries): {found / (10 * len(sample)):.3f}"
    )
version = con.run("SELECT extversion FROM pg_extension WHERE extname = 'vector'")[0][0]
server = con.run("SHOW server_version")[0][0]
print(f"PostgreSQL {server}, pgvector {version}, pg8000 {pg8000.__version__}")
con.close()
