"""CSV and JSON-lines inputs (prompt lists, OpenAI batch files) cut into shards by byte range.

The driver streams each file once to find where every `shard_rows`-th line starts; a read task
then reads only its byte range. Blank lines are skipped; a line that does not parse becomes an
error row, not a failed job.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from operators.row_errors import ERROR, ERROR_STAGE, describe

LINE_FORMATS = {
    "csv": (".csv",),
    "jsonl": (".jsonl", ".ndjson", ".json"),
    "openai_batch": (".jsonl", ".json"),
}
RAW_LINE = "request"  # openai_batch rows keep the raw line: the operator-side parser owns errors


def line_offsets(handle, step: int, skip_header: bool) -> Iterator[tuple[int, int, int]]:
    """(first byte, end byte, rows) of each run of `step` non-blank lines."""
    position = 0
    if skip_header:
        position = len(handle.readline())
    start, rows = position, 0
    for line in handle:
        if line.strip():
            if rows == 0:
                start = position
            rows += 1
        position += len(line)
        if rows == step:
            yield start, position, rows
            rows = 0
    if rows:
        yield start, position, rows


def header(fs, path: str) -> list[str]:
    with fs.open(path, "rb") as handle:
        return next(csv.reader([handle.readline().decode("utf-8-sig")]), [])


def first_record_keys(fs, path: str) -> list[str]:
    with fs.open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                try:
                    record = json.loads(line)
                except ValueError:
                    return []
                return list(record) if isinstance(record, dict) else []
    return []


def read_lines(data: bytes, fmt: str, columns: list[str]) -> tuple[pa.Table, list[str | None]]:
    """The rows of a byte range and a parse error (or None) per row."""
    lines = [line for line in data.decode("utf-8", errors="replace").splitlines() if line.strip()]
    if fmt == "openai_batch":
        return pa.table({RAW_LINE: pa.array(lines, pa.string())}), [None] * len(lines)
    if fmt == "csv":
        records, reasons = [], []
        for line in lines:
            values = next(csv.reader([line]), [])
            reasons.append(
                None
                if len(values) == len(columns)
                else f"CSV line has {len(values)} fields, not {len(columns)}"
            )
            records.append(dict(zip(columns, values, strict=False)))
    else:
        records, reasons = [], []
        for line in lines:
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError(f"a JSON line must be an object, got {type(record).__name__}")
                records.append(record)
                reasons.append(None)
            except ValueError as error:
                records.append({})
                reasons.append(describe(error))
    table = pa.table({name: _column([record.get(name) for record in records]) for name in columns})
    return table, reasons


def _column(values: list[Any]) -> pa.Array:
    """Strings stay strings; anything else is kept as its JSON text, so every shard has one schema."""
    return pa.array([v if v is None or isinstance(v, str) else json.dumps(v) for v in values], pa.string())


def with_parse_errors(table: pa.Table, reasons: list[str | None], stage: str) -> pa.Table:
    stages = [stage if reason else None for reason in reasons]
    table = table.append_column(ERROR, pa.array(reasons, pa.string()))
    return table.append_column(ERROR_STAGE, pa.array(stages, pa.string()))
