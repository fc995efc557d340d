"""Operators that fail on purpose, for the reliability tests (named by `model._target_`)."""

from __future__ import annotations

import os
import time
from typing import ClassVar

import numpy as np

from operators.text.text_embedder import TextEmbedder


class FailsOnToken:
    """TextEmbedder that raises for any batch holding `poison_id`: one bad row per poisoned text."""

    inputs: ClassVar[tuple[str, ...]] = ("input_ids",)
    outputs: ClassVar[tuple[str, ...]] = ("embedding",)

    def __init__(self, path: str, poison_id: int, **kwargs) -> None:
        self.embedder = TextEmbedder(path, **kwargs)
        self.poison_id = poison_id

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if any(self.poison_id in row for row in batch["input_ids"]):
            raise RuntimeError(f"CUDA error: device-side assert triggered (token {self.poison_id})")
        return self.embedder(batch)


class SlowTextEmbedder:
    """A stand-in embedder that sleeps per batch, so a test can act while a job is part-way
    through. Each row's vector is a function of its token ids alone: the tests using it are about
    the pipeline (kills, resume, node loss), and loading no model keeps each actor's start short."""

    inputs: ClassVar[tuple[str, ...]] = ("input_ids",)
    outputs: ClassVar[tuple[str, ...]] = ("embedding",)

    def __init__(self, path: str, seconds_per_batch: float, dim: int = 8, **kwargs) -> None:
        # SLOW_EMBEDDER_SECONDS (runtime.env_vars: not fingerprinted) slows one run of a job only.
        self.seconds, self.dim = float(os.environ.get("SLOW_EMBEDDER_SECONDS", seconds_per_batch)), dim

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(self.seconds)
        vectors = np.zeros((len(batch["input_ids"]), self.dim), dtype=np.float32)
        for row, ids in enumerate(batch["input_ids"]):
            np.add.at(vectors[row], np.asarray(ids, dtype=np.int64) % self.dim, 1.0)
        return {"embedding": vectors}


def slow_job_overrides(source, out, model: str) -> list[str]:
    """embed_texts over `source` with SlowTextEmbedder: slow enough to act on part-way through."""
    return [
        f"input.path={source}",
        "input.id_column=doc_id",
        f"output.path={out}",
        "model._target_=tests.integration.faulty_operators.SlowTextEmbedder",
        f"model.path={model}",
        "+model.seconds_per_batch=0.05",
        "model.batch_size=8",
        "input.shard_rows=60",
        "runtime.progress_bars=false",
        "job.max_error_fraction=0.1",
    ]
