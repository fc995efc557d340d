"""The actor around an operator: feeds it the good rows, passes every other column through.

The operator itself only sees tensors (dict of numpy arrays) and returns arrays. A batch that
fails is retried row by row, so one poisonous row cannot take its neighbours with it.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa
from hydra.utils import get_class

from operators.arrow_tensors import arrow_to_lists, arrow_to_tensor, tensor_to_arrow
from operators.row_errors import add_error_columns, describe, good_rows, mark_errors

STAGE = "model"


class ModelStage:
    """Callable class for Dataset.map_batches: one operator instance per actor."""

    def __init__(self, target: str, kwargs: dict[str, Any], num_threads: int | None = None) -> None:
        if num_threads:
            import torch

            torch.set_num_threads(num_threads)
        operator_class = get_class(target)
        self.inputs: tuple[str, ...] = tuple(operator_class.inputs)
        self.outputs: tuple[str, ...] = tuple(operator_class.outputs)
        self.operator = operator_class(**kwargs)
        self.pid = os.getpid()

    def __call__(self, table: pa.Table) -> pa.Table:
        table = add_error_columns(table)
        good = good_rows(table)
        rows = np.flatnonzero(good)
        results: dict[str, np.ndarray] = {}
        failures: list[str | None] = [None] * table.num_rows
        if len(rows):
            # Index in numpy: pyarrow 26's take/filter garble sliced nested fixed_size_list columns.
            batch = {name: _rows(_column_as_numpy(table[name]), rows) for name in self.inputs}
            results, row_failures = self._run(batch)
            for row, failure in zip(rows, row_failures, strict=True):
                failures[row] = failure
        table = table.drop_columns([name for name in self.inputs if name in table.column_names])
        table = mark_errors(table, failures, STAGE)
        for name in self.outputs:
            if name in results:  # absent when no row of the batch survived: all leave as errors
                table = table.append_column(name, _scatter(results[name], rows, table.num_rows))
        return table

    def _run(self, batch: dict[str, Any]) -> tuple[dict[str, np.ndarray], list[str | None]]:
        size = len(next(iter(batch.values())))
        try:
            return self._check(self.operator(batch), size), [None] * size
        except Exception:
            pass  # find the row(s) at fault below
        parts: list[dict[str, np.ndarray] | None] = []
        failures: list[str | None] = []
        for i in range(size):
            try:
                parts.append(self._check(self.operator({k: v[i : i + 1] for k, v in batch.items()}), 1))
                failures.append(None)
            except Exception as error:
                parts.append(None)
                failures.append(describe(error))
        done = [p for p in parts if p is not None]
        if not done:
            return {}, failures
        merged = {}
        for name in self.outputs:
            template = np.asarray(done[0][name])
            full = np.zeros((size, *template.shape[1:]), dtype=template.dtype)
            if template.dtype == object or template.dtype.kind in "US":
                full = np.empty(size, dtype=object)
            for i, part in enumerate(parts):
                if part is not None:
                    full[i] = part[name][0]
            merged[name] = full
        return merged, failures

    def _check(self, out: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
        for name in self.outputs:
            if name not in out or len(out[name]) != size:
                raise ValueError(f"operator returned no {size} rows of {name!r}")
        return out


def _column_as_numpy(column: pa.ChunkedArray):
    if pa.types.is_fixed_size_list(column.type):
        return arrow_to_tensor(column)
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        return arrow_to_lists(column)
    return column.to_numpy()


def _rows(values, rows: np.ndarray):
    if isinstance(values, list):
        return [values[i] for i in rows]
    return values[rows]


def _scatter(values: np.ndarray, rows: np.ndarray, total: int) -> pa.Array:
    """Per-row outputs for the good rows; zeros (tensors) or nulls (text, lists) elsewhere."""
    if values.dtype == object or values.dtype.kind in "US":
        full: list = [None] * total
        for row, value in zip(rows, values, strict=True):
            full[row] = value.tolist() if isinstance(value, np.ndarray) else value
        return pa.array(full)
    dense = np.zeros((total, *values.shape[1:]), dtype=values.dtype)
    if len(rows):
        dense[rows] = values
    return tensor_to_arrow(dense)
