"""An uploaded batch input file, checked as OpenAI checks it before a batch starts.

The whole file fails (status "failed", `errors` naming each bad line) when a line is not a JSON
object, lacks a unique custom_id, or asks for another endpoint or method; too many lines fail it
too. A line whose body.model the service does not serve is that line's error only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_LISTED = 100  # errors listed per failed file; the count says how many more


@dataclass
class CheckedLines:
    accepted: list[str] = field(default_factory=list)  # the lines the job serves, as uploaded
    rejected: list[dict[str, Any]] = field(default_factory=list)  # OpenAI error lines (unknown model)
    errors: list[dict[str, Any]] = field(default_factory=list)  # file-level problems, by line number
    model: str | None = None  # the model the accepted lines ask for

    @property
    def total(self) -> int:
        return len(self.accepted) + len(self.rejected)


def check_lines(
    lines: Iterable[bytes], endpoint: str, models: Mapping[str, Any], max_lines: int
) -> CheckedLines:
    found = CheckedLines()
    problems = 0
    seen: set[str] = set()
    named: list[str] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        if found.total + problems >= max_lines:
            found.errors = [
                _error("too_many_requests", f"the file has over {max_lines} requests (the limit)")
            ]
            return found
        problem, line = _problem(raw, endpoint, seen)
        if problem:
            problems += 1
            if len(found.errors) < MAX_LISTED:
                found.errors.append(_error("invalid_request", problem, number))
            continue
        custom_id, model = str(line["custom_id"]), line["body"].get("model")
        seen.add(custom_id)
        if model not in models:
            served = ", ".join(sorted(models)) or "none configured"
            found.rejected.append(
                _line_error(custom_id, f"model {model!r} is not served here (served: {served})")
            )
            continue
        if model not in named:
            named.append(model)
        found.accepted.append(raw.decode("utf-8").strip())
    if problems > MAX_LISTED:
        found.errors.append(_error("invalid_request", f"and {problems - MAX_LISTED} more invalid lines"))
    if len(named) > 1 and not found.errors:
        found.errors.append(
            _error("invalid_request", f"a batch holds requests to one model; found {', '.join(named)}")
        )
    if not found.total and not found.errors:
        found.errors.append(_error("empty_file", "the input file holds no requests"))
    found.model = named[0] if named else None
    return found


def _problem(raw: bytes, endpoint: str, seen: set[str]) -> tuple[str | None, dict[str, Any]]:
    try:
        line = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        return f"not a JSON line ({type(error).__name__}: {str(error)[:120]})", {}
    if not isinstance(line, dict):
        return "a request line must be a JSON object", {}
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return "custom_id must be a non-empty string", {}
    if custom_id in seen:
        return f"custom_id {custom_id[:64]!r} appears more than once", {}
    if line.get("method") != "POST":
        return f"method must be POST, got {str(line.get('method'))[:20]!r}", {}
    if line.get("url") != endpoint:
        return f"url must be the batch's endpoint {endpoint}, got {str(line.get('url'))[:60]!r}", {}
    if not isinstance(line.get("body"), dict):
        return "body must be a JSON object", {}
    return None, line


def _error(code: str, message: str, line: int | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": None, "line": line}


def _line_error(custom_id: str, message: str) -> dict[str, Any]:
    return {
        "id": f"batch_req_{hashlib.sha256(custom_id.encode()).hexdigest()[:24]}",
        "custom_id": custom_id,
        "response": None,
        "error": {"code": "model_not_found", "message": message},
    }
