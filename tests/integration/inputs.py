"""Small generated inputs for the end-to-end tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

WORDS = "a the cat dog red blue car tree house photo of on in with and small big sea sky park".split()
BAD_TEXTS = {7: "", 19: None, 33: "   "}


def texts(rows: int, seed: int = 0) -> list[str | None]:
    rng = np.random.default_rng(seed)
    out: list[str | None] = [" ".join(rng.choice(WORDS, rng.integers(3, 40))) for _ in range(rows)]
    for row, bad in BAD_TEXTS.items():
        if row < rows:
            out[row] = bad
    return out


def write_texts(folder: Path, rows: int = 120, files: int = 2) -> dict[int, str | None]:
    """`files` Parquet files with doc_id, text, lang; returns doc_id -> text."""
    folder.mkdir(parents=True, exist_ok=True)
    all_texts = texts(rows)
    per_file = -(-rows // files)
    for f in range(files):
        ids = list(range(f * per_file, min(rows, (f + 1) * per_file)))
        table = pa.table(
            {
                "doc_id": [1000 + i for i in ids],
                "text": [all_texts[i] for i in ids],
                "lang": ["en"] * len(ids),
            }
        )
        pq.write_table(table, folder / f"part{f}.parquet", row_group_size=16)
    return {1000 + i: text for i, text in enumerate(all_texts)}


def jpeg(seed: int, size: tuple[int, int] = (48, 40)) -> bytes:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_images(folder: Path, count: int = 30) -> dict[str, bytes | None]:
    """A folder (with a subfolder) of JPEGs and PNGs plus two broken files; id -> bytes (None = bad)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sub").mkdir(exist_ok=True)
    made: dict[str, bytes | None] = {}
    for i in range(count):
        name = f"{'sub/' if i % 4 == 0 else ''}img{i:03d}.jpg"
        data = jpeg(i, (30 + i, 60 - i))
        (folder / name).write_bytes(data)
        made[name] = data
    (folder / "broken.jpg").write_bytes(b"this is not a jpeg")
    (folder / "sub" / "empty.png").write_bytes(b"")
    made["broken.jpg"] = None
    made["sub/empty.png"] = None
    return made


def write_image_table(path: Path, count: int = 12) -> dict[str, bytes]:
    """A Parquet table of JPEG bytes with a key and a caption column; key -> bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    images = {f"k{i}": jpeg(100 + i) for i in range(count)}
    table = pa.table(
        {
            "key": list(images),
            "jpeg": pa.array(list(images.values()), pa.binary()),
            "caption": [f"caption {i}" for i in range(count)],
        }
    )
    pq.write_table(table, path, row_group_size=5)
    return images
