"""embed_images measurements: model ceiling, decode ceiling, a textbook Ray Data script, and
rayjobs end to end, on the same JPEGs, model and batch size."""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from benchmarks.text_embedding import sync


def model_ceiling(model_path: str, rows: int, batch_size: int, device: str) -> float:
    """rows/s of get_image_features alone on a pre-built batch on the device: no decode, no Ray."""
    from transformers import AutoModel

    dtype = torch.float16 if device == "cuda" else torch.float32
    model = AutoModel.from_pretrained(model_path, dtype=dtype).eval().to(device)
    size = model.config.vision_config.image_size
    pixels = torch.randn(batch_size, 3, size, size, dtype=dtype, device=device)
    steps = max(2, rows // batch_size)
    with torch.inference_mode():
        model.get_image_features(pixel_values=pixels)  # warm-up
        sync(device)
        started = time.perf_counter()
        for _ in range(steps):
            model.get_image_features(pixel_values=pixels).pooler_output.float().cpu()
        sync(device)
    return steps * batch_size / (time.perf_counter() - started)


def _decode_chunk(args: tuple[str, list[bytes]]) -> int:
    from operators.image.decode_images import decode_images

    model_path, blobs = args
    table = decode_images(
        pa.table({"image": pa.array(blobs, pa.binary())}), model_path=model_path, image_column="image"
    )
    return table.num_rows


def decode_ceiling(model_path: str, blobs: list[bytes], workers: int | None = None) -> float:
    """rows/s of JPEG decode + resize + crop (the pipeline's own CPU stage) on every core."""
    workers = workers or os.cpu_count() or 1
    chunks = [(model_path, blobs[i : i + 32]) for i in range(0, len(blobs), 32)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_decode_chunk, chunks[:workers]))  # warm-up: imports, processor load
        started = time.perf_counter()
        done = sum(pool.map(_decode_chunk, chunks))
    return done / (time.perf_counter() - started)


def device_decode_ceiling(model_path: str, blobs: list[bytes], batch_size: int, device: str) -> float:
    """rows/s of model.decode=device's decode + resize + crop + normalise (DevicePixels) in one
    process: nvJPEG and the GPU on a GPU; PIL and torch on one process's cores otherwise."""
    from operators.image.device_pixels import DevicePixels

    dtype = torch.float16 if device == "cuda" else torch.float32
    pixels = DevicePixels(model_path, torch.device(device), dtype)
    batches = [blobs[i : i + batch_size] for i in range(0, len(blobs), batch_size)]
    pixels(batches[0])  # warm-up: CUDA context, nvJPEG handles
    sync(device)
    started = time.perf_counter()
    for batch in batches:
        pixels(batch)
    sync(device)
    return len(blobs) / (time.perf_counter() - started)


class TextbookImageEmbedder:
    """What a Ray Data tutorial writes: processor + model in one actor."""

    def __init__(self, model_path: str, device: str) -> None:
        from transformers import AutoImageProcessor, AutoModel

        self.device = device
        self.processor = AutoImageProcessor.from_pretrained(model_path)
        self.model = AutoModel.from_pretrained(model_path).eval().to(device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs = self.processor(images=list(batch["image"]), return_tensors="pt").to(self.device)
        with torch.inference_mode():
            vectors = self.model.get_image_features(**inputs).pooler_output
        return {"path": batch["path"], "embedding": vectors.float().cpu().numpy()}


def textbook_ray(model_path: str, folder: Path, out: Path, batch_size: int, device: str) -> float:
    """rows/s of read_images -> map_batches(class, ActorPoolStrategy) -> write_parquet (Ray already up)."""
    import ray

    rows = len(list(folder.glob("*.jpg")))
    started = time.perf_counter()
    (
        ray.data.read_images(str(folder), mode="RGB", include_paths=True)
        .map_batches(
            TextbookImageEmbedder,
            fn_constructor_kwargs={"model_path": model_path, "device": device},
            compute=ray.data.ActorPoolStrategy(size=1),
            batch_size=batch_size,
            num_gpus=1 if device == "cuda" else 0,
        )
        .write_parquet(str(out))
    )
    return rows / (time.perf_counter() - started)
