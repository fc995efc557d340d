"""Bad rows are data: each row carries an error reason and the stage that set it (null = good)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ERROR = "_error"
ERROR_STAGE = "_error_stage"


def add_error_columns(table: pa.Table) -> pa.Table:
    """The two error columns, all null, on a table that lacks them."""
    for name in (ERROR, ERROR_STAGE):
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
    return table


def good_rows(table: pa.Table) -> np.ndarray:
    """Boolean mask of the rows no stage has marked."""
    if ERROR not in table.column_names:
        return np.ones(table.num_rows, dtype=bool)
    return pc.is_null(table[ERROR]).to_numpy(zero_copy_only=False)


def mark_errors(table: pa.Table, reasons: Sequence[str | None], stage: str) -> pa.Table:
    """Record `reasons` (None = no error) on rows that were still good; earlier errors win."""
    table = add_error_columns(table)
    fresh = np.array([reason is not None for reason in reasons], dtype=bool) & good_rows(table)
    if not fresh.any():
        return table
    errors = table[ERROR].to_pylist()
    stages = table[ERROR_STAGE].to_pylist()
    for i in np.flatnonzero(fresh):
        errors[i] = _one_line(reasons[i])
        stages[i] = stage
    table = table.set_column(table.schema.get_field_index(ERROR), ERROR, pa.array(errors, pa.string()))
    return table.set_column(
        table.schema.get_field_index(ERROR_STAGE), ERROR_STAGE, pa.array(stages, pa.string())
    )


def describe(error: BaseException) -> str:
    """A one-line reason for an exception, without object reprs."""
    text = re.sub(r"\s*<[^<>]* at 0x[0-9a-f]+>", "", str(error)).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _one_line(reason: str) -> str:
    line = " ".join(str(reason).split())
    return line if len(line) <= 500 else line[:497] + "..."
