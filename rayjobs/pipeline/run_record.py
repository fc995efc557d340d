"""What a run leaves next to its output: the record, the progress journal, and _SUCCESS last.

_run.json     resolved config, fingerprint, status and stats
_progress.json finished shards as ranges ("0-1523,1525"): bytes per shard, not per row; and the
               live counts (rows done / total, errors, rows/s, ETA) of the run writing it
_SUCCESS      written last, only when every shard is done and the error budget held
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from rayjobs.io.storage import join, read_text, write_bytes

RECORD = "_run.json"
PROGRESS = "_progress.json"
SUCCESS = "_SUCCESS"


def fingerprint(parts: dict[str, Any]) -> str:
    """A short hash of everything that decides the results."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def changed_keys(before: Any, after: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) for every leaf that differs; [] when `before` is unknown."""
    if not isinstance(before, dict):
        return []
    old, new = _leaves(before), _leaves(json.loads(json.dumps(after, default=str)))
    missing = object()
    keys = sorted(set(old) | set(new))
    # An empty section ({}) on one side that the other side fills is named by its new keys alone.
    filled = {key for key in keys if any(other.startswith(f"{key}.") for other in keys)}
    return [
        (key, old.get(key), new.get(key))
        for key in keys
        if key not in filled and old.get(key, missing) != new.get(key, missing)
    ]


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree}
    found: dict[str, Any] = {}
    for key, value in tree.items():
        found.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return found


def read_record(fs, root: str) -> dict[str, Any] | None:
    text = read_text(fs, join(root, RECORD))
    return json.loads(text) if text else None


def write_record(fs, root: str, record: dict[str, Any]) -> None:
    write_bytes(fs, join(root, RECORD), json.dumps(record, indent=2, default=str).encode())


def read_progress(fs, root: str) -> set[int]:
    text = read_text(fs, join(root, PROGRESS))
    return decode_ranges(json.loads(text)["done"]) if text else set()


def write_progress(fs, root: str, done: Iterable[int], counts: dict[str, Any] | None = None) -> None:
    """The finished shards, and the live counts `rayjobs status` shows (JobRun._progress)."""
    body = {"done": encode_ranges(done), **(counts or {})}
    write_bytes(fs, join(root, PROGRESS), json.dumps(body).encode())


def read_counts(fs, root: str) -> dict[str, Any]:
    """The live counts of the last progress write ({} before the first)."""
    text = read_text(fs, join(root, PROGRESS))
    return {k: v for k, v in json.loads(text).items() if k != "done"} if text else {}


def write_success(fs, root: str) -> None:
    write_bytes(fs, join(root, SUCCESS), b"")


def has_success(fs, root: str) -> bool:
    return fs.exists(join(root, SUCCESS))


def encode_ranges(numbers: Iterable[int]) -> str:
    """{0,1,2,5,7,8} -> "0-2,5,7-8"."""
    ordered = sorted(set(numbers))
    spans: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        spans.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(spans)


def decode_ranges(text: str) -> set[int]:
    numbers: set[int] = set()
    for span in filter(None, text.split(",")):
        low, _, high = span.partition("-")
        numbers.update(range(int(low), int(high or low) + 1))
    return numbers
