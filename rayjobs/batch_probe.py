"""`model.batch_size=auto`: each model actor picks its own batch size once.

On a GPU it is the largest power of two up to `model.max_batch_size` that runs without running
out of memory, tried on copies of the block's largest row (worst case): `probe_batch_size`.
On a CPU it is the fastest, found while doing real work (`LiveProbe`): the first batches run at
8, 16, 32, ... rows and are timed, and their results are kept. Rows arrive length-sorted, so
speed is compared per padded element (rows x longest row), not per row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SMALLEST = 8
FLAT = 1.03  # a doubling that gains less than 3% rows/s is not worth its latency and memory


@dataclass
class ProbeResult:
    size: int
    device: str
    rows_per_s: dict[int, float] = field(default_factory=dict)  # every size tried, except out of memory
    out_of_memory_at: int | None = None
    note: str = ""

    def describe(self) -> str:
        tried = ", ".join(f"{size}: {rate:.0f}" for size, rate in self.rows_per_s.items())
        oom = f"; out of memory at {self.out_of_memory_at}" if self.out_of_memory_at else ""
        note = f"; {self.note}" if self.note else ""
        return (
            f"model.batch_size=auto chose {self.size} on {self.device} (rows/s by size: {tried}{oom}{note})"
        )


class LiveProbe:
    """The CPU batch size, chosen on the job's own batches: call size(), run, then record()."""

    def __init__(self, limit: int) -> None:
        self.sizes = _sizes(limit)
        self.step = -1  # -1: the first batch warms up thread pools and kernels, and is not timed
        self.rates: dict[int, float] = {}  # padded elements/s: what the decision compares
        self.result = ProbeResult(size=self.sizes[0], device="cpu")
        self.done = False

    def size(self) -> int:
        return self.sizes[max(self.step, 0)]

    def stop(self) -> None:
        """Settle on the best size so far: blocks are smaller than the next size to try."""
        self.done = True

    def record(self, batch: dict[str, Any], seconds: float) -> None:
        size = len(next(iter(batch.values())))
        if self.step < 0 or size < self.size():  # the warm-up, or a block's short tail
            self.step = max(self.step, 0)
            return
        self.rates[size] = _work(batch) / max(seconds, 1e-9)
        self.result.rows_per_s[size] = size / max(seconds, 1e-9)
        top = max(self.rates.values())
        # The smallest size near the top rate: less latency and memory for the same speed.
        self.result.size = min(s for s, rate in self.rates.items() if rate * FLAT >= top)
        smaller = [rate for s, rate in self.rates.items() if s < size]
        self.step += 1
        if (smaller and self.rates[size] < FLAT * max(smaller)) or self.step >= len(self.sizes):
            self.done = True


def _work(batch: dict[str, Any]) -> int:
    """Elements a batch makes the model compute: rows x longest row for ragged inputs (padding)."""
    values = batch[next(iter(batch))]
    if isinstance(values, np.ndarray) and values.dtype != object:
        return len(values)
    return len(values) * max((_length(v) for v in values), default=1)


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA (and other accelerators') out-of-memory errors, without importing torch here."""
    return type(error).__name__ == "OutOfMemoryError" or "out of memory" in str(error).lower()


def probe_batch_size(
    run: Callable[[dict[str, Any]], Any],
    batch: dict[str, Any],
    *,
    limit: int,
    budget_s: float = 30.0,
    release: Callable[[], None] = lambda: None,
) -> ProbeResult:
    """GPU: the largest of 8, 16, ... `limit` rows that `run` takes without running out of
    memory, on copies of the batch's largest row (results discarded).

    Rows the operator refuses are left out of the copies. `release` frees cached accelerator
    memory after an out-of-memory error.
    """
    sizes = _sizes(limit)
    result = ProbeResult(size=sizes[0], device="gpu")
    candidates = _by_size(batch)
    rows = candidates[:1]
    try:
        run(_take(batch, rows, sizes[0]))  # warm-up: kernels, allocator
    except Exception as error:
        if is_out_of_memory(error):
            release()
            return ProbeResult(size=1, device=result.device, out_of_memory_at=sizes[0])
        # A row the operator refuses (it will land in errors/): probe on one that runs.
        good = [row for row in candidates if _runs(run, _take(batch, np.array([row]), 1))]
        if not good:
            result.note = f"no sampled row ran ({type(error).__name__})"
            return result
        rows = np.array(good[:1])
    spent = 0.0
    for size in sizes:
        started = time.perf_counter()
        try:
            run(_take(batch, rows, size))
        except Exception as error:
            if is_out_of_memory(error):
                release()
                result.out_of_memory_at = size
            else:
                result.note = f"stopped at {size}: {type(error).__name__}"
            break
        seconds = time.perf_counter() - started
        spent += seconds
        result.rows_per_s[size] = size / max(seconds, 1e-9)
        result.size = size  # the largest that fits so far
        if spent > budget_s:
            break
    return result


def _sizes(limit: int) -> list[int]:
    sizes = [SMALLEST]
    while sizes[-1] * 2 <= limit:
        sizes.append(sizes[-1] * 2)
    if limit < SMALLEST:
        return [max(1, limit)]
    return sizes


def _length(value: Any) -> int:
    return len(value) if hasattr(value, "__len__") else 1


def _by_size(batch: dict[str, Any]) -> np.ndarray:
    """Up to 16 rows, those with the most elements (longest text, largest image) first."""
    values = batch[next(iter(batch))]
    if isinstance(values, np.ndarray) and values.dtype != object:
        return np.arange(min(len(values), 16))  # fixed-shape tensors: every row costs the same
    sizes = np.array([_length(v) for v in values])
    return np.argsort(-sizes, kind="stable")[:16]


def _runs(run: Callable[[dict[str, Any]], Any], batch: dict[str, Any]) -> bool:
    try:
        run(batch)
        return True
    except Exception:
        return False


def _take(batch: dict[str, Any], rows: np.ndarray, size: int) -> dict[str, Any]:
    picked = np.resize(rows, size)
    return {
        name: [values[i] for i in picked] if isinstance(values, list) else values[picked]
        for name, values in batch.items()
    }
