"""caption_images measurements in captions/s: the captioner's generate() alone on pre-built pixel
batches (no decode, no Ray) and rayjobs end to end, on the same model, batch size and length."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq
import torch

from benchmarks.text_embedding import sync


def model_ceiling(model_path: str, rows: int, batch_size: int, max_new_tokens: int, device: str) -> dict:
    """Captions/s and generated tokens/s of greedy generate() on a pre-built batch on the device."""
    from operators.image.image_captioner import load_captioning_model

    dtype = torch.float16 if device == "cuda" else torch.float32
    model = load_captioning_model(model_path, dtype, False).eval().to(device)
    size = model.config.vision_config.image_size
    pixels = torch.randn(batch_size, 3, size, size, dtype=dtype, device=device)
    steps = max(2, rows // batch_size)
    settings = {"max_new_tokens": max_new_tokens, "do_sample": False, "num_beams": 1}
    generated = 0
    with torch.inference_mode():
        model.generate(pixel_values=pixels, max_new_tokens=2)  # warm-up
        sync(device)
        started = time.perf_counter()
        for _ in range(steps):
            out = model.generate(pixel_values=pixels, **settings)
            generated += int(out.shape[0] * max(0, out.shape[1] - 1))  # less the start token
        sync(device)
    seconds = time.perf_counter() - started
    return {"captions": steps * batch_size / seconds, "tokens": generated / seconds}


def generated_tokens(out: Path) -> int:
    return sum(pq.read_table(out / "data", columns=["generated_tokens"])["generated_tokens"].to_pylist())


def chat_ceiling(
    model_path: str, images: list[bytes], batch_size: int, max_new_tokens: int, device: str
) -> dict:
    """Chat VLMs: greedy generate() alone on batches the processor built beforehand from the
    same images (decode, tiling and the chat template outside the timing)."""
    import io

    from PIL import Image

    from operators.image.chat_captioner import DEFAULT_PROMPT, ChatCaptioner

    captioner = ChatCaptioner(model_path, max_new_tokens=max_new_tokens, device=device)
    batches = []
    for start in range(0, len(images), batch_size):
        chunk = [Image.open(io.BytesIO(data)).convert("RGB") for data in images[start : start + batch_size]]
        batches.append(captioner.encode(chunk, [DEFAULT_PROMPT] * len(chunk)))
    generated = 0
    with torch.inference_mode():
        captioner.model.generate(**batches[0], max_new_tokens=2)  # warm-up
        sync(device)
        started = time.perf_counter()
        for batch in batches:
            out = captioner.model.generate(**batch, generation_config=captioner.generation)
            new = out[:, batch["input_ids"].shape[1] :]
            generated += int((new != captioner.generation.pad_token_id).sum())
        sync(device)
    seconds = time.perf_counter() - started
    return {"captions": len(images) / seconds, "tokens": generated / seconds}
