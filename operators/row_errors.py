"""Row outcomes other than written: errored (a reason and the stage that failed) and filtered (the
rule that dropped the row, with its value). Both are data, carried as columns; null = still good."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ERROR = "_error"
ERROR_STAGE = "_error_stage"
FILTERED = "_filtered"
FILTER_STAGE = "_filter_stage"


def add_error_columns(table: pa.Table) -> pa.Table:
    """The two error columns, all null, on a table that lacks them."""
    for name in (ERROR, ERROR_STAGE):
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
    return table


def good_rows(table: pa.Table) -> np.ndarray:
    """Boolean mask of the rows no stage has marked errored or filtered."""
    good = np.ones(table.num_rows, dtype=bool)
    for name in (ERROR, FILTERED):
        if name in table.column_names and table[name].null_count < table.num_rows:
            good &= pc.is_null(table[name]).to_numpy(zero_copy_only=False)
    return good


def errored_rows(table: pa.Table) -> np.ndarray:
    if ERROR not in table.column_names:
        return np.zeros(table.num_rows, dtype=bool)
    return pc.is_valid(table[ERROR]).to_numpy(zero_copy_only=False)


def mark_errors(table: pa.Table, reasons: Sequence[str | None], stage: str) -> pa.Table:
    """Record `reasons` (None = no error) on rows that were still good; earlier outcomes win."""
    return _mark(add_error_columns(table), reasons, stage, ERROR, ERROR_STAGE)


def mark_filtered(table: pa.Table, reasons: Sequence[str | None], stage: str) -> pa.Table:
    """Drop rows by a rule: `reasons` name it with the value (e.g. "clip_score 0.18 < 0.25")."""
    for name in (FILTERED, FILTER_STAGE):
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
    return _mark(table, reasons, stage, FILTERED, FILTER_STAGE)


def _mark(table: pa.Table, reasons: Sequence[str | None], stage: str, reason_col: str, stage_col: str):
    fresh = np.array([reason is not None for reason in reasons], dtype=bool)
    if not fresh.any():
        return table
    fresh &= good_rows(table)
    if not fresh.any():
        return table
    marked = table[reason_col].to_pylist()
    stages = table[stage_col].to_pylist()
    for i in np.flatnonzero(fresh):
        marked[i] = _one_line(reasons[i])
        stages[i] = stage
    table = table.set_column(
        table.schema.get_field_index(reason_col), reason_col, pa.array(marked, pa.string())
    )
    return table.set_column(table.schema.get_field_index(stage_col), stage_col, pa.array(stages, pa.string()))


def describe(error: BaseException) -> str:
    """A one-line reason for an exception, without object reprs."""
    text = re.sub(r"\s*<[^<>]* at 0x[0-9a-f]+>", "", str(error)).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _one_line(reason: str) -> str:
    line = " ".join(str(reason).split())
    return line if len(line) <= 500 else line[:497] + "..."
