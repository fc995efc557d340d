"""Deterministic synthetic inputs: texts of realistic, varied lengths, JPEGs of realistic sizes and
h264 videos with motion, texture and cuts."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
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


def plant_duplicates(
    bases: np.ndarray, fraction: float = 0.2, noise: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, group of each row): `bases` with near-duplicate groups of 2..6 rows planted until
    about `fraction` of the rows are copies; a copy is its base plus Gaussian noise of `noise` x
    the base's per-dimension scale (0.1: cosine about 0.99 to its base). Rows shuffled, so groups
    span shards; a base without copies is a group of one."""
    rng = np.random.default_rng(seed)
    rows, dim = bases.shape
    sizes, copies = [], 0
    while copies < fraction * rows and len(sizes) < rows:
        sizes.append(2 + len(sizes) % 5)
        copies += sizes[-1] - 1
    group = np.concatenate([np.arange(rows), np.repeat(np.arange(len(sizes)), np.array(sizes) - 1)])
    scale = noise * np.linalg.norm(bases[group], axis=1, keepdims=True) / np.sqrt(dim)
    vectors = bases[group] + np.where(np.arange(len(group))[:, None] < rows, 0.0, 1.0) * scale * rng.normal(
        size=(len(group), dim)
    )
    order = rng.permutation(len(group))
    return vectors[order].astype(np.float32), group[order]


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


VIDEO_SIZE = (1280, 720)  # width, height: 720p
VIDEO_FPS = 30
SCENE_SECONDS = 5.0  # a new palette (a cut) this often: keyframes and scene changes, as in footage


def video_frames(
    seconds: float, seed: int = 0, size: tuple[int, int] = VIDEO_SIZE, fps: int = VIDEO_FPS
) -> Iterator[np.ndarray]:
    """H x W x 3 uint8 frames that keep an encoder busy: a panning gradient (new colours every
    SCENE_SECONDS), textured blocks moving across it and grain that differs in every frame."""
    rng = np.random.default_rng(seed)
    width, height = size
    per_scene = max(1, round(SCENE_SECONDS * fps))
    pan = max(1, width // 320)  # px a frame: 4 at 720p, 120 px a second
    side = max(8, height // 6)
    tiles = rng.integers(0, 256, (8, side, side, 3), dtype=np.uint8)
    grain = rng.integers(-4, 5, (height + 16, width + 16, 3)).astype(np.int16)
    mixed = np.empty((height, width, 3), np.int16)
    for number in range(round(seconds * fps)):
        step = number % per_scene
        if step == 0:
            canvas = _scene_canvas(rng, width + pan * per_scene, height)
            starts = rng.uniform(0, 1, (len(tiles), 2)) * (width - side, height - side)
            speeds = rng.uniform(-6, 6, (len(tiles), 2))
        dy, dx = (int(v) for v in rng.integers(0, 16, 2))
        view = canvas[:, step * pan : step * pan + width]
        np.add(view, grain[dy : dy + height, dx : dx + width], out=mixed)
        frame = np.clip(mixed, 0, 255).astype(np.uint8)
        for block, (x, y) in enumerate(starts + speeds * step):
            left, top = int(x) % (width - side), int(y) % (height - side)
            frame[top : top + side, left : left + side] = tiles[(block + number // 5) % len(tiles)]
        yield frame


def _scene_canvas(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """One scene's backdrop: a smooth gradient in random colours, wider than a frame (it pans)."""
    y, x = np.ogrid[0:height, 0:width]
    periods, phases = rng.uniform(40, 300, (3, 2)), rng.uniform(0, 6, 3)
    channels = [
        np.sin(x / periods[c, 0] + phases[c]) * 60 + np.cos(y / periods[c, 1] - phases[c]) * 60 + 128
        for c in range(3)
    ]
    return np.stack(channels, axis=-1).astype(np.int16)


def write_video(
    path: Path,
    seconds: float,
    seed: int = 0,
    size: tuple[int, int] = VIDEO_SIZE,
    fps: int = VIDEO_FPS,
    crf: int = 23,
    preset: str = "faster",
) -> Path:
    """An h264 .mp4 (libx264, yuv420p, its default GOP) of video_frames; written under another
    name and renamed, so an interrupted run never leaves a short video that looks finished."""
    import av

    partial = path.with_name(path.name + ".partial")
    with av.open(str(partial), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        for pixels in video_frames(seconds, seed, size, fps):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    partial.rename(path)
    return path


def write_videos(
    folder: Path,
    count: int,
    seconds: float,
    size: tuple[int, int] = VIDEO_SIZE,
    fps: int = VIDEO_FPS,
    workers: int | None = None,
) -> list[Path]:
    """`count` videos in folder (video i from seed i), encoded one per core; files already there
    are kept, so a rerun, or a run with more videos, encodes only what is missing."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"video-{i:03d}.mp4" for i in range(count)]
    missing = [(path, seconds, i, size, fps) for i, path in enumerate(paths) if not path.exists()]
    if missing:
        workers = min(len(missing), workers or os.cpu_count() or 1)
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_video, missing))
    return paths


def _write_video(job: tuple[Path, float, int, tuple[int, int], int]) -> Path:
    path, seconds, seed, size, fps = job
    return write_video(path, seconds, seed, size, fps)
