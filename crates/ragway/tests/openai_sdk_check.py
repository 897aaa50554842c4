"""Drives ragway's OpenAI-compatible API with the official `openai` SDK and LangChain's
ChatOpenAI, the clients users point at it. Run by tests/openai_api.rs and tests/offline.rs.

Environment: as client_checks.py says, and
  FAKE_OPENAI_URL     the OpenAI fake behind the server (optional): a throttle is scripted on it
                      to check RateLimitError, using THROTTLED_MODEL (a model on that fake)
  CHAT_FAKE_URL       the fake behind CHAT_MODEL (optional): a tool call is scripted on it to
                      check tool calling; without it, tools must be refused (the local model)
  MAX_TOKENS          answer length cap (default 64)
  STRUCTURED          "0" when CHAT_MODEL cannot follow a JSON Schema: response_format must
                      then be refused with a 400 naming it (default "1")

Exits non-zero listing every mismatch.
"""

import base64
import json
import os
import struct
import sys
import urllib.request
from typing import Annotated

import openai
import pydantic
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI

from client_checks import EMBEDDING_MODEL, MODEL, QUESTION, STORE, URL, WORD, check, finish

FAKE_OPENAI_URL = os.environ.get("FAKE_OPENAI_URL")
THROTTLED_MODEL = os.environ.get("THROTTLED_MODEL", "gpt-4o")
CHAT_FAKE_URL = os.environ.get("CHAT_FAKE_URL")
MAX_TOKENS = int(os.environ.get("MAX_TOKENS", "64"))
STRUCTURED = os.environ.get("STRUCTURED", "1") == "1"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


# No retries: a scripted error must reach the check, not be retried away.
client = openai.OpenAI(base_url=f"{URL}/v1", api_key="unused", max_retries=0, timeout=120)


def check_chat():
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=MAX_TOKENS,
        temperature=0,
    )
    check(reply.object == "chat.completion", f"object {reply.object!r}")
    check(reply.model == MODEL, f"model {reply.model!r}")
    text = reply.choices[0].message.content
    check(isinstance(text, str) and text.strip(), f"answer text {text!r}")
    check(reply.choices[0].finish_reason in ("stop", "length"), "finish_reason")
    check(reply.usage.completion_tokens > 0, f"usage {reply.usage!r}")
    check(
        reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens,
        "usage total",
    )

    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=MAX_TOKENS,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    streamed = "".join(pieces)
    check(streamed.strip(), "streamed text is empty")
    check(finish in ("stop", "length"), f"streamed finish_reason {finish!r}")
    check(usage is not None and usage.completion_tokens > 0, f"streamed usage {usage!r}")
    check(streamed == text, f"streamed text {streamed!r} differs from whole answer {text!r}")


def check_grounded():
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=MAX_TOKENS,
        temperature=0,
        extra_body={"vector_search_type": STORE, "top_k": 2},
    )
    sources = (reply.model_extra or {}).get("sources")
    check(isinstance(sources, list) and sources, f"grounded answer has no sources: {reply!r}")
    if sources:
        check(WORD in sources[0]["text"], f"first source lacks {WORD!r}: {sources[0]!r}")
        check(isinstance(sources[0]["score"], float), "source score")
    check(reply.choices[0].message.content.strip(), "grounded answer is empty")

    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=MAX_TOKENS,
        stream=True,
        extra_body={"vector_search_type": STORE, "top_k": 2},
    )
    first = next(iter(stream))
    streamed_sources = (first.model_extra or {}).get("sources")
    check(
        isinstance(streamed_sources, list) and WORD in streamed_sources[0]["text"],
        f"first chunk sources {streamed_sources!r}",
    )
    rest = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    check(rest.strip(), "grounded stream has no text")


def check_models():
    ids = [m.id for m in client.models.list()]
    check(MODEL in ids, f"{MODEL} not in models.list(): {ids}")
    check(client.models.retrieve(MODEL).id == MODEL, "models.retrieve")


def check_embeddings():
    if not EMBEDDING_MODEL:
        return
    reply = client.embeddings.create(model=EMBEDDING_MODEL, input=["first text", "second text"])
    check(len(reply.data) == 2, f"{len(reply.data)} embeddings")
    vector = reply.data[0].embedding
    check(len(vector) > 0 and all(isinstance(x, float) for x in vector), "float embedding")
    # The SDK asks for base64 by default when numpy is around and decodes it; ask explicitly.
    raw = client.embeddings.with_raw_response.create(
        model=EMBEDDING_MODEL, input="first text", encoding_format="base64"
    )
    encoded = json.loads(raw.text)["data"][0]["embedding"]
    decoded = struct.unpack(f"<{len(vector)}f", base64.b64decode(encoded))
    check(
        max(abs(a - b) for a, b in zip(decoded, vector)) < 1e-6,
        "base64 embedding differs from the float one",
    )


def script_fake(base_url, command):
    request = urllib.request.Request(
        f"{base_url}/__fake/script",
        data=json.dumps(command).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).close()


def check_tools():
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    if not CHAT_FAKE_URL:
        try:
            client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
            check(False, "tools were not refused by a model that cannot call them")
        except openai.BadRequestError as err:
            check("tool" in str(err), f"tools refusal message {err}")
        return
    call = {"kind": "tool_call", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    script_fake(CHAT_FAKE_URL, call)
    reply = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    choice = reply.choices[0]
    check(choice.finish_reason == "tool_calls", f"tool finish_reason {choice.finish_reason!r}")
    calls = choice.message.tool_calls or []
    check(len(calls) == 1 and calls[0].function.name == "get_weather", f"tool calls {calls!r}")
    if calls:
        check(json.loads(calls[0].function.arguments) == {"city": "Paris"}, "tool arguments")
        follow_up = messages + [
            {"role": "assistant", "content": None, "tool_calls": [calls[0].model_dump()]},
            {"role": "tool", "tool_call_id": calls[0].id, "content": "18 degrees and sunny"},
        ]
        answer = client.chat.completions.create(model=MODEL, messages=follow_up, tools=[WEATHER_TOOL])
        check(answer.choices[0].message.content, "no answer after the tool result")

    script_fake(CHAT_FAKE_URL, call)
    stream = client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER_TOOL], tool_choice="required", stream=True
    )
    names, arguments, finish = [], "", None
    for chunk in stream:
        for choice in chunk.choices:
            for piece in choice.delta.tool_calls or []:
                if piece.function and piece.function.name:
                    names.append(piece.function.name)
                if piece.function and piece.function.arguments:
                    arguments += piece.function.arguments
            finish = choice.finish_reason or finish
    check(names == ["get_weather"], f"streamed tool names {names!r}")
    check(json.loads(arguments or "null") == {"city": "Paris"}, f"streamed arguments {arguments!r}")
    check(finish == "tool_calls", f"streamed tool finish_reason {finish!r}")


# Bounded, so that a small local model's answer ends within max_tokens: the grammar made
# from the schema keeps strings and lists to these lengths.
Short = Annotated[str, pydantic.StringConstraints(max_length=40)]


class Address(pydantic.BaseModel):
    city: Short
    country: Short


class Person(pydantic.BaseModel):
    name: Short
    born: int
    address: Address
    known_for: list[Short] = pydantic.Field(max_length=3)


def check_structured():
    """`response_format` through the SDK's own helper: a Pydantic model in, a parsed instance
    out; and `json_object` through the plain call."""
    messages = [
        {"role": "system", "content": "Answer in JSON."},
        {"role": "user", "content": "Describe Ada Lovelace: her name, the year she was born, "
         "where she lived, and what she is known for."},
    ]
    if not STRUCTURED:
        try:
            client.chat.completions.parse(model=MODEL, messages=messages, response_format=Person)
            check(False, "response_format was not refused by a model that cannot follow it")
        except openai.BadRequestError as err:
            check(MODEL in str(err) and "response_format" in str(err), f"refusal {err}")
        return
    # Enough room for the whole object: a cut answer is not the JSON asked for.
    reply = client.beta.chat.completions.parse(
        model=MODEL, messages=messages, response_format=Person, max_tokens=512, temperature=0
    )
    person = reply.choices[0].message.parsed
    check(isinstance(person, Person), f"parsed {person!r} from {reply.choices[0].message.content!r}")
    if isinstance(person, Person):
        check(isinstance(person.address, Address), f"nested address {person.address!r}")
    if not CHAT_FAKE_URL:
        # Any object is an unbounded grammar: a small local model can write on until
        # max_tokens. The local model is held to schemas (above), which bound it.
        return
    short = [{"role": "user", "content": 'Reply in JSON: an object whose one key, "capital", '
              "holds the capital of France."}]
    reply = client.chat.completions.create(
        model=MODEL,
        messages=short,
        response_format={"type": "json_object"},
        max_tokens=512,
        temperature=0,
    )
    text = reply.choices[0].message.content
    try:
        check(isinstance(json.loads(text), dict), f"json_object answer {text!r}")
    except ValueError:
        check(False, f"json_object answer is not JSON: {text!r}")


def check_errors():
    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        check(False, "unknown model did not raise")
    except openai.NotFoundError as err:
        check(err.code == "model_not_found", f"NotFoundError code {err.code!r}")
    try:
        client.chat.completions.create(model=MODEL, messages=[])
        check(False, "empty messages did not raise")
    except openai.BadRequestError as err:
        check(err.param == "messages", f"BadRequestError param {err.param!r}")
    if FAKE_OPENAI_URL:
        command = {"kind": "error", "status": 429, "error": "rate_limit_exceeded", "message": "slow down"}
        script_fake(FAKE_OPENAI_URL, command)
        try:
            client.chat.completions.create(
                model=THROTTLED_MODEL, messages=[{"role": "user", "content": "x"}]
            )
            check(False, "a throttled upstream did not raise")
        except openai.RateLimitError as err:
            check("slow down" in str(err), f"RateLimitError message {err}")


def check_langchain():
    chat = ChatOpenAI(
        model=MODEL, base_url=f"{URL}/v1", api_key="unused", max_retries=0, max_tokens=MAX_TOKENS,
        temperature=0,
    )
    answer = chat.invoke([HumanMessage(content="Say hello.")])
    check(isinstance(answer.content, str) and answer.content.strip(), f"LangChain answer {answer!r}")
    streamed = "".join(chunk.content for chunk in chat.stream([HumanMessage(content="Say hello.")]))
    check(streamed.strip(), "LangChain stream is empty")


def main():
    print(f"openai {openai.__version__} against {URL} with {MODEL}")
    check_chat()
    check_grounded()
    check_models()
    check_embeddings()
    check_tools()
    check_structured()
    check_errors()
    check_langchain()
    return finish("openai SDK")


if __name__ == "__main__":
    sys.exit(main())
