"""`model.compile` on and off: the embedding operator itself in a tight loop, no Ray.

    python -m benchmarks.compile_switch embed_texts [--rows 4096] [--batch-size 128] [--backend inductor]
    python -m benchmarks.compile_switch embed_images [--rows 512] [--batch-size 32]

The same operator (TextEmbedder / ImageEmbedder) is built twice, plain and with `compile`, and
run twice over the same batches (texts: tokenized by the CPU stage, length-sorted, as the
pipeline sends them; images: uint8 224 px pixels). The first pass of the compiled one includes
its compiling (once, and once more when shapes first change); the second pass is its steady
state. Writes results/compile-<job>-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import pyarrow as pa
import torch

from benchmarks import models, synthetic
from benchmarks.report import RESULTS
from benchmarks.text_embedding import sync


def text_batches(model: str, rows: int, batch_size: int) -> list[dict]:
    from operators.arrow_tensors import arrow_to_lists
    from operators.text.tokenize_texts import tokenize_texts

    table = tokenize_texts(pa.table({"text": synthetic.texts(rows)}), model_path=model, text_column="text")
    ids = arrow_to_lists(table["input_ids"])
    return [{"input_ids": ids[i : i + batch_size]} for i in range(0, len(ids), batch_size)]


def image_batches(rows: int, batch_size: int) -> list[dict]:
    pixels = np.random.default_rng(0).integers(0, 255, (rows, 3, 224, 224), dtype=np.uint8)
    return [{"pixel_values": pixels[i : i + batch_size]} for i in range(0, rows, batch_size)]


def passes(operator, batches: list[dict], device: str) -> tuple[float, float]:
    """Seconds of a first and a second pass over `batches`."""
    seconds = []
    for _ in range(2):
        started = time.perf_counter()
        for batch in batches:
            operator(batch)
        sync(device)
        seconds.append(time.perf_counter() - started)
    return seconds[0], seconds[1]


def measure(job: str, rows: int, batch_size: int, backend: str) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if job == "embed_texts":
        from operators.text.text_embedder import TextEmbedder as Operator

        model = models.minilm()
        batches = text_batches(model, rows, batch_size)
    else:
        from operators.image.image_embedder import ImageEmbedder as Operator

        model = models.clip_vit_b32()
        batches = image_batches(rows, batch_size)
    option: bool | str = True if backend == "inductor" else backend
    figures = {}
    for name, compile_option in (("eager", False), ("compiled", option)):
        first, second = passes(Operator(model, compile=compile_option), batches, device)
        figures[f"{name}_first_pass_rows_per_s"] = rows / first
        figures[f"{name}_rows_per_s"] = rows / second
    figures["compile_s"] = (
        rows / figures["compiled_first_pass_rows_per_s"] - rows / figures["compiled_rows_per_s"]
    )
    figures["speedup"] = figures["compiled_rows_per_s"] / figures["eager_rows_per_s"]
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "job": job,
        "model": models.display_name(model),
        "device": f"{name}, {platform.machine()}",
        "rows": rows,
        "batch_size": batch_size,
        "backend": backend,
        "torch": torch.__version__,
        "figures": figures,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("job", choices=["embed_texts", "embed_images"])
    parser.add_argument("--rows", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--backend", default="inductor", help="a torch.compile backend")
    args = parser.parse_args(argv)
    texts = args.job == "embed_texts"
    rows = args.rows or (4096 if texts else 256)
    batch_size = args.batch_size or (128 if texts else 32)
    result = measure(args.job, rows, batch_size, args.backend)
    path = RESULTS / f"compile-{args.job}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2), f"\nresult: {path}")
    return result


if __name__ == "__main__":
    main()
