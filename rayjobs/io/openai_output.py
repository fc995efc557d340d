"""The OpenAI Batch output file of a generate_text or embed_texts run: one JSON line per input line.

Successful lines carry `response` (status 200 and a chat.completion or embeddings list body with
`usage`); lines that failed carry `error` with the reason. Every custom_id of the input appears
exactly once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import posixpath
import time
from collections.abc import Callable, Collection
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from rayjobs.io.storage import join, list_folder, write_bytes
from rayjobs.pipeline.write_results import DATA_DIR, ERRORS_DIR, shard_of

OUTPUT_FILE = "output.jsonl"
CHAT, EMBEDDINGS = "/v1/chat/completions", "/v1/embeddings"


def completion_line(row: dict[str, Any], model: str, created: int) -> dict[str, Any]:
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": text},
            "finish_reason": reason,
            "logprobs": None,
        }
        for i, (text, reason) in enumerate(zip(row["completions"], row["finish_reasons"], strict=True))
    ]
    completion_tokens = int(sum(row["completion_tokens"]))
    request_id = _short_id(row["custom_id"], row["id"])
    body = {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": created,
        "model": row.get("model") or model,
        "choices": choices,
        "usage": {
            "prompt_tokens": int(row["prompt_tokens"]),
            "completion_tokens": completion_tokens,
            "total_tokens": int(row["prompt_tokens"]) + completion_tokens,
        },
    }
    return {
        "id": f"batch_req_{request_id}",
        "custom_id": row["custom_id"],
        "response": {"status_code": 200, "request_id": request_id, "body": body},
        "error": None,
    }


def embedding_line(row: dict[str, Any], model: str, created: int) -> dict[str, Any]:
    vector = np.asarray(row["embedding"], dtype=np.float32)
    if row.get("encoding_format") == "base64":  # what the openai client asks for by default
        embedding: Any = base64.b64encode(vector.astype("<f4").tobytes()).decode()
    else:
        embedding = vector.tolist()
    request_id = _short_id(row["custom_id"], row["id"])
    tokens = int(row.get("prompt_tokens") or 0)
    body = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": embedding}],
        "model": row.get("model") or model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return {
        "id": f"batch_req_{request_id}",
        "custom_id": row["custom_id"],
        "response": {"status_code": 200, "request_id": request_id, "body": body},
        "error": None,
    }


def error_line(row: dict[str, Any]) -> dict[str, Any]:
    code = "invalid_request" if row.get("stage") in ("read", "prompt") else "processing_error"
    return {
        "id": f"batch_req_{_short_id(row.get('custom_id'), row['id'])}",
        "custom_id": row.get("custom_id"),
        "response": None,
        "error": {"code": code, "message": row["reason"]},
    }


def openai_lines(
    fs, root: str, model: str, endpoint: str = CHAT, shards: Collection[int] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(response lines, error lines) from data/ and errors/; only the files of `shards` when
    given (the finished shards of a stopped run: an unfinished shard's files may be partial)."""
    created = int(time.time())
    line = completion_line if endpoint == CHAT else embedding_line
    found: dict[str, list[dict[str, Any]]] = {DATA_DIR: [], ERRORS_DIR: []}
    makers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        DATA_DIR: lambda row: line(row, model, created),
        ERRORS_DIR: error_line,
    }
    for folder, make in makers.items():
        path = join(root, folder)
        if not fs.exists(path):
            continue
        for file in sorted(list_folder(fs, path)):
            if shards is not None and shard_of(posixpath.basename(file)) not in shards:
                continue
            with fs.open(file, "rb") as handle:
                found[folder].extend(make(row) for row in pq.read_table(handle).to_pylist())
    return found[DATA_DIR], found[ERRORS_DIR]


def write_openai_output(fs, root: str, model: str, endpoint: str = CHAT) -> int:
    """Writes <output>/output.jsonl from data/ and errors/; returns the number of lines."""
    good, bad = openai_lines(fs, root, model, endpoint)
    lines = [json.dumps(line) for line in good + bad]
    write_bytes(fs, join(root, OUTPUT_FILE), ("\n".join(lines) + "\n").encode() if lines else b"")
    return len(lines)


def _short_id(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:24]
