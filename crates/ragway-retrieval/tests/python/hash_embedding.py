"""The deterministic test embedding, identical to HashEmbedder in tests/integration/support.rs:
a bag of words hashed (FNV-1a, 64 bits) into 384 signed buckets."""

import re

DIMENSION = 384


def fnv1a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def embed(text: str, dimension: int = DIMENSION) -> list[float]:
    vector = [0.0] * dimension
    for word in re.split(r"[^A-Za-z0-9]+", text):
        if not word:
            continue
        h = fnv1a(word.lower().encode())
        vector[h % dimension] += -1.0 if h >> 63 else 1.0
    return vector
