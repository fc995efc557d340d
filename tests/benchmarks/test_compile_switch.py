"""benchmarks.compile_switch on a few rows, with torch.compile's eager backend (fast to trace)."""

import pytest

from benchmarks import compile_switch

pytestmark = pytest.mark.timeout(300)


def test_both_operators_are_timed_over_the_same_batches():
    result = compile_switch.measure("embed_texts", rows=48, batch_size=16, backend="eager")
    figures = result["figures"]
    for name in ("eager_rows_per_s", "compiled_rows_per_s", "compiled_first_pass_rows_per_s"):
        assert figures[name] > 0, name
    assert figures["speedup"] == pytest.approx(figures["compiled_rows_per_s"] / figures["eager_rows_per_s"])
    assert (result["rows"], result["backend"], result["model"]) == (48, "eager", "all-MiniLM-L6-v2")
