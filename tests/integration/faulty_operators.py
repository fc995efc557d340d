"""Operators that fail on purpose, for the reliability tests (named by `model._target_`)."""

from __future__ import annotations

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
    """TextEmbedder that sleeps per batch, so a test can act while a job is part-way through."""

    inputs: ClassVar[tuple[str, ...]] = ("input_ids",)
    outputs: ClassVar[tuple[str, ...]] = ("embedding",)

    def __init__(self, path: str, seconds_per_batch: float, **kwargs) -> None:
        self.embedder = TextEmbedder(path, **kwargs)
        self.seconds = seconds_per_batch

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(self.seconds)
        return self.embedder(batch)


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
