"""The actor around an operator: feeds it the good rows, passes every other column through.

The operator itself only sees tensors (dict of numpy arrays) and returns arrays. A batch that
fails is retried row by row, so one poisonous row cannot take its neighbours with it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import numpy as np
import pyarrow as pa
from hydra.utils import get_class

from operators.arrow_tensors import arrow_to_lists, arrow_to_tensor, tensor_to_arrow
from operators.row_errors import add_error_columns, describe, good_rows, mark_errors
from rayjobs.pipeline.batch_probe import SMALLEST, LiveProbe, ProbeResult, is_out_of_memory, probe_batch_size

BATCH_SIZE_PREFIX = "_batch_size:"  # + stage name: the batch size the actor ran at, for the run record

log = logging.getLogger("rayjobs")


class ModelStage:
    """Callable class for Dataset.map_batches: one operator instance per actor."""

    def __init__(
        self,
        target: str,
        kwargs: dict[str, Any],
        num_threads: int | None = None,
        batch_size: int | str | None = None,
        max_batch_size: int = 1024,
        stage: str = "model",
        batch_tokens: int | None = None,
    ) -> None:
        """`batch_size`: rows per operator call ("auto": probed on the first call, then fixed);
        `batch_tokens`: token-list inputs only: calls cut so rows x the longest row stays within
        it (and rows within batch_size); `stage`: the config block's name, which errors of this
        stage are recorded under."""
        import torch

        if num_threads:
            torch.set_num_threads(num_threads)
        self.auto = batch_size == "auto"
        self.batch_size: int | None = None if self.auto else batch_size  # type: ignore[assignment]
        self.max_batch_size = max_batch_size
        self.batch_tokens = batch_tokens
        self.probe: ProbeResult | None = None
        self.live: LiveProbe | None = None  # CPU + auto: picking the size on the first batches
        self.operator = get_class(target)(**kwargs)
        # From the instance: an operator's options may change what it reads (decode="device").
        self.inputs: tuple[str, ...] = tuple(self.operator.inputs)
        self.optional: tuple[str, ...] = tuple(getattr(self.operator, "optional_inputs", ()))
        self.outputs: tuple[str, ...] = tuple(self.operator.outputs)
        self.stage = stage
        self.pid = os.getpid()
        self.first_call = threading.Lock()  # GPU actors run two calls at once: one probes

    def __call__(self, table: pa.Table) -> pa.Table:
        table = add_error_columns(table)
        good = good_rows(table)
        rows = np.flatnonzero(good)
        results: dict[str, np.ndarray] = {}
        failures: list[str | None] = [None] * table.num_rows
        if len(rows):
            # Index in numpy: pyarrow 26's take/filter garble sliced nested fixed_size_list columns.
            present = [*self.inputs, *(name for name in self.optional if name in table.column_names)]
            batch = {name: _column_as_numpy(table[name]) for name in present}
            if len(rows) < table.num_rows:  # only then copy: most batches have no bad row
                batch = {name: _rows(values, rows) for name, values in batch.items()}
            if self.auto and self.probe is None and self.live is None:
                with self.first_call:
                    if self.probe is None and self.live is None:
                        self._probe(batch)
            results, row_failures = self._run_chunks(batch)
            for row, failure in zip(rows, row_failures, strict=True):
                failures[row] = failure
        if not getattr(self.operator, "keeps_inputs", False):  # a generator keeps what made each row
            table = table.drop_columns([name for name in self.inputs if name in table.column_names])
        table = mark_errors(table, failures, self.stage)
        for name in self.outputs:
            if name in results:  # absent when no row of the batch survived: all leave as errors
                table = table.append_column(name, _scatter(results[name], rows, table.num_rows))
        size = pa.array(np.full(table.num_rows, self.batch_size or 0, dtype=np.int32))
        return table.append_column(f"{BATCH_SIZE_PREFIX}{self.stage}", size)

    def _probe(self, batch: dict[str, Any]) -> None:
        import torch

        if not (torch.cuda.is_available() and torch.cuda.device_count() > 0):
            self.live = LiveProbe(self.max_batch_size)  # CPU: timed on the real batches that follow
            return
        self.probe = probe_batch_size(
            self.operator, batch, limit=self.max_batch_size, release=_release_memory
        )
        self.batch_size = self.probe.size
        log.warning("%s", self.probe.describe())  # warning: Ray forwards it to the driver's console

    def _run_chunks(self, batch: dict[str, Any]) -> tuple[dict[str, np.ndarray], list[str | None]]:
        """Operator calls of at most `batch_size` rows; out of memory halves the size and retries."""
        total = len(next(iter(batch.values())))
        order = None
        if self.live is not None and not self.live.done and total >= 4 * SMALLEST:
            # Probe on the middle of the block: sorted lengths barely change there (see batch_probe).
            order = np.roll(np.arange(total), -(total // 2))
            batch = {name: _rows(values, order) for name, values in batch.items()}
        parts: list[tuple[dict[str, np.ndarray], int]] = []
        failures: list[str | None] = []
        start = 0
        while start < total:
            probing = self.live is not None and not self.live.done
            if probing and start == 0 and self.live.warm and self.live.contender() > total:
                self.live.stop()  # whole blocks are smaller than the next size to try
                self._settle()
                probing = False
            wanted = self.live.size() if probing else self.batch_size
            size = self._within_tokens(batch, start, min(wanted or total, total - start))
            chunk = {name: values[start : start + size] for name, values in batch.items()}
            started = time.perf_counter()
            try:
                results, chunk_failures = self._run(chunk)
            except Exception as error:  # only out of memory gets here, with more than one row
                self.batch_size = max(1, size // 2)
                if self.batch_tokens:
                    self.batch_tokens = max(1, self.batch_tokens // 2)
                _release_memory()
                log.warning(
                    "model: %s at %d rows; batches of %d from now on", describe(error), size, self.batch_size
                )
                continue
            if probing and not any(chunk_failures):  # a row-by-row retry would skew the timing
                self.live.record(chunk, time.perf_counter() - started)
                self._settle()
            parts.append((results, size))
            failures.extend(chunk_failures)
            start += size
        merged = parts[0][0] if len(parts) == 1 else self._merge(parts)
        if order is None:
            return merged, failures
        back = np.argsort(order)
        return {name: _rows(values, back) for name, values in merged.items()}, [failures[i] for i in back]

    def _within_tokens(self, batch: dict[str, Any], start: int, rows: int) -> int:
        """How many of `rows` rows from `start` keep rows x the longest within batch_tokens (>= 1).

        Blocks arrive shortest first, so short rows go in big calls and long ones in small calls,
        with the same padded tokens (the work and memory of a call) in each."""
        lists = batch.get(self.inputs[0])
        if not self.batch_tokens or not isinstance(lists, list):
            return rows
        longest = 0
        for taken in range(rows):
            longest = max(longest, len(lists[start + taken]))
            if taken and (taken + 1) * longest > self.batch_tokens:
                return taken
        return rows

    def _settle(self) -> None:
        """Once the live probe is done, run at its size from now on."""
        if self.live.done:
            self.probe = self.live.result
            self.batch_size = self.probe.size
            log.warning("%s", self.probe.describe())

    def _run(self, batch: dict[str, Any]) -> tuple[dict[str, np.ndarray], list[str | None]]:
        size = len(next(iter(batch.values())))
        try:
            return self._check(self.operator(batch), size), [None] * size
        except Exception as error:
            if size > 1 and is_out_of_memory(error):
                raise  # a smaller batch will do: _run_chunks halves it
        parts: list[tuple[dict[str, np.ndarray], int]] = []
        failures: list[str | None] = []
        for i in range(size):  # find the row(s) at fault
            try:
                parts.append((self._check(self.operator({k: v[i : i + 1] for k, v in batch.items()}), 1), 1))
                failures.append(None)
            except Exception as error:
                parts.append(({}, 1))
                failures.append(describe(error))
        return self._merge(parts), failures

    def _merge(self, parts: list[tuple[dict[str, np.ndarray], int]]) -> dict[str, np.ndarray]:
        """Concatenates per-chunk outputs; chunks without results ({}: every row failed) get filler."""
        done = [results for results, _ in parts if results]
        if not done:
            return {}
        merged = {}
        for name in self.outputs:
            template = np.asarray(done[0][name])
            text = template.dtype == object or template.dtype.kind in "US"
            pieces = []
            for results, rows in parts:
                if results:
                    pieces.append(np.asarray(results[name], dtype=object if text else None))
                elif text:
                    pieces.append(np.full(rows, None, dtype=object))
                else:
                    pieces.append(np.zeros((rows, *template.shape[1:]), dtype=template.dtype))
            merged[name] = np.concatenate(pieces)
        return merged

    def _check(self, out: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
        for name in self.outputs:
            if name not in out or len(out[name]) != size:
                raise ValueError(f"operator returned no {size} rows of {name!r}")
        return out


def named_stage(stage: str) -> type[ModelStage]:
    """ModelStage under a class name of its own for a chain's `stage` (ModelStage[upscale]): Ray
    Data keys each operator's stats by its name, so a chain's second MapBatches(ModelStage) would
    report "[execution cached]" instead of its rate."""
    return type(f"ModelStage[{stage}]", (ModelStage,), {})


def _release_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


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
    if len(rows) == total:
        return tensor_to_arrow(values)
    dense = np.zeros((total, *values.shape[1:]), dtype=values.dtype)
    if len(rows):
        dense[rows] = values
    return tensor_to_arrow(dense)
