"""Builds a LangChain FAISS folder (index.faiss + index.pkl) with the test hash embedding, and
records LangChain's own search results.

usage: langchain_make.py OUT_DIR
Writes OUT_DIR/lc/ and OUT_DIR/expected.json: {query: [[doc id, score], ...]}."""

import json
import os
import sys

from langchain_community.vectorstores import FAISS
from langchain_core.embeddings import Embeddings

sys.path.insert(0, os.path.dirname(__file__))
from hash_embedding import embed  # noqa: E402


class HashEmbeddings(Embeddings):
    def embed_documents(self, texts):
        return [embed(t) for t in texts]

    def embed_query(self, text):
        return embed(text)


out = sys.argv[1]
animals = ["otter", "heron", "lynx", "badger", "falcon", "walrus", "gecko", "bison"]
texts, metadatas, ids = [], [], []
for i, animal in enumerate(animals):
    for j in range(3):
        texts.append(f"The {animal} note number {j}: {animal} habitat, diet and {animal} facts.")
        metadatas.append({"animal": animal, "part": j, "source": f"notes/{animal}.md"})
        ids.append(f"{animal}-{j}")
store = FAISS.from_texts(texts, HashEmbeddings(), metadatas=metadatas, ids=ids)
store.save_local(os.path.join(out, "lc"))

expected = {}
for query in ["otter habitat", "falcon diet facts", "walrus note number 2", "gecko"]:
    found = store.similarity_search_with_score(query, k=4)
    expected[query] = [[doc.id, float(score)] for doc, score in found]
with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump(expected, f)
