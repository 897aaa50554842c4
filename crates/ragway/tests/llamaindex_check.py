"""Drives ragway's OpenAI-compatible API with LlamaIndex (`OpenAILike` for chat and completion,
`OpenAIEmbedding` for embeddings), the way its users point it at an OpenAI-compatible base URL.
Run by tests/openai_api.rs with the Python of its own virtualenv (LlamaIndex pins `openai<3`,
the SDK check pins the newest `openai`; scripts/install-deps.sh makes both).

Environment: as client_checks.py says (EMBEDDING_MODEL is needed here).

Exits non-zero listing every mismatch.
"""

import sys
from importlib.metadata import version

import openai
from llama_index.core.llms import ChatMessage
from llama_index.embeddings.openai import OpenAIEmbedding
from llama_index.llms.openai_like import OpenAILike

from client_checks import EMBEDDING_MODEL, MODEL, QUESTION, STORE, URL, WORD, check, finish


def llm(model=MODEL, **extra):
    # No retries: an error must reach the check, not be retried away.
    return OpenAILike(
        model=model, api_base=f"{URL}/v1", api_key="unused", is_chat_model=True,
        context_window=8000, max_tokens=64, temperature=0, max_retries=0, timeout=120, **extra,
    )


def check_chat():
    question = [ChatMessage(role="user", content="Say hello.")]
    reply = llm().chat(question)
    text = reply.message.content
    check(isinstance(text, str) and text.strip(), f"chat answer {text!r}")
    check(reply.raw.model == MODEL, f"chat model {reply.raw.model!r}")
    check(reply.raw.usage.completion_tokens > 0, f"chat usage {reply.raw.usage!r}")

    streamed = "".join(piece.delta or "" for piece in llm().stream_chat(question))
    check(streamed == text, f"stream_chat {streamed!r} differs from chat {text!r}")

    completed = llm().complete("Say hello.").text
    check(completed.strip(), f"complete answer {completed!r}")


def check_grounded():
    grounded = llm(additional_kwargs={"extra_body": {"vector_search_type": STORE, "top_k": 2}})
    reply = grounded.chat([ChatMessage(role="user", content=QUESTION)])
    sources = (reply.raw.model_extra or {}).get("sources")
    check(isinstance(sources, list) and sources, f"grounded answer has no sources: {reply.raw!r}")
    if sources:
        check(WORD in sources[0]["text"], f"first source lacks {WORD!r}: {sources[0]!r}")
    check(reply.message.content.strip(), "grounded answer is empty")


def check_embeddings():
    embedder = OpenAIEmbedding(
        model_name=EMBEDDING_MODEL, api_base=f"{URL}/v1", api_key="unused", max_retries=0,
    )
    one = embedder.get_query_embedding("What is a qubit?")
    check(isinstance(one, list) and len(one) > 0, f"query embedding {one!r}")
    many = embedder.get_text_embedding_batch(["first text", "second text", "third text"])
    check(len(many) == 3 and all(len(v) == len(one) for v in many), "batch embeddings' shape")
    check(many[0] != many[1], "different texts got the same vector")


def check_errors():
    try:
        llm(model="no-such-model").chat([ChatMessage(role="user", content="Hi")])
        check(False, "an unknown model did not raise")
    except openai.NotFoundError as err:
        check("no-such-model" in str(err), f"NotFoundError message {err}")


def main():
    print(f"llama-index-core {version('llama-index-core')}, openai {openai.__version__} "
          f"against {URL} with {MODEL}")
    check_chat()
    check_grounded()
    check_embeddings()
    check_errors()
    return finish("LlamaIndex")


if __name__ == "__main__":
    sys.exit(main())
