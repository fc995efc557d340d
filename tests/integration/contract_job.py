"""A job of every shape at once, for the run-contract tests: texts -> tokenize -> fan out into
1-3 children (CPU) -> embed (model pool 1) -> filter index 2 (CPU) -> embedding norm (model pool 2).

    python -m tests.integration.contract_job input.path=... output.path=... model.path=...
"""

from __future__ import annotations

import time
from typing import ClassVar

import numpy as np
import pyarrow as pa

from operators.fan_out import INDEX, fan_out
from operators.row_errors import good_rows, mark_filtered
from operators.text.tokenize_texts import tokenize_texts
from rayjobs.pipeline.cli import run_cli
from rayjobs.pipeline.job_run import RunResult, start_job
from rayjobs.pipeline.model_stage import ModelStage
from rayjobs.pipeline.write_results import write_results


def children(doc_id: int) -> int:
    return 1 + doc_id % 3


def expand(table: pa.Table) -> pa.Table:
    """k = 1 + doc_id % 3 children per good row."""
    counts = [children(int(i)) for i in table["id"].to_pylist()]
    return fan_out(table, counts, only=good_rows(table))


def drop_third_child(table: pa.Table) -> pa.Table:
    indexes = table[INDEX].to_pylist()
    return mark_filtered(
        table, [f"index {i} >= 2" if i is not None and i >= 2 else None for i in indexes], "judge"
    )


class EmbeddingNorm:
    """The second model stage: each row's embedding norm, slowly, so a kill lands mid-run."""

    inputs: ClassVar[tuple[str, ...]] = ("embedding",)
    outputs: ClassVar[tuple[str, ...]] = ("norm",)

    def __init__(self, seconds_per_batch: float = 0.0) -> None:
        self.seconds = seconds_per_batch

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(self.seconds)
        return {"norm": np.linalg.norm(batch["embedding"], axis=1).astype(np.float32)}


def overrides(source, out, model: str) -> list[str]:
    return [
        f"input.path={source}",
        "input.id_column=doc_id",
        f"output.path={out}",
        "input.shard_rows=40",
        "model._target_=tests.integration.faulty_operators.SlowTextEmbedder",
        f"model.path={model}",
        "+model.seconds_per_batch=0.03",
        "model.batch_size=8",
        "model.num_cpus=0.5",
        "+expand.batch_size=null",
        "+expand.num_cpus=0.5",
        "+judge.batch_size=null",
        "+judge.num_cpus=0.5",
        "+second._target_=tests.integration.contract_job.EmbeddingNorm",
        "+second.seconds_per_batch=0.02",
        "+second.batch_size=16",
        "+second.num_cpus=0.25",
        "runtime.progress_bars=false",
        "job.max_error_fraction=0.1",
        "job.progress_interval_s=0.5",
    ]


def run(cfg) -> RunResult:
    models = {"model": (("input_ids",), ("embedding",)), "second": (("embedding",), ("norm",))}
    job = start_job(cfg, models=models, tasks=("preprocess", "expand", "judge"), columns=[("text", "text")])
    if job.result:
        return job.result
    options = {"model_path": cfg.model.path, "text_column": "text", "keep_text": False}
    rows = job.read(columns=["text"])
    tokens = rows.map_batches(tokenize_texts, fn_kwargs=options, **job.task_args())
    expanded = tokens.map_batches(expand, **job.task_args("expand"))
    embedded = expanded.map_batches(ModelStage, **job.model_args())
    judged = embedded.map_batches(drop_third_child, **job.task_args("judge"))
    normed = judged.map_batches(ModelStage, **job.model_args("second"))
    return job.finish(normed.map_batches(write_results, **job.write_args(["norm"])))


def main(cfg) -> int:
    result = run(cfg)
    print(result.summary(), flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    run_cli("embed_texts", run=main)  # embed_texts' config, this chain
