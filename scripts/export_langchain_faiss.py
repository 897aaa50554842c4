#!/usr/bin/env python3
"""Exports a LangChain FAISS folder's documents as JSON Lines for `ragway ingest --from-faiss`.

LangChain's FAISS vector store saves two files: `index.faiss` (the vectors, readable by ragway)
and `index.pkl` (a pickle of its docstore and of the map from vector position to docstore id).
This script writes one JSON line per vector position, in position order:

    {"id": "<docstore id>", "text": "<page_content>", "metadata": {...}}

plus "title" and "uri" when the metadata has a string "title" or "source". Then:

    ragway ingest --store NAME --from-faiss FOLDER/index.faiss --docs docs.jsonl

usage: export_langchain_faiss.py FOLDER [OUT.jsonl] [--index-name NAME]

Reading a pickle runs code from it: only export folders you (or LangChain on your behalf)
wrote. Needs `langchain-community` (for the pickled classes); FAISS itself is not needed.
"""

import argparse
import json
import os
import pickle
import sys


def export(folder: str, out, index_name: str = "index") -> int:
    with open(os.path.join(folder, f"{index_name}.pkl"), "rb") as f:
        docstore, index_to_docstore_id = pickle.load(f)
    positions = sorted(index_to_docstore_id)
    if positions != list(range(len(positions))):
        raise SystemExit(
            f"{folder}: vector positions are not 0..{len(positions) - 1}; was the index edited?"
        )
    for position in positions:
        doc_id = index_to_docstore_id[position]
        doc = docstore.search(doc_id)
        if isinstance(doc, str):  # InMemoryDocstore answers a message when the id is missing
            raise SystemExit(f"{folder}: position {position}: {doc}")
        metadata = dict(doc.metadata or {})
        line = {"id": str(doc_id), "text": doc.page_content, "metadata": metadata}
        if isinstance(metadata.get("title"), str):
            line["title"] = metadata["title"]
        if isinstance(metadata.get("source"), str):
            line["uri"] = metadata["source"]
        out.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
    return len(positions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="the folder LangChain's save_local wrote")
    parser.add_argument("out", nargs="?", help="output file (default: standard output)")
    parser.add_argument("--index-name", default="index", help="save_local's index_name")
    args = parser.parse_args()
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            n = export(args.folder, out, args.index_name)
        print(f"wrote {n} documents to {args.out}", file=sys.stderr)
    else:
        export(args.folder, sys.stdout, args.index_name)


if __name__ == "__main__":
    main()
