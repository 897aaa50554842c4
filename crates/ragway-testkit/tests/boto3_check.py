"""Drives the Bedrock Runtime, Bedrock Agent Runtime and Kendra fakes with boto3, to prove they
speak the real wire format.

Run by tests/boto3.rs with BEDROCK_URL, KENDRA_URL and BEDROCK_AGENT_URL set; exits non-zero listing
every mismatch.
"""

import json
import os
import sys
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError

BEDROCK_URL = os.environ["BEDROCK_URL"]
KENDRA_URL = os.environ["KENDRA_URL"]
BEDROCK_AGENT_URL = os.environ["BEDROCK_AGENT_URL"]
MODEL = "us.anthropic.claude-3-opus-20240229-v1:0"
EXPECTED_TEXT = f"ragway fake answer from {MODEL}."
TITAN_EMBED = "amazon.titan-embed-text-v2:0"
# One attempt: botocore would otherwise retry a scripted throttle and hide it.
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})
SYSTEM = [{"text": "Answer briefly."}]
MESSAGES = [{"role": "user", "content": [{"text": "What is a qubit?"}]}]

failures = []


def check(condition, what):
    if not condition:
        failures.append(what)
        print(f"MISMATCH: {what}", file=sys.stderr)


def script(base_url, command):
    """Queues a scripted behaviour for the fake's next request."""
    request = urllib.request.Request(
        f"{base_url}/__fake/script",
        data=json.dumps(command).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 200:
            raise RuntimeError(f"scripting {base_url} failed: {response.status}")


def check_bedrock():
    bedrock = boto3.client("bedrock-runtime", endpoint_url=BEDROCK_URL, config=NO_RETRIES)

    # Converse
    reply = bedrock.converse(
        modelId=MODEL, system=SYSTEM, messages=MESSAGES, inferenceConfig={"maxTokens": 256}
    )
    text = reply["output"]["message"]["content"][0]["text"]
    check(text == EXPECTED_TEXT, f"converse text {text!r} != {EXPECTED_TEXT!r}")
    check(reply["output"]["message"]["role"] == "assistant", "converse role")
    check(reply["stopReason"] == "end_turn", f"converse stopReason {reply['stopReason']!r}")
    usage = reply["usage"]
    check(
        (usage["inputTokens"], usage["outputTokens"], usage["totalTokens"]) == (6, 5, 11),
        f"converse usage {usage!r}",
    )
    check(isinstance(reply["metrics"]["latencyMs"], int), "converse metrics.latencyMs")

    # Converse with maxTokens below the answer length
    reply = bedrock.converse(modelId=MODEL, messages=MESSAGES, inferenceConfig={"maxTokens": 2})
    text = reply["output"]["message"]["content"][0]["text"]
    check(text == "ragway fake", f"truncated text {text!r}")
    check(reply["stopReason"] == "max_tokens", f"truncated stopReason {reply['stopReason']!r}")

    # ConverseStream
    reply = bedrock.converse_stream(modelId=MODEL, system=SYSTEM, messages=MESSAGES)
    deltas, kinds, stop_reason, metadata = [], [], None, None
    for event in reply["stream"]:
        kinds.extend(event.keys())
        if "contentBlockDelta" in event:
            deltas.append(event["contentBlockDelta"]["delta"]["text"])
        elif "messageStop" in event:
            stop_reason = event["messageStop"]["stopReason"]
        elif "metadata" in event:
            metadata = event["metadata"]
    check(kinds[:1] == ["messageStart"], f"stream starts with {kinds[:1]!r}")
    check(len(deltas) > 1, f"stream sent {len(deltas)} deltas")
    check("".join(deltas) == EXPECTED_TEXT, f"stream text {''.join(deltas)!r}")
    check("contentBlockStop" in kinds, "stream contentBlockStop")
    check(stop_reason == "end_turn", f"stream stopReason {stop_reason!r}")
    check(
        metadata is not None and metadata["usage"]["totalTokens"] == 11,
        f"stream metadata {metadata!r}",
    )

    # ConverseStream cut by an in-stream exception
    script(
        BEDROCK_URL,
        {
            "kind": "stream_exception",
            "after_chunks": 2,
            "exception": "throttlingException",
            "message": "Too many requests",
        },
    )
    reply = bedrock.converse_stream(modelId=MODEL, messages=MESSAGES)
    deltas = []
    try:
        for event in reply["stream"]:
            if "contentBlockDelta" in event:
                deltas.append(event["contentBlockDelta"]["delta"]["text"])
        check(False, "in-stream exception was not raised")
    except EventStreamError as err:
        code = err.response["Error"]["Code"]
        check(code == "throttlingException", f"in-stream exception code {code!r}")
        message = err.response["Error"]["Message"]
        check(message == "Too many requests", f"in-stream exception message {message!r}")
    check(deltas == ["ragway ", "fake "], f"deltas before the exception {deltas!r}")

    # HTTP error
    script(
        BEDROCK_URL,
        {"kind": "error", "status": 429, "error": "ThrottlingException", "message": "slow down"},
    )
    try:
        bedrock.converse(modelId=MODEL, messages=MESSAGES)
        check(False, "scripted ThrottlingException was not raised")
    except ClientError as err:
        code = err.response["Error"]["Code"]
        check(code == "ThrottlingException", f"HTTP error code {code!r}")
        check(err.response["Error"]["Message"] == "slow down", "HTTP error message")
        status = err.response["ResponseMetadata"]["HTTPStatusCode"]
        check(status == 429, f"HTTP error status {status}")

    # A stop reason newer than the SDK's enum still parses
    script(BEDROCK_URL, {"kind": "stop_reason", "value": "some_new_reason"})
    reply = bedrock.converse(modelId=MODEL, messages=MESSAGES)
    check(reply["stopReason"] == "some_new_reason", f"scripted stopReason {reply['stopReason']!r}")


def check_titan_embeddings():
    bedrock = boto3.client("bedrock-runtime", endpoint_url=BEDROCK_URL, config=NO_RETRIES)
    reply = bedrock.invoke_model(
        modelId=TITAN_EMBED,
        contentType="application/json",
        accept="application/json",
        body=json.dumps({"inputText": "What is a qubit?", "dimensions": 256, "normalize": True}),
    )
    check(reply["contentType"].startswith("application/json"), f"invoke contentType {reply['contentType']!r}")
    body = json.loads(reply["body"].read())
    vector = body["embedding"]
    check(len(vector) == 256, f"titan embedding length {len(vector)}")
    norm = sum(v * v for v in vector) ** 0.5
    check(abs(norm - 1.0) < 1e-4, f"titan embedding norm {norm}")
    check(body["inputTextTokenCount"] == 4, f"inputTextTokenCount {body['inputTextTokenCount']!r}")
    try:
        bedrock.invoke_model(modelId=TITAN_EMBED, body=json.dumps({"inputText": "x", "dimensions": 7}))
        check(False, "bad dimensions were accepted")
    except ClientError as err:
        code = err.response["Error"]["Code"]
        check(code == "ValidationException", f"bad dimensions error code {code!r}")


def check_kendra():
    kendra = boto3.client("kendra", endpoint_url=KENDRA_URL, config=NO_RETRIES)
    index_id = "00000000-0000-0000-0000-000000000000"

    reply = kendra.retrieve(IndexId=index_id, QueryText="quantum", PageSize=2)
    items = reply["ResultItems"]
    check(len(items) == 2, f"retrieve returned {len(items)} items")
    check(isinstance(reply.get("QueryId"), str), "retrieve QueryId")
    for item in items:
        for field in ("Id", "DocumentId", "DocumentTitle", "DocumentURI", "Content"):
            check(isinstance(item.get(field), str) and item[field], f"item field {field}")
    check(items[0]["DocumentTitle"] == "Qubits", f"first title {items[0]['DocumentTitle']!r}")
    check("qubit" in items[0]["Content"], "first content mentions qubits")
    confidences = [item["ScoreAttributes"]["ScoreConfidence"] for item in items]
    check(confidences == ["VERY_HIGH", "HIGH"], f"confidences {confidences!r}")
    source = items[0]["DocumentAttributes"][0]
    check(
        source["Key"] == "_source_uri"
        and source["Value"]["StringValue"] == items[0]["DocumentURI"],
        f"source attribute {source!r}",
    )

    script(
        KENDRA_URL,
        {"kind": "error", "status": 429, "error": "ThrottlingException", "message": "slow down"},
    )
    try:
        kendra.retrieve(IndexId=index_id, QueryText="quantum")
        check(False, "scripted Kendra ThrottlingException was not raised")
    except ClientError as err:
        code = err.response["Error"]["Code"]
        check(code == "ThrottlingException", f"Kendra error code {code!r}")


RERANK_ARN = "arn:aws:bedrock:us-west-2::foundation-model/amazon.rerank-v1:0"
KB = "KB12345678"
QUBITS = "s3://ragway-fake-kb/quantum/qubits.md"
SUPERPOSITION = "https://docs.example.com/quantum/superposition"
CORRECTION = "s3://ragway-fake-kb/quantum/error-correction.md"
CLASSICAL = "https://blog.example.com/classical-computing"


def rerank_request(model_arn=RERANK_ARN, number_of_results=5):
    texts = [
        "Classical bits are either 0 or 1.",
        "Quantum error correction protects qubits.",
        "Quantum computers use qubits.",
        "Error bars in quantum experiments.",
        "Quantum annealing.",
    ]
    sources = [
        {"type": "INLINE", "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text": text}}}
        for text in texts
    ]
    # Scored by its serialized text, {"title":"Quantum error"}.
    sources.append(
        {
            "type": "INLINE",
            "inlineDocumentSource": {"type": "JSON", "jsonDocument": {"title": "Quantum error"}},
        }
    )
    return {
        "queries": [{"type": "TEXT", "textQuery": {"text": "quantum error correction"}}],
        "sources": sources,
        "rerankingConfiguration": {
            "type": "BEDROCK_RERANKING_MODEL",
            "bedrockRerankingConfiguration": {
                "numberOfResults": number_of_results,
                "modelConfiguration": {"modelArn": model_arn},
            },
        },
    }


def expect_client_error(call, code, status, what):
    try:
        call()
        check(False, f"{what}: no {code} was raised")
    except ClientError as err:
        got = err.response["Error"]["Code"]
        check(got == code, f"{what}: error code {got!r}")
        got_status = err.response["ResponseMetadata"]["HTTPStatusCode"]
        check(got_status == status, f"{what}: HTTP status {got_status}")
        return err.response["Error"]["Message"]
    return ""


def check_rerank():
    agent = boto3.client("bedrock-agent-runtime", endpoint_url=BEDROCK_AGENT_URL, config=NO_RETRIES)
    # Scores are the share of the query's words in each source: 3/3, 2/3, 2/3, 1/3, 1/3 (and 0
    # for source 0, cut by numberOfResults); ties go to the lower index.
    reply = agent.rerank(**rerank_request())
    results = reply["results"]
    order = [result["index"] for result in results]
    check(order == [1, 3, 5, 2, 4], f"rerank order {order!r}")
    scores = [result["relevanceScore"] for result in results]
    check(scores == [1.0, 2 / 3, 2 / 3, 1 / 3, 1 / 3], f"rerank scores {scores!r}")
    check(all("document" not in result for result in results), "rerank echoed documents")

    bad_arn = "arn:aws:bedrock:us-west-2::foundation-model/amazon.titan-embed-text-v2:0"
    message = expect_client_error(
        lambda: agent.rerank(**rerank_request(model_arn=bad_arn)),
        "ValidationException",
        400,
        "rerank with a non-reranking model",
    )
    check("amazon.titan-embed-text-v2:0" in message, f"bad ARN message {message!r}")
    expect_client_error(
        lambda: agent.rerank(**rerank_request(number_of_results=1001)),
        "ValidationException",
        400,
        "rerank with numberOfResults 1001",
    )


def check_retrieve():
    agent = boto3.client("bedrock-agent-runtime", endpoint_url=BEDROCK_AGENT_URL, config=NO_RETRIES)
    query = {"text": "quantum error correction with qubits"}

    def address(result):
        location = result["location"]
        if location["type"] == "S3":
            return location["s3Location"]["uri"]
        return location["webLocation"]["url"]

    def retrieve(**search):
        reply = agent.retrieve(
            knowledgeBaseId=KB,
            retrievalQuery=query,
            retrievalConfiguration={"vectorSearchConfiguration": search},
        )
        return [address(result) for result in reply["retrievalResults"]]

    # No configuration: at most 5 results, best first.
    reply = agent.retrieve(knowledgeBaseId=KB, retrievalQuery=query)
    results = reply["retrievalResults"]
    got = [(address(result), result["score"]) for result in results]
    expected = [(CORRECTION, 0.8), (QUBITS, 0.2), (SUPERPOSITION, 0.2), (CLASSICAL, 0.0)]
    check(got == expected, f"retrieve results {got!r}")
    first = results[0]
    check(first["content"]["type"] == "TEXT", f"content type {first['content']['type']!r}")
    check(first["content"]["text"].startswith("Quantum error correction"), "first content text")
    check(first["location"]["type"] == "S3", f"first location {first['location']!r}")
    metadata = first["metadata"]
    check(
        (metadata["category"], metadata["year"], metadata["tags"])
        == ("engineering", 2023, ["quantum", "hardware"]),
        f"first metadata {metadata!r}",
    )
    check(results[2]["location"]["type"] == "WEB", "third result is a web page")

    got = retrieve(
        numberOfResults=3,
        overrideSearchType="HYBRID",
        filter={
            "andAll": [
                {"equals": {"key": "category", "value": "physics"}},
                {"greaterThan": {"key": "year", "value": 2020}},
            ]
        },
    )
    check(got == [QUBITS], f"andAll(physics, after 2020) {got!r}")
    got = retrieve(
        filter={
            "orAll": [
                {"equals": {"key": "category", "value": "history"}},
                {"lessThan": {"key": "year", "value": 2020}},
            ]
        },
    )
    check(got == [SUPERPOSITION, CLASSICAL], f"orAll(history, before 2020) {got!r}")
    got = retrieve(filter={"in": {"key": "category", "value": ["engineering", "history"]}})
    check(got == [CORRECTION, CLASSICAL], f"in(engineering, history) {got!r}")
    got = retrieve(filter={"listContains": {"key": "tags", "value": "basics"}})
    check(got == [QUBITS, CLASSICAL], f"listContains(tags, basics) {got!r}")
    got = retrieve(numberOfResults=2, overrideSearchType="SEMANTIC")
    check(got == [CORRECTION, QUBITS], f"numberOfResults 2 {got!r}")

    expect_client_error(
        lambda: retrieve(numberOfResults=101),
        "ValidationException",
        400,
        "retrieve with numberOfResults 101",
    )
    expect_client_error(
        lambda: agent.retrieve(knowledgeBaseId="KBNOTTHERE", retrievalQuery=query),
        "ResourceNotFoundException",
        404,
        "retrieve from an unknown knowledge base",
    )
    script(
        BEDROCK_AGENT_URL,
        {"kind": "error", "status": 429, "error": "ThrottlingException", "message": "slow down"},
    )
    message = expect_client_error(
        lambda: agent.retrieve(knowledgeBaseId=KB, retrievalQuery=query),
        "ThrottlingException",
        429,
        "scripted retrieve throttle",
    )
    check(message == "slow down", f"throttle message {message!r}")


def main():
    print(f"boto3 {boto3.__version__}")
    check_bedrock()
    check_titan_embeddings()
    check_kendra()
    check_rerank()
    check_retrieve()
    if failures:
        print(f"{len(failures)} mismatches", file=sys.stderr)
        return 1
    print("boto3 check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
