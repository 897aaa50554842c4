"""An independent reference for ragway's local reranker: writes a small BERT cross-encoder
(random weights, Hugging Face's BertForSequenceClassification layout and names, one label)
into a folder, then scores query-passage pairs with the `tokenizers` package and BERT written
out in NumPy. ragway's scores for the same folder and pairs must match.

    cross_encoder_reference.py OUT_DIR TOKENIZER_JSON PAIRS_JSON MAX_TOKENS

PAIRS_JSON: [[query, passage], ...]. Prints [{"ids": [...], "types": [...], "score": x}, ...].
"""

import json
import math
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

HIDDEN, HEADS, LAYERS, INTERMEDIATE, POSITIONS, EPS = 32, 4, 2, 64, 512, 1e-12


def make_weights(vocab):
    rng = np.random.default_rng(7)
    w = lambda *shape: (rng.standard_normal(shape) * 0.2).astype(np.float32)
    t = {
        "bert.embeddings.word_embeddings.weight": w(vocab, HIDDEN),
        "bert.embeddings.position_embeddings.weight": w(POSITIONS, HIDDEN),
        "bert.embeddings.token_type_embeddings.weight": w(2, HIDDEN),
        "bert.embeddings.LayerNorm.weight": 1 + w(HIDDEN),
        "bert.embeddings.LayerNorm.bias": w(HIDDEN),
        "bert.pooler.dense.weight": w(HIDDEN, HIDDEN),
        "bert.pooler.dense.bias": w(HIDDEN),
        "classifier.weight": w(1, HIDDEN),
        "classifier.bias": w(1),
    }
    for i in range(LAYERS):
        p = f"bert.encoder.layer.{i}."
        for name, (outs, ins) in {
            "attention.self.query": (HIDDEN, HIDDEN),
            "attention.self.key": (HIDDEN, HIDDEN),
            "attention.self.value": (HIDDEN, HIDDEN),
            "attention.output.dense": (HIDDEN, HIDDEN),
            "intermediate.dense": (INTERMEDIATE, HIDDEN),
            "output.dense": (HIDDEN, INTERMEDIATE),
        }.items():
            t[p + name + ".weight"] = w(outs, ins)
            t[p + name + ".bias"] = w(outs)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            t[p + norm + ".weight"] = 1 + w(HIDDEN)
            t[p + norm + ".bias"] = w(HIDDEN)
    return t


def save_safetensors(tensors, path):
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def layer_norm(x, weight, bias):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * weight + bias


def gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def score(t, ids, types):
    x = (t["bert.embeddings.word_embeddings.weight"][ids]
         + t["bert.embeddings.position_embeddings.weight"][np.arange(len(ids))]
         + t["bert.embeddings.token_type_embeddings.weight"][types]).astype(np.float64)
    x = layer_norm(x, t["bert.embeddings.LayerNorm.weight"], t["bert.embeddings.LayerNorm.bias"])
    dense = lambda name, v: v @ t[name + ".weight"].T.astype(np.float64) + t[name + ".bias"]
    head = HIDDEN // HEADS
    for i in range(LAYERS):
        p = f"bert.encoder.layer.{i}."
        q, k, v = (dense(p + f"attention.self.{n}", x) for n in ("query", "key", "value"))
        context = np.zeros_like(x)
        for h in range(HEADS):
            s = slice(h * head, (h + 1) * head)
            scores = q[:, s] @ k[:, s].T / math.sqrt(head)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            context[:, s] = (scores / scores.sum(-1, keepdims=True)) @ v[:, s]
        x = layer_norm(dense(p + "attention.output.dense", context) + x,
                       t[p + "attention.output.LayerNorm.weight"], t[p + "attention.output.LayerNorm.bias"])
        inner = gelu(dense(p + "intermediate.dense", x))
        x = layer_norm(dense(p + "output.dense", inner) + x,
                       t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"])
    pooled = np.tanh(dense("bert.pooler.dense", x[0]))
    return float(dense("classifier", pooled)[0])


def main():
    out, tokenizer_json, pairs_json, max_tokens = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    tokenizer = Tokenizer.from_file(tokenizer_json)
    tokenizer.enable_truncation(max_length=max_tokens, strategy="longest_first")
    tokenizer.no_padding()
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    tensors = make_weights(vocab)
    out.mkdir(parents=True, exist_ok=True)
    save_safetensors(tensors, out / "model.safetensors")
    shutil.copy(tokenizer_json, out / "tokenizer.json")
    (out / "config.json").write_text(json.dumps({
        "architectures": ["BertForSequenceClassification"], "model_type": "bert",
        "vocab_size": vocab, "hidden_size": HIDDEN, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "intermediate_size": INTERMEDIATE, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": POSITIONS, "type_vocab_size": 2, "initializer_range": 0.02,
        "layer_norm_eps": EPS, "pad_token_id": 0, "position_embedding_type": "absolute",
        "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0},
    }))
    results = []
    for query, passage in json.loads(Path(pairs_json).read_text()):
        encoding = tokenizer.encode(query, passage)
        results.append({"ids": encoding.ids, "types": encoding.type_ids,
                         "score": score(tensors, np.array(encoding.ids), np.array(encoding.type_ids))})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
