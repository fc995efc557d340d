"""embed_texts measurements: model ceiling, SentenceTransformer.encode(), a textbook Ray Data
script, and rayjobs end to end, on the same texts, model and batch size."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def model_ceiling(model_path: str, texts: list[str], batch_size: int, device: str) -> float:
    """rows/s of the encoder alone on pre-built, length-sorted, padded batches: no I/O, no Ray."""
    from transformers import AutoModel, AutoTokenizer

    from operators.text.sentence_config import read_sentence_config
    from operators.text.text_embedder import pool

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    limit = read_sentence_config(model_path).max_seq_length or 512
    dtype = torch.float16 if device == "cuda" else torch.float32
    model = AutoModel.from_pretrained(model_path, dtype=dtype).eval().to(device)
    ordered = sorted(texts, key=len)
    batches = [
        {
            k: v.to(device)
            for k, v in tokenizer(
                ordered[i : i + batch_size],
                padding=True,
                truncation=True,
                max_length=limit,
                return_tensors="pt",
            ).items()
        }
        for i in range(0, len(ordered), batch_size)
    ]
    with torch.inference_mode():
        model(**batches[0])  # warm-up: kernels, allocator
        sync(device)
        started = time.perf_counter()
        for batch in batches:
            hidden = model(**batch).last_hidden_state
            pool(hidden, batch["attention_mask"], "mean").float().cpu()
        sync(device)
    return len(texts) / (time.perf_counter() - started)


def encode_baseline(model_path: str, texts: list[str], batch_size: int, device: str) -> float:
    """rows/s of SentenceTransformer.encode() in this process (what most users start with)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device=device)
    if device == "cuda":
        model.half()
    model.encode(texts[:batch_size], batch_size=batch_size)  # warm-up
    started = time.perf_counter()
    model.encode(texts, batch_size=batch_size, convert_to_numpy=True)
    sync(device)
    return len(texts) / (time.perf_counter() - started)


class TextbookEmbedder:
    """What a Ray Data tutorial writes: load the model in __init__, encode in __call__."""

    def __init__(self, model_path: str, device: str) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(model_path, device=device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"id": batch["id"], "embedding": self.model.encode(list(batch["text"]), convert_to_numpy=True)}


def textbook_ray(model_path: str, source: Path, out: Path, batch_size: int, device: str) -> float:
    """rows/s of read_parquet -> map_batches(class, ActorPoolStrategy) -> write_parquet (Ray already up)."""
    import ray

    rows = ray.data.read_parquet(str(source)).count()
    started = time.perf_counter()
    (
        ray.data.read_parquet(str(source))
        .map_batches(
            TextbookEmbedder,
            fn_constructor_kwargs={"model_path": model_path, "device": device},
            compute=ray.data.ActorPoolStrategy(size=1),
            batch_size=batch_size,
            num_gpus=1 if device == "cuda" else 0,
        )
        .write_parquet(str(out))
    )
    return rows / (time.perf_counter() - started)
