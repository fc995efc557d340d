"""Direct model calls, no rayjobs code: what the pipeline's outputs must match."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image


def sentence_transformer_vectors(model_path: str, texts: list[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_path, device="cpu").encode(texts, convert_to_numpy=True)


def image_vectors(model_path: str, images: list[bytes]) -> np.ndarray:
    from transformers import AutoImageProcessor, AutoModel

    model, processor = (
        AutoModel.from_pretrained(model_path).eval(),
        AutoImageProcessor.from_pretrained(model_path),
    )
    pil = [Image.open(io.BytesIO(b)).convert("RGB") for b in images]
    with torch.inference_mode():
        out = model.get_image_features(**processor(images=pil, return_tensors="pt"))
    return torch.nn.functional.normalize(getattr(out, "pooler_output", out), dim=-1).numpy()


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())
