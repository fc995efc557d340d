"""CSV and JSON-lines inputs (prompt lists, OpenAI batch files) cut into shards by byte range.

The driver streams each file once to find where every `shard_rows`-th line starts; a read task
then reads only its byte range. Blank lines are skipped; a line that does not parse becomes an
error row, not a failed job.
"""

from __future__ import annotations

import csv
import json
import posixpath
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from operators.row_errors import describe
from rayjobs.config.config_error import ConfigError
from rayjobs.io.shards import InputPlan, ReadOptions, Shard, hidden, row_ids, shard_table, with_read_errors
from rayjobs.io.storage import filesystem, retrying

LINE_FORMATS = {
    "csv": (".csv",),
    "jsonl": (".jsonl", ".ndjson", ".json"),
    "openai_batch": (".jsonl", ".json"),
}
RAW_LINE = "request"  # openai_batch rows keep the raw line: the operator-side parser owns errors


def plan(fs, root: str, spec) -> InputPlan:
    """Shards of `input.shard_rows` non-blank lines, found by streaming each file once."""
    fmt = spec.format
    if fs.isdir(root):
        files = sorted(
            p for p in fs.find(root) if p.lower().endswith(LINE_FORMATS[fmt]) and not hidden(p, root)
        )
        base = root
    else:
        files = sorted(fs.glob(root)) if any(c in root for c in "*?[") else [root]
        base = posixpath.dirname(files[0]) if files else root
    if not files:
        raise ConfigError(
            "input.path", f"no {fmt} files ({', '.join(LINE_FORMATS[fmt])}) under {spec.path!r}"
        )
    shards: list[Shard] = []
    for path in files:
        with fs.open(path, "rb") as handle:
            first = 0
            for start, end, rows in line_offsets(handle, spec.shard_rows, skip_header=fmt == "csv"):
                shards.append(
                    Shard(len(shards), rows, path=path, start=first, byte_start=start, byte_end=end)
                )
                first += rows
    if fmt == "csv":
        names = header(fs, files[0])
    elif fmt == "jsonl":
        names = first_record_keys(fs, files[0])
    else:
        names = [RAW_LINE]
    return InputPlan(base, shards, pa.schema([(name, pa.string()) for name in names]), len(files))


def read(shard: Shard, options: ReadOptions) -> pa.Table:
    spec = options.input
    fs, _ = filesystem(spec.path, spec.storage_options)

    def read_range() -> bytes:
        with fs.open(shard.path, "rb") as handle:
            handle.seek(shard.byte_start)
            return handle.read(shard.byte_end - shard.byte_start)

    names = list(options.schema_names)
    data, reasons = read_lines(retrying(read_range), spec.format, names)
    data, reasons = data.slice(0, shard.rows), reasons[: shard.rows]  # job.limit may cut a shard short
    ids = data[spec.id_column] if spec.id_column else row_ids(shard, options.root, data.num_rows)
    table = shard_table(shard, ids)
    for column in dict.fromkeys([*options.columns, *names]):
        if column in data.column_names and column not in table.column_names:
            table = table.append_column(column, data[column])
    return with_read_errors(table, reasons)


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
