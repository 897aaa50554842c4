"""What the client checks (openai_sdk_check.py, llamaindex_check.py) share: the server and the
names they are given, and how they report. Imported from the checks' own folder.

Environment:
  RAGWAY_URL          the server under test
  CHAT_MODEL          a configured chat model
  STORE               a store to ground answers in (vector_search_type through extra_body)
  GROUNDED_QUESTION   a question the store answers; GROUNDED_WORD must be in its first source
  EMBEDDING_MODEL     a configured embedder (optional for the SDK check)
"""

import os
import sys

URL = os.environ["RAGWAY_URL"]
MODEL = os.environ["CHAT_MODEL"]
STORE = os.environ["STORE"]
QUESTION = os.environ["GROUNDED_QUESTION"]
WORD = os.environ["GROUNDED_WORD"]
EMBEDDING_MODEL = os.environ.get("EMBEDDING_MODEL")

failures = []


def check(condition, what):
    """Notes a mismatch (and prints it at once) instead of stopping at the first."""
    if not condition:
        failures.append(what)
        print(f"MISMATCH: {what}", file=sys.stderr)


def finish(name):
    """The exit status: 1 listing the mismatches, else 0 after "NAME check passed"."""
    if failures:
        print(f"{len(failures)} mismatches", file=sys.stderr)
        return 1
    print(f"{name} check passed")
    return 0
