"""CPU stage after a generator bound to a JSON schema: each top-level property of the completion
becomes a column of the row (title, alt_text, tags, ...), typed from the schema so that every
block writes the same Parquet schema; a completion that does not parse is an error row."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from operators.row_errors import good_rows, mark_errors

STAGE = "json_columns"
SCALARS = {"string": pa.string(), "integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_()}


def schema_columns(schema: dict[str, Any]) -> dict[str, pa.DataType]:
    """Column types of a schema's top-level properties: scalars as themselves, enums as strings,
    arrays of scalars as lists; anything else (objects, mixed arrays) as JSON text."""
    return {name: _arrow_type(spec) for name, spec in (schema.get("properties") or {}).items()}


def _arrow_type(spec: Any) -> pa.DataType:
    if not isinstance(spec, dict):
        return pa.string()
    kind = spec.get("type")
    if "enum" in spec and all(isinstance(value, str) for value in spec["enum"]):
        return pa.string()
    if isinstance(kind, str) and kind in SCALARS:
        return SCALARS[kind]
    items = spec.get("items")
    if kind == "array" and isinstance(items, dict) and items.get("type") in SCALARS:
        return pa.list_(SCALARS[items["type"]])
    return pa.string()  # JSON text


def json_columns(table: pa.Table, *, source: str, columns: dict[str, pa.DataType]) -> pa.Table:
    """Adds one column per schema property (`columns`, from schema_columns) parsed from
    `source`; a good row whose text does not parse is an error row."""
    values: dict[str, list] = {name: [] for name in columns}
    reasons: list[str | None] = []
    for text, good in zip(table[source].to_pylist(), good_rows(table), strict=True):
        parsed, reason = _parse(text) if good else ({}, None)
        reasons.append(reason)
        for name, kind in columns.items():
            value = parsed.get(name)
            is_text = kind == pa.string() and value is not None and not isinstance(value, str)
            values[name].append(json.dumps(value, ensure_ascii=False) if is_text else value)
    table = mark_errors(table, reasons, STAGE)
    for name, kind in columns.items():
        table = table.append_column(name, pa.array(values[name], kind))
    return table


def _parse(text: str | None) -> tuple[dict[str, Any], str | None]:
    try:
        value = json.loads(text or "")
    except ValueError:
        return {}, "the completion is not complete JSON (cut short by max_new_tokens? raise it)"
    if not isinstance(value, dict):
        return {}, f"the completion is JSON but not an object: {type(value).__name__}"
    return value, None
