"""transform_images' ceiling: the same decode + resize + encode (its own CPU stage) on every core in
a process pool, with no Ray, no reading from disk and no writing; rayjobs runs the whole job."""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pyarrow as pa


def _transform_chunk(args: tuple[dict[str, Any], list[bytes]]) -> int:
    from operators.image.transform_images import transform_images

    options, blobs = args
    table = pa.table({"id": [str(i) for i in range(len(blobs))], "image": pa.array(blobs, pa.binary())})
    return transform_images(table, image_column="image", **options).num_rows


def transform_ceiling(blobs: list[bytes], options: dict[str, Any], workers: int | None = None) -> float:
    """Output images/s of transform_images' decode + resize + encode on `workers` processes."""
    workers = workers or os.cpu_count() or 1
    chunks = [(options, blobs[i : i + 32]) for i in range(0, len(blobs), 32)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_transform_chunk, chunks[:workers]))  # warm-up: imports
        started = time.perf_counter()
        done = sum(pool.map(_transform_chunk, chunks))
    return done / (time.perf_counter() - started)
