"""Model operators that do no model work, to measure the pipeline around them.

NullTextEmbedder / NullImageEmbedder return zeros of an embedding's shape: the job then runs at
what the pipeline can feed any accelerator (the feed ceiling). `seconds_per_batch` makes them
busy-wait instead, so a ModelStage's time per call minus the sleep is its own per-batch overhead.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np


class NullTextEmbedder:
    inputs: ClassVar[tuple[str, ...]] = ("input_ids",)
    outputs: ClassVar[tuple[str, ...]] = ("embedding",)

    def __init__(self, dim: int = 384, seconds_per_batch: float = 0.0, **_: Any) -> None:
        self.dim = dim
        self.seconds = seconds_per_batch

    def __call__(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        if self.seconds:
            _wait(self.seconds)
        return {"embedding": np.zeros((len(next(iter(batch.values()))), self.dim), dtype=np.float32)}


class NullImageEmbedder(NullTextEmbedder):
    inputs: ClassVar[tuple[str, ...]] = ("pixel_values",)

    def __init__(self, dim: int = 512, seconds_per_batch: float = 0.0, **_: Any) -> None:
        super().__init__(dim, seconds_per_batch)


def _wait(seconds: float) -> None:
    """Busy until `seconds` pass: the core stays hot, as under a model (a sleep would cool it)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
