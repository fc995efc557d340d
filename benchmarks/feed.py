"""The pipeline without the model: what it can feed an accelerator, and what ModelStage costs.

feed_ceiling: the whole job (read, tokenize / decode, the actor, write) with a no-op model that
returns zeros, end to end rows/s after Ray is up, and per CPU core. host overhead: ModelStage
called in this process on a batch shaped as the CPU stage makes it, around an operator that
keeps the core busy for `sleep_s` per call; the stage's time per call over the operator's own, as
a share of the operator's (the best of a few alternating rounds: this machine's speed drifts).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pyarrow as pa

from operators.arrow_tensors import lists_to_arrow, tensor_to_arrow

NULL_OPERATORS = {
    "embed_texts": "benchmarks.null_operators.NullTextEmbedder",
    "embed_images": "benchmarks.null_operators.NullImageEmbedder",
}


def feed_overrides(job: str) -> list[str]:
    """Overrides that swap the job's model for the no-op one (the checkpoint still feeds the CPU stage)."""
    return [f"model._target_={NULL_OPERATORS[job]}"]


def per_core(rows_per_s: float) -> float:
    return rows_per_s / (os.cpu_count() or 1)


def host_overhead(
    job: str, batch_size: int, sleep_s: float = 0.01, calls: int = 50, rounds: int = 3
) -> float:
    """ModelStage's own share per call: (stage call - operator call) / operator call."""
    from rayjobs.pipeline.model_stage import ModelStage, _column_as_numpy

    stage = ModelStage(NULL_OPERATORS[job], {"seconds_per_batch": sleep_s}, batch_size=batch_size)
    table = _stage_input(job, batch_size)
    batch = {name: _column_as_numpy(table[name]) for name in stage.inputs}
    stage(table)  # warm-up
    bound, staged = [], []
    for _ in range(rounds):
        bound.append(_per_call(lambda: stage.operator(batch), calls))
        staged.append(_per_call(lambda: stage(table), calls))
    return (min(staged) - min(bound)) / min(bound)


def _per_call(call, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls


def _stage_input(job: str, rows: int) -> pa.Table:
    """A batch as the CPU stage hands it over: ids, shard columns, the model's input."""
    rng = np.random.default_rng(0)
    if job == "embed_texts":
        lengths = np.sort(rng.integers(8, 80, rows))
        model_input = lists_to_arrow([rng.integers(0, 30000, n).astype(np.int32) for n in lengths])
        name = "input_ids"
    else:
        model_input = tensor_to_arrow(rng.integers(0, 255, (rows, 3, 224, 224), dtype=np.uint8))
        name = "pixel_values"
    return pa.table(
        {
            "_shard": pa.array(np.zeros(rows, dtype=np.int32)),
            "_row": pa.array(np.arange(rows)),
            "id": pa.array([str(i) for i in range(rows)]),
            name: model_input,
        }
    )
