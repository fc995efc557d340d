"""Lines of an OpenAI Batch input file -> chat messages and generation parameters, or an
embedding input text, or a reason.

Supported: POST /v1/chat/completions with `messages` (string or text-part contents), the
sampling fields below and `response_format` (text, json_object, json_schema); POST
/v1/embeddings with one `input` string per line. Anything else in `body` is refused per line,
never silently ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from operators.text.output_grammar import ANY_OBJECT, constraint_key

ENDPOINT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
EMBEDDING_FIELDS = {"model", "input", "encoding_format", "user"}
SUPPORTED = {
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "seed",
    "user",
    "metadata",
    "store",
    "response_format",
}


@dataclass
class ChatRequest:
    custom_id: str | None
    messages: list[dict[str, str]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    error: str | None = None
    constraint: str | None = None  # output_grammar.constraint_key of its response_format


def parse_request(line: str) -> ChatRequest:
    """One JSONL line; `error` says why it cannot be served (the line still gets an output)."""
    request, custom_id, problem = _decode(line)
    if request is None:
        return ChatRequest(None, error=problem)
    problem = _problem(request)
    if problem:
        return ChatRequest(custom_id, error=problem)
    body = request["body"]
    messages = [{"role": m["role"], "content": _text(m["content"])} for m in body["messages"]]
    params = {
        "max_new_tokens": body.get("max_completion_tokens", body.get("max_tokens")),
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "n": body.get("n"),
        "seed": body.get("seed"),
    }
    constraint, problem = response_constraint(body.get("response_format"))
    if problem:
        return ChatRequest(custom_id, error=problem)
    params = {k: v for k, v in params.items() if v is not None}
    return ChatRequest(custom_id, messages, params, body.get("model"), constraint=constraint)


def response_constraint(response_format: Any) -> tuple[str | None, str | None]:
    """(the constraint key of an OpenAI response_format, None) or (None, why it is refused)."""
    if response_format is None:
        return None, None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None, None
    if kind == "json_object":
        return constraint_key("json_schema", ANY_OBJECT), None
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            return None, "body.response_format.json_schema.schema must be a JSON schema object"
        return constraint_key("json_schema", schema), None
    return None, f"body.response_format.type must be text, json_object or json_schema, got {kind!r}"


@dataclass
class EmbeddingRequest:
    custom_id: str | None
    text: str | None = None
    model: str | None = None
    encoding_format: str = "float"
    error: str | None = None


def parse_embedding_request(line: str) -> EmbeddingRequest:
    """One /v1/embeddings line; `error` says why it cannot be served."""
    request, custom_id, problem = _decode(line)
    if request is None:
        return EmbeddingRequest(None, error=problem)
    problem = _envelope_problem(request, EMBEDDINGS, EMBEDDING_FIELDS)
    if problem:
        return EmbeddingRequest(custom_id, error=problem)
    body = request["body"]
    text = body.get("input")
    if isinstance(text, list) and len(text) == 1:
        text = text[0]
    if not isinstance(text, str):
        return EmbeddingRequest(
            custom_id, error="body.input must be one string per request line (split lists into lines)"
        )
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        return EmbeddingRequest(
            custom_id, error=f"body.encoding_format must be float or base64, got {encoding!r}"
        )
    return EmbeddingRequest(custom_id, text, body.get("model"), encoding)


def _decode(line: str) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """(the request object, its custom_id, None) or (None, None, why the line is not one)."""
    try:
        request = json.loads(line)
    except ValueError as error:
        return None, None, f"invalid JSON: {error}"
    if not isinstance(request, dict):
        return None, None, "a request line must be a JSON object"
    custom_id = request.get("custom_id")
    return request, str(custom_id) if custom_id is not None else None, None


def _envelope_problem(request: dict[str, Any], endpoint: str, fields: set[str]) -> str | None:
    if not request.get("custom_id"):
        return "missing custom_id"
    if request.get("method", "POST") != "POST" or request.get("url") != endpoint:
        return f"only POST {endpoint} is supported, got {request.get('method')} {request.get('url')}"
    body = request.get("body")
    if not isinstance(body, dict):
        return "missing body"
    unsupported = sorted(set(body) - fields)
    if unsupported:
        return f"unsupported body field(s): {', '.join(unsupported)}"
    return None


def _problem(request: dict[str, Any]) -> str | None:
    problem = _envelope_problem(request, ENDPOINT, SUPPORTED)
    if problem:
        return problem
    body = request["body"]
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "body.messages must be a non-empty list"
    for message in messages:
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            return "each message needs a role and a content"
        if _text(message["content"]) is None:
            return "only text message contents are supported"
    for key, kind in (("max_tokens", int), ("max_completion_tokens", int), ("n", int), ("seed", int)):
        if key in body and (not isinstance(body[key], kind) or isinstance(body[key], bool) or body[key] < 0):
            return f"body.{key} must be a non-negative integer"
    return None


def _text(content: Any) -> str | None:
    """Plain string content, or the text parts of a list content."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    return None


def embedding_requests(table, *, column: str = "request"):
    """CPU stage of embed_texts on OpenAI Batch input: the raw lines -> text, custom_id, model,
    encoding_format; a line that cannot be served becomes an error row (stage "read")."""
    import pyarrow as pa

    from operators.row_errors import add_error_columns, mark_errors

    parsed = [parse_embedding_request(line) for line in table[column].to_pylist()]
    table = add_error_columns(table.drop_columns([column]))
    table = mark_errors(table, [request.error for request in parsed], "read")
    for name in ("text", "custom_id", "model", "encoding_format"):
        table = table.append_column(name, pa.array([getattr(r, name) for r in parsed], pa.string()))
    return table
