"""Reading WebDataset tars against a folder of image files: the same small JPEGs both ways.

    python -m benchmarks.webdataset_read [--rows 2000] [--side 128] [--tar-samples 250]

Figures (rows/s): the raw ceilings in one process with no Ray (iterating the tars with tarfile,
reading the files one by one, decoding the bytes with PIL), then rayjobs' reader + a decode stage
on local Ray for input=webdataset and input=images, each once to warm up and twice measured,
alternating (a shared machine's slow moment hits both). A tar is one shard; the folder gets shards
of as many files, so both runs have the same number of read tasks. The tars are written by
output=webdataset's own writer.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from benchmarks.report import publish_result
from benchmarks.synthetic import jpegs


def small_jpegs(count: int, side: int, distinct: int = 200) -> list[bytes]:
    """`count` photo-like JPEGs at most `side` px a side, cycling through `distinct` of them."""
    made = []
    for blob in jpegs(min(count, distinct)):
        image = Image.open(io.BytesIO(blob))
        image.thumbnail((side, side))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
        made.append(buffer.getvalue())
    return [made[i % len(made)] for i in range(count)]


def write_inputs(work: Path, blobs: list[bytes], tar_samples: int) -> tuple[Path, Path]:
    """(a folder of the files, a folder of tars of `tar_samples` each, written by write_tars)."""
    from rayjobs.io.storage import filesystem
    from rayjobs.io.webdataset_output import Sample, write_tars

    files = work / "files"
    files.mkdir(parents=True)
    for i, blob in enumerate(blobs):
        (files / f"{i:07d}.jpg").write_bytes(blob)
    samples = [Sample(f"{i:07d}", "jpg", blob, b'{"id":"%07d.jpg"}' % i) for i, blob in enumerate(blobs)]
    fs, root = filesystem(str(work / "wds"))
    for start in range(0, len(samples), tar_samples):
        write_tars(fs, root, f"part-{start:07d}", samples[start : start + tar_samples], None, None)
    return files, work / "wds" / "tars"


def rate(count: int, started: float) -> float:
    return count / (time.perf_counter() - started)


def tar_ceiling(tars: Path) -> float:
    """Samples/s of iterating the tars with tarfile (read_samples), one process, no decode."""
    from rayjobs.io.storage import filesystem
    from rayjobs.io.webdataset_input import read_samples

    fs, _ = filesystem(str(tars))
    started, count = time.perf_counter(), 0
    for tar in sorted(tars.iterdir()):
        count += len(read_samples(fs, str(tar))[0])
    return rate(count, started)


def folder_ceiling(files: Path) -> float:
    """Files/s of listing the folder and reading each file, one process, no decode."""
    started = time.perf_counter()
    count = sum(1 for path in sorted(files.rglob("*.jpg")) if path.read_bytes())
    return rate(count, started)


def decode_ceiling(blobs: list[bytes]) -> float:
    """Images/s of decoding the bytes to RGB (open_image: what the decode stage does), one process."""
    from operators.image.decode_images import open_image

    started = time.perf_counter()
    for blob in blobs:
        open_image(blob, 178_956_970)
    return rate(len(blobs), started)


def decode_stage(table: pa.Table, *, image_column: str) -> pa.Table:
    """The decode stage measured: every image decoded to RGB; the bytes are dropped, the size kept."""
    from operators.image.decode_images import open_image

    widths = [
        open_image(blob, 178_956_970).width if blob else None for blob in table[image_column].to_pylist()
    ]
    return table.drop_columns([image_column]).append_column("width", pa.array(widths, pa.int32()))


def through_ray(fmt: str, path: Path, shard_rows: int) -> tuple[float, int]:
    """(rows/s, rows) of rayjobs' reader for `fmt` and the decode stage, fused in one task per shard."""
    from rayjobs.config.run_spec import InputSpec
    from rayjobs.io.read_input import plan_input, read_input

    node = {"path": str(path), "format": fmt, "shard_rows": shard_rows}
    if fmt == "images":
        node["extensions"] = [".jpg"]
    spec = InputSpec.parse(node)
    started = time.perf_counter()
    plan = plan_input(spec)
    rows = read_input(plan, plan.shards, spec, [])
    decoded = rows.map_batches(
        decode_stage, fn_kwargs={"image_column": "image"}, batch_format="pyarrow", batch_size=None
    )
    count = sum(batch.num_rows for batch in decoded.iter_batches(batch_size=None, batch_format="pyarrow"))
    return rate(count, started), count


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--side", type=int, default=128, help="the JPEGs' longer side, px")
    parser.add_argument("--tar-samples", type=int, default=250, help="samples a tar (and files a shard)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    import ray

    work = Path(tempfile.mkdtemp(prefix="webdataset-read-"))
    try:
        blobs = small_jpegs(args.rows, args.side)
        files, tars = write_inputs(work, blobs, args.tar_samples)
        figures = {
            "tar_iteration_ceiling": tar_ceiling(tars),
            "folder_read_ceiling": folder_ceiling(files),
            "decode_ceiling": decode_ceiling(blobs),
        }
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        runs: dict[str, list[float]] = {"webdataset": [], "images": []}
        try:
            for fmt, path in (("webdataset", tars), ("images", files)):  # warm-up: worker processes, imports
                through_ray(fmt, path, args.tar_samples)
            for _ in range(2):
                for fmt, path in (("webdataset", tars), ("images", files)):
                    speed, count = through_ray(fmt, path, args.tar_samples)
                    assert count == args.rows, f"{fmt}: {count} rows of {args.rows}"
                    runs[fmt].append(speed)
        finally:
            ray.shutdown()
        for fmt, speeds in runs.items():
            figures[f"rayjobs_{fmt}_read_decode"] = max(speeds)
            figures[f"rayjobs_{fmt}_runs"] = speeds
        result = {
            "job": "webdataset_read",
            "unit": "rows/s",
            "device": f"CPU ({os.cpu_count()} cores, {platform.machine()})",
            "rows": args.rows,
            "image_side": args.side,
            "mean_jpeg_bytes": round(float(np.mean([len(b) for b in blobs]))),
            "tars": len(list(tars.iterdir())),
            "tar_samples": args.tar_samples,
            "figures": {
                k: [round(v, 1) for v in f] if isinstance(f, list) else round(f, 1)
                for k, f in figures.items()
            },
            "ratios": {
                "webdataset/images": round(
                    figures["rayjobs_webdataset_read_decode"] / figures["rayjobs_images_read_decode"], 2
                ),
                "tar/folder ceiling": round(
                    figures["tar_iteration_ceiling"] / figures["folder_read_ceiling"], 2
                ),
            },
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    publish_result(result, args.json)
    return result


if __name__ == "__main__":
    main()
