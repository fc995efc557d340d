"""embed_videos measurements on the same synthetic h264 videos, in sampled frames/s: the
decode-and-sample ceiling on every core (decoded frames/s beside it), the model-only ceiling,
and rayjobs end to end (run by benchmarks.run).

The videos are cached under benchmarks/.cache/videos/ by size, frame rate and length: encoding
720p on a small CPU takes longer than the measurements, so a rerun only decodes.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from benchmarks import synthetic
from benchmarks.text_embedding import sync
from operators.video.decode_video import Frame
from operators.video.frame_sampling import Keep

VERSION = "v1"  # bump when synthetic.video_frames changes: cached videos are then stale
MAX_FRAMES = 10_000  # the job's video.max_frames default: sample_fps's row limit per range

_keeper = None  # each ceiling worker's PixelKeeper, loaded once before the clock starts


def video_set(
    root: Path, count: int, seconds: float, size: tuple[int, int] = synthetic.VIDEO_SIZE
) -> tuple[Path, list[Path]]:
    """`count` cached videos of `seconds` each (encoding what is missing) and a .txt list of
    them for the job's input.path: the folder may hold more videos than this run wants."""
    width, height = size
    folder = root / f"h264-{width}x{height}-{synthetic.VIDEO_FPS}fps-{seconds:g}s-{VERSION}"
    videos = synthetic.write_videos(folder, count, seconds, size)
    listing = folder / f"first-{count}.txt"
    listing.write_text("".join(f"{path.name}\n" for path in videos))
    return listing, videos


def describe(videos: list[Path], seconds: float, size: tuple[int, int]) -> dict:
    """What the inputs were, for the JSON: counts, lengths, size, frame rate, bitrate."""
    total_bytes = sum(path.stat().st_size for path in videos)
    return {
        "videos": len(videos),
        "seconds_each": seconds,
        "total_seconds": seconds * len(videos),
        "size": f"{size[0]}x{size[1]}",
        "fps": synthetic.VIDEO_FPS,
        "codec": "h264 (libx264, crf 23, preset faster, yuv420p)",
        "mbit_per_s": total_bytes * 8 / max(seconds * len(videos), 1e-9) / 1e6,
    }


class CountedFrames:
    """The frames of an iterator, counted as they pass: the decoded total beside the sampled."""

    def __init__(self, frames: Iterator[Frame]) -> None:
        self.frames = frames
        self.count = 0

    def __iter__(self) -> Iterator[Frame]:
        for frame in self.frames:
            self.count += 1
            yield frame


def _load_keeper(model_path: str) -> None:
    from operators.video.sample_frames import PixelKeeper

    global _keeper
    _keeper = PixelKeeper(model_path, None)


def _ready(_: int) -> None:
    time.sleep(0.3)  # long enough that every worker takes one: all are started and loaded


def decode_and_sample(path: str, fps: float, keep: Keep) -> tuple[int, int]:
    """(decoded, sampled) frames of one whole video: the job's decode and 1/fps sampling, each
    sampled frame handed to `keep`, on one FFmpeg thread (one process per core does the rest)."""
    from operators.video.decode_video import decode_frames, open_video
    from operators.video.frame_sampling import sample_fps

    with open_video(path) as container:
        frames = CountedFrames(decode_frames(container, 0.0, threads=1))
        samples = sample_fps(frames, 0.0, math.inf, fps, MAX_FRAMES, keep)
    return frames.count, len(samples)


def _sample_video(job: tuple[str, float]) -> tuple[int, int]:
    """A ceiling worker's task: one video, sampled frames resized and cropped by the processor."""
    path, fps = job
    return decode_and_sample(path, fps, _keeper)


def decode_ceiling(model_path: str, videos: list[Path], fps: float, workers: int | None = None) -> dict:
    """Sampled and decoded frames/s of decode_and_sample over every video, one process per core
    (spawned: no state inherited from a driver that has torch loaded), after a warm-up."""
    workers = workers or os.cpu_count() or 1
    context = multiprocessing.get_context("spawn")
    jobs = [(str(path), fps) for path in videos]
    with context.Pool(workers, initializer=_load_keeper, initargs=(model_path,)) as pool:
        pool.map(_ready, range(workers), chunksize=1)
        started = time.perf_counter()
        counts = pool.map(_sample_video, jobs, chunksize=1)
        seconds = time.perf_counter() - started
    decoded, sampled = (sum(column) for column in zip(*counts, strict=True))
    return {
        "decode_ceiling": sampled / seconds,
        "decode_ceiling_per_core": sampled / seconds / workers,
        "decoded_frames_per_s": decoded / seconds,
        "decoded_frames_per_s_per_core": decoded / seconds / workers,
        "decode_workers": workers,
        "decoded_frames": decoded,
        "sampled_frames": sampled,
    }


def model_ceiling(model_path: str, rows: int, batch_size: int, device: str) -> float:
    """Rows/s of the job's ImageEmbedder alone on a pre-made batch of uint8 pixels shaped as the
    processor makes them: no decode, no Ray."""
    from operators.image.decode_images import load_image_processor, output_shape
    from operators.image.image_embedder import ImageEmbedder

    embedder = ImageEmbedder(model_path, device=device)
    shape = output_shape(load_image_processor(model_path))
    pixels = np.random.default_rng(0).integers(0, 256, (batch_size, *shape), dtype=np.uint8)
    batch = {"pixel_values": pixels}
    embedder(batch)  # warm-up: allocations, kernels picked
    steps = max(2, rows // batch_size)
    sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        embedder(batch)  # returns numpy: the device's work is done
    return steps * batch_size / (time.perf_counter() - started)
