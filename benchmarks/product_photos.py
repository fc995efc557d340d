"""The product-photo pipeline (`edit_images +experiment=product_photos`), stage by stage, in one run.

    python -m benchmarks.product_photos [--rows N] [--device cpu|cuda] [--segmenter mask2former-tiny]
        [--json out.json]

On the same synthetic photos it measures, in images/s:
1. CPU stage ceilings on every core (a process pool, one per core, no Ray): `decode_rgb` (decode,
   orient, bound) on the JPEGs and `encode_images` (the preset's JPEG + two WebP thumbnails) on
   the images the model chain made;
2. model ceilings, each operator alone in this process on pre-decoded batches of the preset's
   sizes, fed what the stage before it made: BackgroundRemover (SegFormer-B2, or --segmenter),
   ImageUpscaler (Swin2SR x2), ChatCaptioner under the preset's JSON schema (SmolVLM-256M shape);
3. rayjobs end to end after Ray is up, with each model stage's rate inside the pipeline;
4. ratios: end to end over the slowest model ceiling and over the bound of stages that share a
   device (1 / sum(1 / ceiling)), and GPU-seconds (CPU-seconds on a CPU) per 1,000 photos.
Random weights at real models' shapes: throughput does not depend on the values. Writes
benchmarks/results/product_photos-<cpu|gpu>-<time>.json.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from benchmarks import models, synthetic
from benchmarks.report import write_result

EDITS = ("remove_background", "upscale", "describe")
CPU_NEW_TOKENS = 32  # a 256-token SEO answer takes minutes a photo on 2 CPU cores
MIN_CPU_IMAGES = 128  # the CPU ceilings repeat the photos until they time at least this many
CHUNK = 8  # images per process-pool task
DEFAULTS = {"cpu": (8, 0.5), "cuda": (256, 1.0)}  # rows, photo scale (1.0: 256-640 px)


SEGMENTERS = {
    "segformer-b2": models.segformer_b2_random,
    "segformer-b0": models.segformer_b0_random,
    "mask2former-tiny": models.mask2former_tiny_random,
}


def checkpoints(device: str, segmenter: str, swin2sr: str) -> dict[str, str]:
    """Random-weight checkpoints per edit at real models' shapes: `segmenter` (SEGMENTERS), Swin2SR
    classical or lightweight, SmolVLM-256M."""
    return {
        "remove_background": SEGMENTERS[segmenter](),
        "upscale": models.swin2sr_x2_random()
        if swin2sr == "classical"
        else models.swin2sr_lightweight_x2_random(),
        "describe": models.smolvlm_bpe_random(),  # llguidance cannot read smolvlm_random's WordPiece
    }


def write_photos(folder: Path, count: int, scale: float = 1.0) -> Path:
    """write_images' 256-640 px photos, resized by `scale` (smaller photos for slow CPUs)."""
    if scale == 1.0:
        return synthetic.write_images(folder, count)
    from PIL import Image

    files = folder / "files"
    files.mkdir(parents=True, exist_ok=True)
    for i, blob in enumerate(synthetic.jpegs(count)):
        image = Image.open(io.BytesIO(blob))
        size = (max(8, round(image.width * scale)), max(8, round(image.height * scale)))
        image.resize(size, Image.Resampling.LANCZOS).save(files / f"{i:07d}.jpg", quality=85)
    return files


def preset_overrides(
    photos: Path, out: Path, paths: Mapping[str, str], new_tokens: int, extra: Sequence[str] = ()
) -> list[str]:
    """The preset on these photos and checkpoints; every row counts, even a cut-short caption."""
    return [
        "+experiment=product_photos",
        f"input.path={photos}",
        f"output.path={out}",
        *(f"{edit}.path={path}" for edit, path in paths.items()),
        f"describe.max_new_tokens={new_tokens}",
        "job.overwrite=true",
        "job.max_error_fraction=1.0",  # captions cut at max_new_tokens are error rows, not a failure
        "runtime.progress_bars=false",
        *extra,
    ]


# ---- 1. CPU stages on every core ------------------------------------------------------------


def _cpu_task(job: tuple[str, str, int, int, dict[str, Any]]) -> int:
    """One pool task: rows [start, stop) of an Arrow file through decode_rgb or encode_images."""
    from operators.image.decode_images import decode_rgb
    from operators.image.transform_images import encode_images

    stage, path, start, stop, options = job
    with pa.memory_map(path) as source:  # zero-copy: the pixels are not pickled to each task
        table = pa.ipc.open_file(source).read_all().slice(start, stop - start)
        fn = decode_rgb if stage == "decode" else encode_images
        return fn(table, **options).num_rows


def cpu_ceiling(stage: str, table: pa.Table, options: dict[str, Any], workers: int | None = None) -> float:
    """Images/s of `stage` ("decode" | "encode") over `table` on `workers` processes (all cores)."""
    workers = workers or os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "rows.arrow")
        with pa.ipc.new_file(path, table.schema) as writer:
            writer.write_table(table)
        chunks = [
            (stage, path, i, min(i + CHUNK, table.num_rows), options) for i in range(0, table.num_rows, CHUNK)
        ]
        passes = max(1, -(-MIN_CPU_IMAGES // max(1, table.num_rows)))
        # spawn: the encode pool starts after torch ran its threads here, which fork would copy
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(_cpu_task, chunks[:workers]))  # warm-up: each process's imports
            started = time.perf_counter()
            done = sum(pool.map(_cpu_task, chunks * passes))
        return done / (time.perf_counter() - started)


def pixel_table(images: Sequence[np.ndarray]) -> pa.Table:
    """H x W x 3 images as the columns decode_rgb makes (image_rgb, image_shape)."""
    from operators.arrow_tensors import tensor_to_arrow

    shapes = np.array([image.shape for image in images], dtype=np.int32)
    return pa.table(
        {
            "id": [str(i) for i in range(len(images))],
            "image_rgb": pa.array([image.tobytes() for image in images], pa.large_binary()),
            "image_shape": tensor_to_arrow(shapes),
        }
    )


# ---- 2. each model alone -----------------------------------------------------------------------


def make_operator(cfg: Any, edit: str, device: str, constraint: str | None) -> Any:
    """The edit's operator as the job builds it from its config node (path, preset options)."""
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from rayjobs.config.check_config import operator_config

    target, kwargs = operator_config(OmegaConf.to_container(cfg[edit], resolve=True))
    kwargs["device"] = device
    if edit == "describe":
        kwargs.update(constraint=constraint, keep_images=True)  # as edit_images passes them
    return get_class(target)(**kwargs)


def as_batch(images: Sequence[np.ndarray], prompt: str | None) -> dict[str, np.ndarray]:
    raws = np.empty(len(images), dtype=object)
    raws[:] = [image.tobytes() for image in images]
    batch = {"image_rgb": raws, "image_shape": np.array([image.shape for image in images], dtype=np.int32)}
    if prompt:
        batch["prompt"] = np.array([prompt] * len(images), dtype=object)
    return batch


def model_ceilings(
    cfg: Any, images: list[np.ndarray], device: str, constraint: str | None
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Images/s of each edit alone, in chain order, each fed the previous edit's output (made
    beforehand, untimed); returns the figures and the images the chain made (for encode)."""
    import torch

    figures: dict[str, Any] = {}
    prompt = cfg.prompt.template
    for edit in EDITS:
        operator = make_operator(cfg, edit, device, constraint)
        size = cfg[edit].batch_size if isinstance(cfg[edit].batch_size, int) else 8
        batches = [images[i : i + size] for i in range(0, len(images), size)]
        asked = prompt if edit == "describe" else None
        if edit != "describe" or device == "cuda":  # on a CPU a caption's first call costs no more
            operator(as_batch([images[0][:64, :64].copy()], asked))
        made, tokens = [], 0
        started = time.perf_counter()
        for chunk in batches:
            out = operator(as_batch(chunk, asked))
            if edit == "describe":
                tokens += int(out["generated_tokens"].sum())
            else:
                made += [
                    np.frombuffer(raw, np.uint8).reshape(tuple(shape))
                    for raw, shape in zip(out["image_rgb"], out["image_shape"], strict=True)
                ]
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        figures[f"{edit}_ceiling"] = len(images) / seconds
        if edit == "describe":
            figures["describe_ceiling_tokens_per_s"] = tokens / seconds
        else:
            images = made
        del operator
        if device == "cuda":
            torch.cuda.empty_cache()
    return figures, images


# ---- 3. rayjobs end to end ------------------------------------------------------------------


def run_preset(cfg: Any) -> dict[str, Any]:
    """rayjobs end to end on a fresh local Ray. (benchmarks.run.run_rayjobs drops the run
    record's usage and counts filtered rows as missing, so this one keeps the whole record.)"""
    import rayjobs
    from benchmarks.memory import PeakMemory
    from rayjobs.pipeline.runtime import start_ray

    with PeakMemory() as memory:
        started = time.perf_counter()
        start_ray(cfg.runtime)
        ray_up = time.perf_counter()
        result = rayjobs.run(cfg)
        finished = time.perf_counter()
    rows = result.rows_written + result.rows_errored + result.rows_filtered
    rates = {stage["name"]: stage["rows_per_s"] for stage in result.stats.get("stages", [])}
    stage_rates = {f"{edit}_stage": rates.get(f"MapBatches(ModelStage[{edit}])") for edit in EDITS}
    return {
        "e2e": rows / (finished - ray_up),
        "e2e_with_ray_start": rows / (finished - started),
        "ray_start_s": ray_up - started,
        "run_s": finished - ray_up,
        "first_results_s": result.stats.get("first_results_s"),
        **stage_rates,
        "rows_out": rows,
        "rows_written": result.rows_written,
        "rows_errored": result.rows_errored,
        "rows_filtered": result.rows_filtered,
        "usage": result.stats.get("usage", {}),
        "model_actors": result.stats.get("model_actors"),
        "model_batch_size": result.stats.get("model_batch_size"),
        "stages": result.stats.get("stages", []),
        "peak_driver_mib": memory.driver_mb,
        "peak_worker_mib": memory.worker_mb,
    }


# ---- 4. the whole measurement ---------------------------------------------------------------


def shared_bound(ceilings: Mapping[str, float]) -> float:
    """What stages sharing one device allow together: 1 / sum(1 / ceiling)."""
    return 1 / sum(1 / rate for rate in ceilings.values())


def measure(
    work: Path,
    rows: int,
    device: str,
    paths: Mapping[str, str],
    new_tokens: int,
    photo_scale: float = 1.0,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """Every figure on `rows` synthetic photos: ceilings, rayjobs end to end, ratios, usage."""
    import ray

    import rayjobs
    from operators.text.output_grammar import constraint_key
    from rayjobs.config.image_inputs import rgb_options
    from rayjobs.config.image_outputs import encode_options

    photos = write_photos(work / "photos", rows, photo_scale)
    overrides = preset_overrides(photos, work / "out", paths, new_tokens, extra)
    # Composed once: the ceilings and the run see the same config, even if conf/ changes meanwhile.
    cfg = rayjobs.compose("edit_images", overrides)
    if list(cfg.edits) != list(EDITS):
        raise RuntimeError(f"the product_photos preset's edits are {list(cfg.edits)}, expected {list(EDITS)}")
    blobs = [path.read_bytes() for path in sorted(photos.glob("*.jpg"))]
    inputs = pa.table({"id": [str(i) for i in range(len(blobs))], "image": pa.array(blobs, pa.binary())})
    figures: dict[str, Any] = {"decode_ceiling": cpu_ceiling("decode", inputs, rgb_options(cfg))}

    from operators.image.decode_images import decode_rgb

    decoded = decode_rgb(inputs, **rgb_options(cfg))  # the models' inputs, made untimed
    images = [
        np.frombuffer(raw, np.uint8).reshape(tuple(shape))
        for raw, shape in zip(
            decoded["image_rgb"].to_pylist(), decoded["image_shape"].to_pylist(), strict=True
        )
    ]
    constraint = constraint_key("json_schema", dict_of(cfg.prompt.json_schema))  # the preset's schema
    found, made = model_ceilings(cfg, images, device, constraint)
    figures.update(found)
    encoding = {**encode_options(cfg), "dimensions": True}
    figures["encode_ceiling"] = cpu_ceiling("encode", pixel_table(made), encoding)
    figures.update(run_preset(cfg))
    ray.shutdown()

    cpu_stages = {name: figures[f"{name}_ceiling"] for name in ("decode", "encode")}
    model_stages = {edit: figures[f"{edit}_ceiling"] for edit in EDITS}
    # On a CPU every stage shares the cores; on a GPU the models share it and the tasks the CPUs.
    shared = (
        {"cpu": shared_bound({**cpu_stages, **model_stages})}
        if device == "cpu"
        else {
            "gpu": shared_bound(model_stages),
            "cpu": shared_bound(cpu_stages),
        }
    )
    bound = min(shared.values())
    slowest = min(model_stages, key=model_stages.get)
    usage = figures["usage"]
    per_1000 = 1000 / max(1, figures["rows_out"])
    ratios = {
        "e2e/slowest_model_ceiling": figures["e2e"] / model_stages[slowest],
        "e2e/shared_bound": figures["e2e"] / bound,
    }
    return {
        "inputs": {
            "photos": rows,
            "sides_px": [round(256 * photo_scale), round(640 * photo_scale)],
            "max_new_tokens": new_tokens,
            "batch_sizes": {edit: cfg[edit].batch_size for edit in EDITS},
        },
        "figures": figures,
        "slowest_model": slowest,
        "shared_bound": shared,  # cpu: decode, encode (and on a CPU the models); gpu: the models
        "ratios": ratios,
        "gpu_s_per_1000": usage.get("gpu_s", 0.0) * per_1000,
        "cpu_s_per_1000": usage.get("cpu_s", 0.0) * per_1000,
    }


def dict_of(node: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def table(result: dict[str, Any]) -> str:
    """A short text table of the figures."""
    f = result["figures"]
    rows = [
        ("decode_rgb, every core", f["decode_ceiling"], None),
        ("remove_background alone", f["remove_background_ceiling"], f.get("remove_background_stage")),
        ("upscale alone", f["upscale_ceiling"], f.get("upscale_stage")),
        ("describe alone", f["describe_ceiling"], f.get("describe_stage")),
        ("encode_images, every core", f["encode_ceiling"], None),
        ("shared bound", min(result["shared_bound"].values()), None),
        ("rayjobs e2e (after Ray is up)", f["e2e"], None),
        ("rayjobs e2e + ray start", f["e2e_with_ray_start"], None),
    ]
    lines = [f"{'images/s':32} {'ceiling':>10} {'in pipeline':>12}"]
    lines += [
        f"{name:32} {rate:10.3g} {'' if stage is None else f'{stage:.3g}':>12}" for name, rate, stage in rows
    ]
    lines += [f"{name:32} {value:10.2f}" for name, value in result["ratios"].items()]
    lines.append(f"{'GPU-s / 1,000 photos':32} {result['gpu_s_per_1000']:10.1f}")
    lines.append(f"{'CPU-s / 1,000 photos':32} {result['cpu_s_per_1000']:10.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, help="photos (default: 8 on a CPU, 256 on a GPU)")
    parser.add_argument("--device", choices=("cpu", "cuda"))
    parser.add_argument("--json", type=Path, help="write the result here instead of benchmarks/results/")
    parser.add_argument(
        "--photo-scale", type=float, help="photo sides x this (default: 0.5 on a CPU, 1.0 on a GPU)"
    )
    parser.add_argument(
        "--max-new-tokens", type=int, help=f"default: {CPU_NEW_TOKENS} on a CPU, the preset's on a GPU"
    )
    parser.add_argument("--segmenter", choices=tuple(SEGMENTERS), default="segformer-b2")
    parser.add_argument("--swin2sr", choices=("classical", "lightweight"), help="default: classical on a GPU")
    parser.add_argument("overrides", nargs="*", help="more rayjobs overrides, e.g. describe.batch_size=4")
    args = parser.parse_intermixed_args(argv)
    import torch

    from benchmarks.run import device_name

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    rows, scale = DEFAULTS[device]
    rows, scale = args.rows or rows, args.photo_scale or scale
    # The classical x2 shape takes about a minute a 256 px tile on 2 CPU cores.
    swin2sr = args.swin2sr or ("classical" if device == "cuda" else "lightweight")
    new_tokens = args.max_new_tokens or (CPU_NEW_TOKENS if device == "cpu" else 256)
    paths = checkpoints(device, args.segmenter, swin2sr)
    started = time.perf_counter()
    measured = measure(
        models.CACHE / f"work-product_photos-{rows}", rows, device, paths, new_tokens, scale, args.overrides
    )
    result = {
        "job": "product_photos",
        "unit": "images/s",
        "model": " + ".join(models.display_name(path) for path in paths.values()),
        "device": device_name(device),
        "rows": rows,
        "overrides": args.overrides,
        **measured,
        "wall_s": time.perf_counter() - started,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    path = write_result(result, args.json)
    print(table(result))
    print(f"wall {result['wall_s']:.0f} s; result: {path}")
    return result


if __name__ == "__main__":
    main()
