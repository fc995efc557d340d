"""The OpenAI Batch output file of a generate_text run: one JSON line per input line.

Successful lines carry `response` (status 200 and a chat.completion body with `usage`); lines
that failed carry `error` with the reason. Every custom_id of the input appears exactly once.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pyarrow.parquet as pq

from rayjobs.io.storage import join, list_folder, write_bytes
from rayjobs.pipeline.write_results import DATA_DIR, ERRORS_DIR

OUTPUT_FILE = "output.jsonl"


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


def error_line(row: dict[str, Any]) -> dict[str, Any]:
    code = "invalid_request" if row.get("stage") in ("read", "prompt") else "processing_error"
    return {
        "id": f"batch_req_{_short_id(row.get('custom_id'), row['id'])}",
        "custom_id": row.get("custom_id"),
        "response": None,
        "error": {"code": code, "message": row["reason"]},
    }


def write_openai_output(fs, root: str, model: str) -> int:
    """Writes <output>/output.jsonl from data/ and errors/; returns the number of lines."""
    created = int(time.time())
    lines = []
    for folder, make in ((DATA_DIR, lambda r: completion_line(r, model, created)), (ERRORS_DIR, error_line)):
        path = join(root, folder)
        if not fs.exists(path):
            continue
        for file in sorted(list_folder(fs, path)):
            with fs.open(file, "rb") as handle:
                lines.extend(json.dumps(make(row)) for row in pq.read_table(handle).to_pylist())
    write_bytes(fs, join(root, OUTPUT_FILE), ("\n".join(lines) + "\n").encode() if lines else b"")
    return len(lines)


def _short_id(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:24]
