"""Benchmark a job against its model-only ceiling and the baselines users would pick, in one run.

    python -m benchmarks.run embed_texts [--rows 4000] [--batch-size 128] [key=value ...]
    python -m benchmarks.run embed_images [--rows 512] [--batch-size 32] [key=value ...]
    python -m benchmarks.run generate_text [--rows 64] [--batch-size 8]   # generated tokens/s
    python -m benchmarks.run generate_text --schema   # + the same prompts bound to a JSON schema
    python -m benchmarks.run caption_images [--rows 32] [--batch-size 8]  # captions/s
    python -m benchmarks.run caption_images --vlm --rows 16 --batch-size 4  # a SmolVLM-shaped chat VLM
    python -m benchmarks.run transform_images [--rows 512] [key=value ...]  # output images/s, CPU only
    python -m benchmarks.run generate_images [--rows 32] [--batch-size 4]  # images/s vs the pipeline alone
    python -m benchmarks.run score_images [--rows 512] [--batch-size 32]   # images/s vs ImageScorer alone
    python -m benchmarks.run embed_videos [--rows 6] [--video-seconds 30]  # 720p h264, frames/s at 1 fps
    python -m benchmarks.run embed_texts --scale      # N and 10 x N rows: rows/s and memory stay flat
    python -m benchmarks.run embed_texts --auto-batch # rayjobs with model.batch_size=auto
    python -m benchmarks.run embed_texts --feed       # + feed ceiling (no-op model), ModelStage overhead

Writes benchmarks/results/<job>-<device>-<time>.json and appends a row to benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks import (
    feed,
    image_captioning,
    image_embedding,
    image_generation,
    image_transform,
    models,
    synthetic,
    text_embedding,
    text_generation,
    video_embedding,
)
from benchmarks.memory import PeakMemory
from benchmarks.report import append_table_row, write_result

HERE = Path(__file__).resolve().parent
DEFAULTS = {
    "embed_texts": (4000, 128),
    "embed_images": (512, 32),
    "generate_text": (64, 8),
    "caption_images": (32, 8),
    "transform_images": (512, 1),  # no model: the batch size is unused
    "generate_images": (32, 4),
    "score_images": (512, 32),
    "embed_videos": (6, 32),  # rows: videos (of --video-seconds each); the table counts sampled frames
}
STEPS, SIDE = 4, 64  # generate_images on a CPU: a few steps of small images (--model and keys on a GPU)
NEW_TOKENS = 32
CEILING_ROWS = 4096  # images the ceilings time at most: a rate, not a total


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


def run_rayjobs(job: str, overrides: list[str], device: str) -> dict:
    """rayjobs end to end on a fresh local Ray: rows/s with and without Ray's start-up."""
    import rayjobs
    from rayjobs.pipeline.runtime import start_ray

    cfg = rayjobs.compose(job, overrides)
    with PeakMemory() as memory:
        started = time.perf_counter()
        start_ray(cfg.runtime)  # as the job would start it
        ray_up = time.perf_counter()
        result = rayjobs.run(cfg)
        finished = time.perf_counter()
    rows = result.rows_written + result.rows_errored
    model_stage = [s for s in result.stats.get("stages", []) if "ModelStage" in s["name"]]
    return {
        "rayjobs_model_stage": model_stage[0]["rows_per_s"] if model_stage else None,
        "rayjobs_e2e": rows / (finished - ray_up),
        "rayjobs_e2e_with_ray_start": rows / (finished - started),
        "ray_start_s": ray_up - started,
        "first_results_s": result.stats.get("first_results_s"),
        "rayjobs_batch_size": (result.stats.get("model_batch_size") or {}).get("model"),
        "rows_out": rows,
        "stages": result.stats.get("stages", []),
        "peak_driver_mib": memory.driver_mb,
        "peak_worker_mib": memory.worker_mb,
    }


def job_overrides(
    source: Path, out: Path, model: str, batch_size: int | str, *keys: str, extra: argparse.Namespace
) -> list[str]:
    """What every rayjobs run of the harness sets, then the job's own `keys`, then the user's."""
    return [
        f"input.path={source}",
        f"output.path={out}",
        f"model.path={model}",
        f"model.batch_size={batch_size}",
        "job.overwrite=true",
        "runtime.progress_bars=false",
        *keys,
        *extra.overrides,
    ]


def rayjobs_batch(args: argparse.Namespace) -> int | str:
    """rayjobs' model.batch_size: the baselines' size, or auto (each actor probes its own)."""
    return "auto" if args.auto_batch else args.batch_size


def bench_texts(args: argparse.Namespace, work: Path, device: str) -> dict:
    if args.model:
        model = models.ensure_weights(args.model)
    else:
        model = models.minilm(random_weights=args.random_weights)
    source = synthetic.write_texts(work / "texts.parquet", args.rows)
    figures = {}
    if not args.only_rayjobs:
        texts = synthetic.texts(args.rows)
        figures["model_ceiling"] = text_embedding.model_ceiling(model, texts, args.batch_size, device)
    if baselines(args):
        figures["encode"] = text_embedding.encode_baseline(model, texts, args.batch_size, device)
    overrides = job_overrides(
        source, work / "out", model, rayjobs_batch(args), "input.id_column=id", extra=args
    )
    figures.update(run_rayjobs("embed_texts", overrides, device))
    if args.feed:
        figures.update(feed_figures("embed_texts", overrides, args, device))
    if baselines(args):
        figures["textbook_ray"] = text_embedding.textbook_ray(
            model, source, work / "textbook", args.batch_size, device
        )
    _shutdown_ray()
    return {"model": models.display_name(model), **figures}


def bench_images(args: argparse.Namespace, work: Path, device: str) -> dict:
    model = args.model or models.clip_vit_b32()
    folder = synthetic.write_images(work / "images", args.rows, distinct=args.distinct)
    figures = {}
    if not args.only_rayjobs:
        blobs = [path.read_bytes() for path in sorted(folder.glob("*.jpg"))[:CEILING_ROWS]]
        rows = min(args.rows, CEILING_ROWS)
        figures["model_ceiling"] = image_embedding.model_ceiling(model, rows, args.batch_size, device)
        figures["decode_ceiling"] = image_embedding.decode_ceiling(model, blobs)
        figures["device_decode_ceiling"] = image_embedding.device_decode_ceiling(
            model, blobs, args.batch_size, device
        )
    overrides = job_overrides(folder, work / "out", model, rayjobs_batch(args), extra=args)
    figures.update(run_rayjobs("embed_images", overrides, device))
    if args.feed:
        figures.update(feed_figures("embed_images", overrides, args, device))
    if baselines(args):
        figures["textbook_ray"] = image_embedding.textbook_ray(
            model, folder, work / "textbook", args.batch_size, device
        )
    _shutdown_ray()
    return {"model": models.display_name(model), **figures}


def feed_figures(job: str, overrides: list[str], args: argparse.Namespace, device: str) -> dict:
    """The same job with a no-op model (what the pipeline can feed), and ModelStage's own cost."""
    nothing = run_rayjobs(job, [*overrides, *feed.feed_overrides(job)], device)
    return {
        "feed_ceiling": nothing["rayjobs_e2e"],
        "feed_ceiling_per_core": feed.per_core(nothing["rayjobs_e2e"]),
        "host_overhead_at_10ms": feed.host_overhead(job, args.batch_size, sleep_s=0.01),
    }


def bench_generation(args: argparse.Namespace, work: Path, device: str) -> dict:
    """Generated tokens/s: the model's static-batch ceiling and rayjobs end to end (greedy)."""
    model = args.model or models.gpt2_small_random()
    prompts = synthetic.texts(args.rows, max_words=12)
    source = text_generation.write_prompts(work / "prompts.parquet", prompts)
    figures = {}
    if not args.only_rayjobs:
        figures["model_ceiling"] = text_generation.model_ceiling(
            model, prompts, args.batch_size, NEW_TOKENS, device
        )
    new_tokens = f"model.max_new_tokens={NEW_TOKENS}"
    keys = ("input.format=parquet", "input.id_column=id", new_tokens)
    overrides = job_overrides(source, work / "out", model, args.batch_size, *keys, extra=args)
    measured = run_rayjobs("generate_text", overrides, device)
    per_row = text_generation.generated_tokens(work / "out") / max(1, measured["rows_out"])
    for key in ("rayjobs_e2e", "rayjobs_e2e_with_ray_start", "rayjobs_model_stage"):
        if measured.get(key):
            measured[key] *= per_row  # rows/s -> generated tokens/s
    figures.update(measured)
    _shutdown_ray()
    if args.schema:  # the same prompts again, every completion bound to a JSON schema
        schema = text_generation.write_schema(work / "schema.json")
        bound = job_overrides(source, work / "bound", model, args.batch_size, *keys, extra=args)
        constrained = run_rayjobs("generate_text", [*bound, f"prompt.json_schema={schema}"], device)
        _shutdown_ray()
        tokens, valid = text_generation.schema_results(work / "bound")
        seconds = constrained["rows_out"] / constrained["rayjobs_e2e"]
        figures["rayjobs_e2e_json_schema"] = tokens / seconds
        figures["json_schema_vs_free"] = figures["rayjobs_e2e_json_schema"] / measured["rayjobs_e2e"]
        figures["json_schema_valid_fraction"] = valid
    return {"model": models.display_name(model), "unit": "generated tokens/s", **figures}


def bench_captions(args: argparse.Namespace, work: Path, device: str) -> dict:
    """Captions/s (greedy, NEW_TOKENS at most): the captioner's ceiling and rayjobs end to end."""
    model = args.model or (models.smolvlm_random() if args.vlm else models.blip_base_random())
    folder = synthetic.write_images(work / "images", args.rows, distinct=args.distinct)
    figures = {}
    if not args.only_rayjobs:
        if args.vlm:
            blobs = [path.read_bytes() for path in sorted(folder.glob("*.jpg"))]
            ceiling = image_captioning.chat_ceiling(model, blobs, args.batch_size, NEW_TOKENS, device)
        else:
            ceiling = image_captioning.model_ceiling(model, args.rows, args.batch_size, NEW_TOKENS, device)
        figures["model_ceiling"] = ceiling["captions"]
        figures["model_ceiling_tokens_per_s"] = ceiling["tokens"]
    keys = [f"model.max_new_tokens={NEW_TOKENS}", *(["model=smolvlm_256m"] if args.vlm else [])]
    overrides = job_overrides(folder, work / "out", model, rayjobs_batch(args), *keys, extra=args)
    measured = run_rayjobs("caption_images", overrides, device)
    seconds = measured["rows_out"] / measured["rayjobs_e2e"] if measured["rayjobs_e2e"] else 0
    if seconds:
        measured["rayjobs_e2e_tokens_per_s"] = image_captioning.generated_tokens(work / "out") / seconds
    figures.update(measured)
    _shutdown_ray()
    return {"model": models.display_name(model), "unit": "captions/s", **figures}


def bench_transform(args: argparse.Namespace, work: Path, device: str) -> dict:
    """Thumbnails (the job's defaults unless overridden): the job vs its own CPU stage on every core."""
    files = synthetic.write_images(work / "images", args.rows)
    figures: dict = {"unit": "images/s", "model": "none (CPU stage only)"}
    if not args.only_rayjobs:
        import rayjobs
        from rayjobs.transform_images import transform_options

        cfg = rayjobs.compose("transform_images", ["input.path=x", "output.path=y", *args.overrides])
        options = {k: v for k, v in transform_options(cfg).items() if k not in ("image_column", "keep_image")}
        figures["decode_ceiling"] = image_transform.transform_ceiling(synthetic.jpegs(args.rows), options)
        figures["decode_ceiling_per_core"] = figures["decode_ceiling"] / (os.cpu_count() or 1)
    overrides = [
        f"input.path={files}",
        f"output.path={work / 'out'}",
        "job.overwrite=true",
        "runtime.progress_bars=false",
        *args.overrides,
    ]
    figures.update(run_rayjobs("transform_images", overrides, device))
    _shutdown_ray()
    return figures


def bench_image_generation(args: argparse.Namespace, work: Path, device: str) -> dict:
    """Generated images/s and seconds per 1,000 images: the pipeline alone and rayjobs end to end."""
    import csv

    model = args.model or models.stable_diffusion_small()
    prompts = synthetic.texts(args.rows, min_words=4, max_words=20)
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "prompts.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerows([("id", "prompt"), *((f"p{i}", text) for i, text in enumerate(prompts))])
    keys = [f"model.num_inference_steps={STEPS}", f"model.height={SIDE}", f"model.width={SIDE}"]
    keys = [*keys, "input.format=csv", "input.id_column=id"]
    steps, side = _override(args, "model.num_inference_steps", STEPS), _override(args, "model.height", SIDE)
    figures: dict = {"unit": "images/s", "model": models.display_name(model), "steps": steps, "side": side}
    if not args.only_rayjobs:
        figures["model_ceiling"] = image_generation.pipeline_ceiling(
            model, prompts, args.batch_size, steps, side, device
        )
    overrides = job_overrides(work / "prompts.csv", work / "out", model, args.batch_size, *keys, extra=args)
    figures.update(run_rayjobs("generate_images", overrides, device))
    for name in ("model_ceiling", "rayjobs_e2e"):
        if figures.get(name):
            figures[f"{name}_s_per_1000"] = 1000 / figures[name]  # GPU-seconds on one GPU
    _shutdown_ray()
    return figures


def bench_scoring(args: argparse.Namespace, work: Path, device: str) -> dict:
    """Scored images/s (CLIP score against one text, the job's default thumbnails): the scorer
    alone, decoding alone on every core, and rayjobs end to end."""
    model = args.model or models.clip_vit_b32()
    folder = synthetic.write_images(work / "images", args.rows, distinct=args.distinct)
    figures: dict = {"unit": "images/s", "model": models.display_name(model)}
    if not args.only_rayjobs:
        figures["model_ceiling"] = image_generation.scorer_ceiling(model, args.rows, args.batch_size, device)
        blobs = [path.read_bytes() for path in sorted(folder.glob("*.jpg"))][:CEILING_ROWS]
        figures["decode_ceiling"] = image_embedding.decode_ceiling(model, blobs)
    keys = ["score.text=a photo of a product"]
    overrides = job_overrides(folder, work / "out", model, rayjobs_batch(args), *keys, extra=args)
    figures.update(run_rayjobs("score_images", overrides, device))
    _shutdown_ray()
    return figures


def bench_videos(args: argparse.Namespace, work: Path, device: str) -> dict:
    """Sampled frames/s at video.fps (1 unless overridden) of synthetic h264 videos: decode and
    sample on every core, the embedder alone, and rayjobs end to end, on the same files."""
    model = args.model or models.clip_vit_b32()
    fps = _override(args, "video.fps", 1.0, cast=float)
    size = _video_size(args.video_size)
    listing, videos = video_embedding.video_set(args.video_dir, args.rows, args.video_seconds, size)
    figures: dict = {"unit": "sampled frames/s", "model": models.display_name(model)}
    figures["inputs"] = {**video_embedding.describe(videos, args.video_seconds, size), "sample_fps": fps}
    if not args.only_rayjobs:
        figures.update(video_embedding.decode_ceiling(model, videos, fps))
        rows = min(figures["sampled_frames"], CEILING_ROWS)
        figures["model_ceiling"] = video_embedding.model_ceiling(model, rows, args.batch_size, device)
    # One range and one task per video, so a few minutes of video spread over tasks as hours would.
    seconds = f"{args.video_seconds:g}"
    keys = [f"video.fps={fps:g}", f"input.split_seconds={seconds}", f"input.shard_seconds={seconds}"]
    overrides = job_overrides(listing, work / "out", model, rayjobs_batch(args), *keys, extra=args)
    figures.update(run_rayjobs("embed_videos", overrides, device))
    figures["rows"] = figures["rows_out"]  # the table's rows: sampled frames, not videos
    _shutdown_ray()
    return figures


def _video_size(text: str) -> tuple[int, int]:
    width, height = (int(value) for value in text.lower().split("x"))
    return width, height


def _override(args: argparse.Namespace, key: str, default: float, cast: type = int) -> float:
    found = [o.split("=", 1)[1] for o in args.overrides if o.startswith(f"{key}=")]
    return cast(found[-1]) if found else default


def baselines(args: argparse.Namespace) -> bool:
    """Whether to run the users' alternatives (encode(), the textbook script), not only ceilings."""
    return not (args.only_rayjobs or args.no_baselines)


def _shutdown_ray() -> None:
    import ray

    ray.shutdown()


def ratios(figures: dict) -> dict:
    e2e = figures["rayjobs_e2e"]
    out = {}
    for name in ("model_ceiling", "decode_ceiling", "encode", "textbook_ray"):
        if figures.get(name):
            out[f"e2e/{name}"] = e2e / figures[name]
    # Decoding on the host or in the actor (model.decode): the better of the two bounds the job.
    decode = max(figures.get("decode_ceiling") or 0, figures.get("device_decode_ceiling") or 0)
    if figures.get("model_ceiling") and decode:
        out["e2e/min_ceiling"] = e2e / min(figures["model_ceiling"], decode)
    return out


def scale_check(args: argparse.Namespace) -> dict:
    """The job alone at N and 10 x N rows, each in a fresh process: rows/s and peak memory."""
    runs = {}
    for rows in (args.rows, 10 * args.rows):
        command = [
            sys.executable,
            "-m",
            "benchmarks.run",
            args.job,
            "--rows",
            str(rows),
            "--batch-size",
            str(args.batch_size),
            "--only-rayjobs",
            "--no-table",
            "--json",
            str(HERE / "results" / "scale.tmp"),
            *args.overrides,
        ]
        subprocess.run(command, check=True)
        runs[rows] = json.loads((HERE / "results" / "scale.tmp").read_text())
    return {
        str(rows): {k: run["figures"][k] for k in ("rayjobs_e2e", "peak_driver_mib", "peak_worker_mib")}
        for rows, run in runs.items()
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("job", choices=sorted(DEFAULTS))
    parser.add_argument("--rows", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--auto-batch", action="store_true", help="rayjobs with model.batch_size=auto")
    parser.add_argument("--model", help="checkpoint folder (default: MiniLM / a ViT-B/32-shaped CLIP)")
    parser.add_argument("--random-weights", action="store_true", help="MiniLM's shape with random weights")
    parser.add_argument(
        "--vlm", action="store_true", help="caption_images with a chat VLM (SmolVLM-256M shape)"
    )
    parser.add_argument("--only-rayjobs", action="store_true", help="skip ceilings and baselines")
    parser.add_argument(
        "--no-baselines", action="store_true", help="skip encode() and the textbook script, keep the ceilings"
    )
    parser.add_argument(
        "--distinct", type=int, help="images: --rows files cycling through this many JPEGs (big inputs, fast)"
    )
    parser.add_argument(
        "--feed", action="store_true", help="also the feed ceiling (a no-op model) and ModelStage's overhead"
    )
    parser.add_argument("--scale", action="store_true", help="also run N and 10 x N rows")
    parser.add_argument("--schema", action="store_true", help="generate_text: also under a JSON schema")
    parser.add_argument("--video-seconds", type=float, default=30.0, help="embed_videos: each video's length")
    parser.add_argument("--video-size", default="1280x720", help="embed_videos: WIDTHxHEIGHT of the videos")
    parser.add_argument(
        "--video-dir",
        type=Path,
        default=models.CACHE / "videos",
        help="embed_videos: where the synthetic videos are cached (reruns skip encoding)",
    )
    parser.add_argument("--no-table", action="store_true", help="do not append to benchmarks/README.md")
    parser.add_argument("--json", type=Path, help="write the result here instead of benchmarks/results/")
    parser.add_argument("overrides", nargs="*", help="rayjobs config overrides, e.g. model.num_threads=2")
    args = parser.parse_intermixed_args(argv)  # overrides may follow the options
    default_rows, default_batch = DEFAULTS[args.job]
    args.rows = args.rows or default_rows
    args.batch_size = args.batch_size or default_batch
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    work = models.CACHE / f"work-{args.job}-{args.rows}"
    bench = {
        "embed_texts": bench_texts,
        "embed_images": bench_images,
        "generate_text": bench_generation,
        "caption_images": bench_captions,
        "transform_images": bench_transform,
        "generate_images": bench_image_generation,
        "score_images": bench_scoring,
        "embed_videos": bench_videos,
    }[args.job]
    figures = bench(args, work, device)
    result = {
        "job": args.job,
        "unit": figures.pop("unit", "rows/s"),
        "model": figures.pop("model"),
        "device": device_name(device),
        "rows": figures.pop("rows", args.rows),
        "batch_size": args.batch_size,
        "rayjobs_batch_size": "auto" if args.auto_batch else args.batch_size,
        "overrides": args.overrides,
        **({"inputs": figures.pop("inputs")} if "inputs" in figures else {}),
        "figures": figures,
        "ratios": ratios(figures),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if args.scale:
        result["scale"] = scale_check(args)
    path = write_result(result, args.json)
    if not args.no_table and not args.only_rayjobs:
        append_table_row(HERE / "README.md", result)
    print(json.dumps(result, indent=2, default=str))
    print(f"result: {path}")
    return result


if __name__ == "__main__":
    main()
