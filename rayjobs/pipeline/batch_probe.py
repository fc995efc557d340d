"""`model.batch_size=auto`: each model actor picks its own batch size once.

On a GPU it is the largest power of two up to `model.max_batch_size` that runs without running
out of memory, tried on copies of the block's largest row (worst case): `probe_batch_size`.
On a CPU it is the fastest, found while doing real work (`LiveProbe`): the first batches run at
8, 16, 32, ... rows and are timed, and their results are kept. Speed is compared per padded
element (rows x longest row), not per row; since text blocks arrive length-sorted, the actor
takes the probe's batches from the middle of its first block, where lengths barely change (from
the short end, every larger size would also get longer rows and look faster than it is).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SMALLEST = 8
FLAT = 1.03  # a doubling that gains less than 3% rows/s is not worth its latency and memory
MIN_SECONDS = 0.25  # per size and comparison on a CPU: a 10 ms batch timed once is mostly noise
MIN_REPEATS = 2
LONG_BATCH_S = 1.0  # a size whose batches took this long in all is measured, however few they were
MAX_REPEATS = 8  # ... and one run this many times is so fast that its batch size hardly matters


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
    """The CPU batch size, chosen on the job's own batches: call size(), run, then record().

    Each doubling is an A/B test: batches of n and 2n rows alternate until both are timed over
    `MIN_SECONDS`, so a slow patch of the machine (other processes starting, a noisy neighbour)
    hits both sizes instead of deciding the race. 2n wins if it is `FLAT` faster; then 2n
    meets 4n, and so on.
    """

    def __init__(self, limit: int) -> None:
        self.sizes = _sizes(limit)
        self.warm = False  # the first batch warms up thread pools and kernels, and is not timed
        self.pair = 0  # comparing sizes[pair] with sizes[pair + 1]
        self.result = ProbeResult(size=self.sizes[0], device="cpu")
        self.done = len(self.sizes) == 1
        self._timed: dict[int, list[float]] = {}  # size -> [elements, seconds, batches], this pair

    def size(self) -> int:
        if self.done or not self.warm:
            return self.result.size
        small, large = self.sizes[self.pair], self.sizes[self.pair + 1]
        # Alternate, favouring whichever of the two still has less time behind it.
        return small if self._seconds(small) <= self._seconds(large) else large

    def contender(self) -> int:
        """The larger size of the race under way."""
        return self.sizes[min(self.pair + 1, len(self.sizes) - 1)]

    def stop(self) -> None:
        """Settle on the best size so far: blocks are smaller than the next size to try."""
        self.done = True

    def record(self, batch: dict[str, Any], seconds: float) -> None:
        size = len(next(iter(batch.values())))
        if not self.warm:
            self.warm = True
            return
        if self.done or size not in self.sizes[self.pair : self.pair + 2]:
            return  # a block's short tail
        timed = self._timed.setdefault(size, [0.0, 0.0, 0])
        timed[0] += _work(batch)
        timed[1] += seconds
        timed[2] += 1
        small, large = self.sizes[self.pair], self.sizes[self.pair + 1]
        if not (self._measured(small) and self._measured(large)):
            return
        rates = {n: self._timed[n][0] / max(self._timed[n][1], 1e-9) for n in (small, large)}
        for n in (small, large):
            self.result.rows_per_s[n] = n * self._timed[n][2] / max(self._timed[n][1], 1e-9)
        self._timed = {}
        if rates[large] < FLAT * rates[small]:
            self.result.size = small
            self.done = True
            return
        self.result.size = large
        self.pair += 1
        self.done = self.pair + 1 >= len(self.sizes)

    def _seconds(self, size: int) -> float:
        return self._timed.get(size, [0.0, 0.0, 0])[1]

    def _measured(self, size: int) -> bool:
        _, seconds, batches = self._timed.get(size, [0.0, 0.0, 0])
        return (
            (seconds >= MIN_SECONDS and batches >= MIN_REPEATS)
            or seconds >= LONG_BATCH_S
            or batches >= MAX_REPEATS
        )


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
