"""Deterministic synthetic inputs: texts of realistic, varied lengths and JPEGs of realistic sizes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from operators.arrow_tensors import tensor_to_arrow

VOCABULARY = (
    "the of and to in is was for on that with as by at from his her an be this which or had are not but "
    "have it one were all they their been has more when who will there would about no out up into so "
    "said what some can its than other time new only could people these two may first then do any like "
    "my now over such our man me even most made after also did many before must through back years "
    "where much your way well down should because each just those how too little state good very make "
    "world still own see men work long get here between both life being under never day same another "
    "know while last might us great old year off come since against go came right used take three city "
    "market river garden winter summer coffee engine window doctor school music history science water "
    "mountain village company product customer shipping quality battery camera screen leather cotton"
).split()


def texts(rows: int, seed: int = 0, min_words: int = 4, max_words: int = 60) -> list[str]:
    """Sentences of min_words..max_words words (uniform), with punctuation and capitals."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(rows):
        words = rng.choice(VOCABULARY, size=int(rng.integers(min_words, max_words + 1)))
        sentence = " ".join(words)
        out.append(sentence[0].upper() + sentence[1:] + ".")
    return out


def jpeg(rng: np.random.Generator, quality: int = 85) -> bytes:
    """A photo-like JPEG: smooth gradients, shapes and sensor noise, 256-640 px a side."""
    width, height = (int(v) for v in rng.integers(256, 641, size=2))
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            np.sin(x / rng.uniform(30, 200) + c) * 60 + np.cos(y / rng.uniform(30, 200) - c) * 60 + 128
            for c in range(3)
        ],
        axis=-1,
    )
    image = Image.fromarray(np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 12))):
        box = sorted(rng.integers(0, width, 2).tolist()) + sorted(rng.integers(0, height, 2).tolist())
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([box[0], box[2], box[1], box[3]], fill=color)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def jpegs(count: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [jpeg(rng) for _ in range(count)]


def write_texts(path: Path, rows: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": np.arange(rows), "text": texts(rows, seed)}), path, row_group_size=4096)
    return path


def write_images(folder: Path, count: int, seed: int = 0, distinct: int | None = None) -> Path:
    """`count` JPEGs as files in folder/files/ (returned); with `distinct`, cycling through that
    many images (a large input built fast)."""
    files = folder / "files"
    files.mkdir(parents=True, exist_ok=True)
    blobs = jpegs(min(count, distinct or count), seed)
    for i in range(count):
        (files / f"{i:07d}.jpg").write_bytes(blobs[i % len(blobs)])
    return files


def clustered(rows: int, dim: int, clusters: int, seed: int = 0) -> np.ndarray:
    """Vectors around random centres: the structure real embeddings have (and IVF relies on)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    members = rng.integers(0, clusters, rows)
    return (centres[members] + 0.35 * rng.normal(size=(rows, dim))).astype(np.float32)


def write_embeddings(folder, vectors: np.ndarray, files: int = 2, record: dict | None = None) -> None:
    """What an embedding job leaves: data/part-*.parquet (id, embedding, metadata) and _run.json."""
    (folder / "data").mkdir(parents=True)
    for part, rows in enumerate(np.array_split(np.arange(len(vectors)), files)):
        pq.write_table(
            pa.table(
                {
                    "id": [f"item-{i}" for i in rows],
                    "embedding": tensor_to_arrow(vectors[rows]),
                    "lang": ["en" if i % 3 else "fr" for i in rows],
                    "blob": pa.array([b"x"] * len(rows), pa.binary()),
                }
            ),
            folder / "data" / f"part-{part:06d}.parquet",
            row_group_size=1000,
        )
    (folder / "_run.json").write_text(json.dumps(record or {"config": {"job": {"name": "embed_texts"}}}))
