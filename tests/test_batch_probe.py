import time

import numpy as np

from rayjobs.batch_probe import is_out_of_memory, probe_batch_size


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError, which the probe recognises by name."""


class CostModel:
    """An operator whose call takes a known time: cheaper per row up to `sweet` rows, dearer above."""

    def __init__(self, sweet: int = 32, oom_above: int | None = None) -> None:
        self.sweet = sweet
        self.oom_above = oom_above
        self.sizes: list[int] = []

    def __call__(self, batch):
        size = len(batch["x"])
        self.sizes.append(size)
        if self.oom_above and size > self.oom_above:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        time.sleep(0.05 + 0.004 * size if size <= self.sweet else 0.008 * size)
        return {"y": batch["x"] * 2}


def test_cpu_picks_the_fastest_size_and_stops_past_the_peak():
    model = CostModel(sweet=32)
    result = probe_batch_size(model, {"x": np.arange(40)}, gpu=False, limit=1024)
    # rows/s: 8 -> ~98, 16 -> ~140, 32 -> ~180, 64 -> ~125: the peak is 32, 128 is never tried
    assert result.size == 32, result.describe()
    assert list(result.rows_per_s) == [8, 16, 32, 64]
    assert model.sizes == [8, 8, 8, 16, 16, 32, 32, 64, 64]  # a warm-up call, then the best of two
    assert "chose 32 on cpu" in result.describe()


def test_gpu_picks_the_largest_size_that_fits_on_the_longest_row():
    seen: list[list[int]] = []
    released = []

    def run(batch):
        lengths = [len(row) for row in batch["ids"]]
        seen.append(lengths)
        if len(lengths) > 100:
            raise OutOfMemoryError("CUDA out of memory")
        return {}

    rows = [np.arange(n) for n in (3, 9, 5)]  # the longest row is tried, not the median
    result = probe_batch_size(run, {"ids": rows}, gpu=True, limit=512, release=lambda: released.append(1))
    assert (result.size, result.out_of_memory_at, released) == (64, 128, [1])
    assert all(set(lengths) == {9} for lengths in seen)  # worst case: the longest row, repeated


def test_the_limit_caps_the_sizes_tried():
    result = probe_batch_size(lambda batch: batch, {"x": np.arange(4)}, gpu=True, limit=20)
    assert list(result.rows_per_s) == [8, 16] and result.size == 16


def test_out_of_memory_is_recognised_by_type_name_or_message():
    assert is_out_of_memory(OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(ValueError("shape mismatch"))


def test_rows_the_operator_refuses_are_left_out_of_the_probe():
    def run(batch):
        if (batch["x"] == 0).any():
            raise ValueError("row 0 is poison")
        return batch

    for gpu in (False, True):
        result = probe_batch_size(run, {"x": np.arange(10)}, gpu=gpu, limit=32)
        assert result.size in (8, 16, 32) and not result.note, result.describe()

    def refuses_all(batch):
        raise ValueError("nothing runs")

    result = probe_batch_size(refuses_all, {"x": np.arange(10)}, gpu=False, limit=32)
    assert result.size == 8 and "no sampled row ran" in result.note


def test_cpu_probes_copies_of_the_median_row_so_padding_does_not_bias_the_sizes():
    seen: list[set[int]] = []

    def run(batch):
        seen.append({len(row) for row in batch["ids"]})
        return batch

    rows = [np.arange(n) for n in (2, 30, 7, 11, 5)]
    probe_batch_size(run, {"ids": rows}, gpu=False, limit=16)
    assert seen and all(lengths == {7} for lengths in seen)


def test_live_probe_compares_padded_elements_per_second_on_the_real_batches():
    from rayjobs.batch_probe import LiveProbe

    probe = LiveProbe(limit=64)
    rows = lambda n, length: {"ids": [np.arange(length)] * n}  # noqa: E731
    probe.record(rows(8, 5), 9.0)  # warm-up: not timed
    assert (probe.size(), probe.done) == (8, False)
    probe.record(rows(8, 10), 0.8)  # 100 elements/s
    probe.record(rows(16, 20), 1.6)  # 200/s: longer rows, but more per second
    probe.record(rows(3, 20), 0.5)  # a block's short tail: ignored
    assert (probe.size(), probe.done) == (32, False)
    probe.record(rows(32, 30), 4.7)  # ~204/s: within 3% of 200, so doubling no longer pays
    assert probe.done and probe.result.size == 16
    assert set(probe.result.rows_per_s) == {8, 16, 32}
