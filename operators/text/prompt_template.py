"""Prompts from a template over input columns: "Write about a {name} in {style} style"."""

from __future__ import annotations

import string

import pyarrow as pa

from operators.row_errors import add_error_columns, mark_errors

STAGE = "prompt"
PROMPT = "prompt"


def template_columns(template: str | None) -> list[str]:
    """Column names a prompt template refers to ("{name} in {style}" -> [name, style])."""
    if not template:
        return []
    return [field for _, field, _, _ in string.Formatter().parse(template) if field]


def prompt_text(record: dict, column: str | None, template: str | None) -> tuple[str | None, str | None]:
    """(prompt, None) or (None, why there is none); null columns fill a template as ""."""
    if template:
        try:
            text = template.format(**{k: "" if v is None else v for k, v in record.items()})
        except (KeyError, IndexError, ValueError) as error:
            return None, f"prompt template: {type(error).__name__}: {error}"
    else:
        text = record.get(column) if column else None
    if text is None:
        return None, "missing prompt (null)"
    if not str(text).strip():
        return None, "empty prompt"
    return str(text), None


def add_prompts(table: pa.Table, *, template: str) -> pa.Table:
    """CPU stage: a `prompt` column filled from `template`; rows it cannot fill become errors."""
    table = add_error_columns(table)
    names = template_columns(template)
    records = table.select(names).to_pylist() if names else [{}] * table.num_rows
    filled = [prompt_text(record, None, template) for record in records]
    table = mark_errors(table, [reason for _, reason in filled], STAGE)
    return table.append_column(PROMPT, pa.array([text for text, _ in filled], pa.string()))
