"""trec_eval's figures for a run, through pytrec_eval (trec_eval's own C code), for
crates/ragway/tests/eval.rs to hold `ragway eval`'s figures against.

    python3 eval_check.py QRELS_TSV RUN_FILE [TAG]

With TAG, only the run's lines of that tag (the last column) are read.

Prints JSON: the mean over the judged queries (a query without results counts 0, as with
`trec_eval -c`) of ndcg_cut_10, recall_10, recall_100, map, and recip_rank over each query's
top 10 (MRR@10).
"""
import json
import sys

import pytrec_eval

qrels_path, run_path = sys.argv[1], sys.argv[2]
tag = sys.argv[3] if len(sys.argv) > 3 else None

qrels = {}
with open(qrels_path) as f:
    for n, line in enumerate(f):
        fields = line.rstrip("\r\n").split("\t")
        if n == 0 and fields[0] == "query-id":
            continue
        query, document, relevance = fields
        qrels.setdefault(query, {})[document] = int(relevance)

run = {}
ranks = {}
with open(run_path) as f:
    for line in f:
        query, _, document, rank, score, line_tag = line.split()
        if tag is not None and line_tag != tag:
            continue
        run.setdefault(query, {})[document] = float(score)
        ranks.setdefault(query, {})[document] = int(rank)

# The top 10 of each query by the ranks written, which follow trec_eval's order.
top10 = {q: {d: s for d, s in docs.items() if ranks[q][d] <= 10} for q, docs in run.items()}

full = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.10,100", "map"}).evaluate(run)
cut = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)


def mean(results, measure):
    return sum(results.get(q, {}).get(measure, 0.0) for q in qrels) / len(qrels)


print(json.dumps({
    "ndcg@10": mean(full, "ndcg_cut_10"),
    "recall@10": mean(full, "recall_10"),
    "recall@100": mean(full, "recall_100"),
    "map": mean(full, "map"),
    "mrr@10": mean(cut, "recip_rank"),
    "queries_with_results": len(full),
}))
