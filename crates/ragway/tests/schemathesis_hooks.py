"""Schemathesis hooks for tests/openapi.rs: half of the generated requests name a model, store
or asset the server under test really has, so the fuzzing reaches the answers and not only the
"unknown name" errors. The names come from the environment the Rust test sets."""

import os

import schemathesis
from hypothesis import strategies as st

CHAT_MODEL = os.environ["CHAT_MODEL"]
EMBEDDING_MODEL = os.environ["EMBEDDING_MODEL"]
STORES = os.environ["STORES"].split(",")
ASSETS = ["swagger-ui-bundle.js", "swagger-ui.css", "swagger-initializer.js"]


def _path(context):
    return context.operation.path if context.operation is not None else ""


def _known(body, path, store):
    """The body with its names replaced by ones the server knows."""
    body = dict(body)
    if path == "/generate":
        body["llm_name"] = CHAT_MODEL
        if "vector_search_type" in body:
            body["vector_search_type"] = store
    elif path == "/search":
        body["vector_search_type"] = store
    elif path == "/v1/chat/completions":
        body["model"] = CHAT_MODEL
        if "vector_search_type" in body:
            body["vector_search_type"] = store
    elif path == "/v1/embeddings":
        body["model"] = EMBEDDING_MODEL
    return body


@schemathesis.hook
def flatmap_body(context, body):
    if not isinstance(body, dict):
        return st.just(body)
    path = _path(context)
    return st.one_of(st.just(body), st.sampled_from(STORES).map(lambda store: _known(body, path, store)))


@schemathesis.hook
def flatmap_path_parameters(context, parameters):
    if not isinstance(parameters, dict):
        return st.just(parameters)
    path = _path(context)
    if path.startswith("/stores/"):
        known = [{**parameters, "name": store} for store in STORES]
    elif path == "/v1/models/{id}":
        known = [{**parameters, "id": CHAT_MODEL}, {**parameters, "id": EMBEDDING_MODEL}]
    elif path == "/docs/{asset}":
        known = [{"asset": asset} for asset in ASSETS]
    else:
        return st.just(parameters)
    return st.sampled_from([parameters] + known)
