"""generate_images and score_images ceilings, in images/s: the diffusers pipeline alone, called in
a loop with the job's batch size, steps and size (no Ray, no encoding), and ImageScorer alone on
pixel batches built beforehand (no decode, no Ray)."""

from __future__ import annotations

import time

import numpy as np
import torch

from benchmarks.text_embedding import sync


def pipeline_ceiling(
    model_path: str, prompts: list[str], batch_size: int, steps: int, side: int, device: str
) -> float:
    """Images/s of the pipeline called on `batch_size` prompts at a time, one seeded generator
    per image as the job gives, numpy output (no PIL images, no encoding)."""
    from diffusers import AutoPipelineForText2Image

    dtype = torch.float16 if device == "cuda" else torch.float32
    pipeline = AutoPipelineForText2Image.from_pretrained(model_path, torch_dtype=dtype).to(device)
    pipeline.set_progress_bar_config(disable=True)
    settings = {"num_inference_steps": steps, "height": side, "width": side, "output_type": "np"}

    def call(chunk: list[str]) -> None:
        generators = [torch.Generator("cpu").manual_seed(i) for i in range(len(chunk))]
        pipeline(chunk, generator=generators, **settings)

    call(prompts[:batch_size])  # warm-up
    sync(device)
    started = time.perf_counter()
    for start in range(0, len(prompts), batch_size):
        call(prompts[start : start + batch_size])
    sync(device)
    return len(prompts) / (time.perf_counter() - started)


def scorer_ceiling(model_path: str, rows: int, batch_size: int, device: str, **score) -> float:
    """Images/s of ImageScorer (CLIP score against one text unless `score` says otherwise) on a
    pre-built uint8 pixel batch, the input its actors get."""
    from operators.image.image_scorer import ImageScorer

    scorer = ImageScorer(model_path, device=device, **(score or {"text": "a photo of a product"}))
    size = scorer.model.config.vision_config.image_size
    pixels = np.random.default_rng(0).integers(0, 255, (batch_size, 3, size, size), dtype=np.uint8)
    steps = max(2, rows // batch_size)
    scorer({"pixel_values": pixels})  # warm-up
    sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        scorer({"pixel_values": pixels})
    sync(device)
    return steps * batch_size / (time.perf_counter() - started)
