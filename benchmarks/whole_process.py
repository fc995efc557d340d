"""A whole `python -m rayjobs.<job>` process against the plain script a new user would write.

    python -m benchmarks.whole_process embed_texts [--rows 6000] [key=value ...]
    python -m benchmarks.whole_process embed_images [--rows 768] [key=value ...]

Both run as fresh processes on the same generated input, one after the other, and are timed from
spawn to exit: interpreter start, imports, Ray start-up (rayjobs), model load, the work, the
writes. texts: the Parquet -> `SentenceTransformer.encode(batch_size=128)` -> Parquet, on the
real all-MiniLM-L6-v2. images: the JPEGs -> PIL -> the checkpoint's processor ->
`get_image_features` in batches of 32 -> Parquet, on a ViT-B/32-shaped CLIP (random weights).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from benchmarks import models, synthetic
from benchmarks.report import RESULTS, write_result

PLAIN_TEXTS = """
import sys, numpy as np, pyarrow as pa, pyarrow.parquet as pq
from sentence_transformers import SentenceTransformer
source, model, out = sys.argv[1:4]
table = pq.read_table(source)
vectors = SentenceTransformer(model, device="cpu").encode(table["text"].to_pylist(), batch_size=128)
pq.write_table(pa.table({"id": table["id"], "embedding": list(vectors)}), out)
"""

PLAIN_IMAGES = """
import sys, pathlib, numpy as np, pyarrow as pa, pyarrow.parquet as pq, torch
from PIL import Image
from transformers import CLIPModel, CLIPProcessor
folder, model_path, out = sys.argv[1:4]
model, processor = CLIPModel.from_pretrained(model_path).eval(), CLIPProcessor.from_pretrained(model_path)
paths, vectors = sorted(pathlib.Path(folder).glob("*.jpg")), []
with torch.inference_mode():
    for start in range(0, len(paths), 32):
        images = [Image.open(p).convert("RGB") for p in paths[start : start + 32]]
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        features = model.get_image_features(pixel_values=pixels)
        features = getattr(features, "pooler_output", features)
        vectors.extend(features.numpy())
pq.write_table(pa.table({"id": [p.stem for p in paths], "embedding": vectors}), out)
"""

DEFAULT_ROWS = {"embed_texts": 6000, "embed_images": 768}


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def rows_out(folder: Path) -> int:
    return sum(pq.read_metadata(part).num_rows for part in sorted((folder / "data").glob("*.parquet")))


def main(argv: list[str] | None = None) -> dict:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("job", choices=sorted(DEFAULT_ROWS))
    parser.add_argument("--rows", type=int)
    parser.add_argument("--json", type=Path, help="write the result here instead of benchmarks/results/")
    parser.add_argument("overrides", nargs="*", help="rayjobs config overrides")
    args = parser.parse_args(argv)
    rows = args.rows or DEFAULT_ROWS[args.job]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.job == "embed_texts":
            model = models.minilm()
            source = synthetic.write_texts(work / "texts.parquet", rows)
            plain, keys = PLAIN_TEXTS, ["input.id_column=id", "model.batch_size=128"]
        else:
            model = models.clip_vit_b32()
            source = synthetic.write_images(work / "images", rows)
            plain, keys = PLAIN_IMAGES, ["model.batch_size=32"]
        out = work / "out"
        plain_s = timed([sys.executable, "-c", plain, str(source), model, str(work / "plain.parquet")])
        command = [sys.executable, "-m", f"rayjobs.{args.job}", f"input.path={source}", f"output.path={out}"]
        command += [f"model.path={model}", "runtime.progress_bars=false", *keys, *args.overrides]
        rayjobs_s = timed(command)
        written = rows_out(out)
        if written != rows or pq.read_metadata(work / "plain.parquet").num_rows != rows:
            raise SystemExit(f"expected {rows} rows from both, rayjobs wrote {written}")
    result = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "job": f"{args.job} (whole process)",
        "device": f"CPU ({os.cpu_count()} cores, {platform.machine()})",
        "model": models.display_name(model),
        "rows": rows,
        "plain_script_s": plain_s,
        "rayjobs_process_s": rayjobs_s,
        "rayjobs_over_plain": plain_s / rayjobs_s,  # > 1: rayjobs finished sooner
        "overrides": args.overrides,
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = write_result(result, args.json or RESULTS / f"whole_process-{args.job}-{stamp}.json")
    print(json.dumps(result, indent=2), f"\n-> {path}")
    return result


if __name__ == "__main__":
    main()
