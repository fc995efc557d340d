import numpy as np

from rayjobs.pipeline.batch_probe import is_out_of_memory, probe_batch_size


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError, which the probe recognises by name."""


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
    result = probe_batch_size(run, {"ids": rows}, limit=512, release=lambda: released.append(1))
    assert (result.size, result.out_of_memory_at, released) == (64, 128, [1])
    assert all(set(lengths) == {9} for lengths in seen)  # worst case: the longest row, repeated


def test_the_limit_caps_the_sizes_tried():
    result = probe_batch_size(lambda batch: batch, {"x": np.arange(4)}, limit=20)
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

    result = probe_batch_size(run, {"x": np.arange(10)}, limit=32)
    assert result.size == 32 and not result.note, result.describe()

    def refuses_all(batch):
        raise ValueError("nothing runs")

    result = probe_batch_size(refuses_all, {"x": np.arange(10)}, limit=32)
    assert result.size == 8 and "no sampled row ran" in result.note


def test_live_probe_races_each_doubling_in_alternation_per_padded_element():
    from rayjobs.pipeline.batch_probe import LiveProbe

    probe = LiveProbe(limit=64)
    rows = lambda n, length: {"ids": [np.arange(length)] * n}  # noqa: E731
    probe.record(rows(8, 5), 9.0)  # warm-up: not timed
    assert (probe.size(), probe.done) == (8, False)
    probe.record(rows(8, 10), 0.8)  # 100 elements/s, but one short batch is not enough
    assert probe.size() == 16  # the sizes take turns
    probe.record(rows(16, 20), 1.6)  # 200/s: longer rows, but more per second
    probe.record(rows(3, 20), 0.5)  # a block's short tail: ignored
    assert probe.size() == 8
    probe.record(rows(8, 10), 0.8)  # 8 now has two batches and 1.6 s: 16 wins the first race
    assert (probe.size(), probe.done, probe.result.size) == (16, False, 16)
    probe.record(rows(16, 20), 1.6)
    assert probe.size() == 32
    probe.record(rows(32, 30), 4.7)  # ~204/s: within 3% of 200, so doubling no longer pays
    assert probe.done and probe.result.size == 16 and probe.size() == 16
    assert set(probe.result.rows_per_s) == {8, 16, 32}


def test_live_probe_times_small_fast_batches_more_than_once():
    from rayjobs.pipeline.batch_probe import LiveProbe

    probe = LiveProbe(limit=16)
    probe.record({"x": np.zeros(8)}, 0.01)  # warm-up
    for _ in range(6):  # 10 ms batches: neither size is measured after 3 batches each
        probe.record({"x": np.zeros(probe.size())}, 0.01)
    assert not probe.done
    while not probe.done:
        probe.record({"x": np.zeros(probe.size())}, 0.01 if probe.size() == 8 else 0.05)
    assert probe.result.size == 8  # 16 rows in 50 ms lose to 8 in 10 ms
