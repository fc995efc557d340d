"""CPU stage ahead of an image model: each input row is a (video, time range); it becomes one
row per sampled frame (fan-out), with the frame as the model takes it. A video that cannot be
opened or decoded, or a range that holds no frame, is an error row with the reason."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Protocol

import fsspec
import numpy as np
import pyarrow as pa
from PIL import Image

from operators.arrow_tensors import tensor_to_arrow
from operators.fan_out import INDEX, PARENT_ID, fan_out
from operators.image.decode_images import load_image_processor, output_shape, process_images
from operators.row_errors import add_error_columns, describe, good_rows, mark_errors
from operators.video.decode_video import Frame, decode_frames, open_video
from operators.video.frame_sampling import Sample, clip_windows, sample_fps, sample_scenes

STAGE = "decode"


class FrameKeeper(Protocol):
    """Turns a sampled frame into what its row keeps ((height, width), data) as it is sampled,
    so a range never holds full frames; `columns` stacks the kept data of a batch of rows."""

    def __call__(self, pixels: np.ndarray) -> tuple[tuple[int, int], np.ndarray]: ...

    def columns(self, images: list, per_window: int | None = None) -> dict[str, pa.Array]: ...


VIDEO_PATH = "_video_path"  # where the read task found the video (full path or URL)
RANGE_START, RANGE_END = "_range_start", "_range_end"  # the row's time range, seconds
FRAME_COLUMNS = ("video", "t_start", "t_end", "frame", "width", "height")


def sample_frames(
    table: pa.Table,
    *,
    fps: float | None = 1.0,
    scenes: bool = False,
    scene_threshold: float = 0.1,
    max_frames: int = 10_000,
    clip_seconds: float | None = None,
    model_path: str | None = None,
    revision: str | None = None,
    max_side: int = 1536,
    storage_options: dict[str, Any] | None = None,
) -> pa.Table:
    """Fans each (video, range) row out into its samples: id `<video>@<t_start>`, index, video,
    t_start, t_end (seconds), frame (its position in the stream), width, height (upright), and
    `pixel_values` resized and cropped by `model_path`'s processor, or with no model_path the
    frame itself as `image_rgb` / `image_shape` (longer side at most `max_side`).

    `clip_seconds` (fps sampling, pixel_values): one row per window of that many seconds, its
    `pixel_values` the window's frames (frames x 3 x H x W, zero-padded) and `frame_count`; the
    ranges must start at multiples of it, so no window spans two tasks."""
    keep: FrameKeeper = PixelKeeper(model_path, revision) if model_path else RgbKeeper(max_side)
    options = {"fps": fps, "scenes": scenes, "threshold": scene_threshold, "limit": max_frames}
    table = add_error_columns(table)
    found: list[list[Sample]] = [[] for _ in range(table.num_rows)]
    reasons: list[str | None] = [None] * table.num_rows
    broken: list[str | None] = [None] * table.num_rows  # decoding failed after some samples
    paths = table[VIDEO_PATH].to_pylist()
    starts, ends = table[RANGE_START].to_pylist(), table[RANGE_END].to_pylist()
    for row in np.flatnonzero(good_rows(table)):
        end = ends[row] if ends[row] is not None else math.inf
        try:
            fs, path = fsspec.core.url_to_fs(paths[row], **(storage_options or {}))
            found[row], broken[row] = sample_range(path, fs, starts[row], end, keep, **options)
        except Exception as error:  # FFmpeg's errors are this video's, not the batch's
            reasons[row] = describe(error)
        if clip_seconds:
            found[row] = clip_windows(found[row], clip_seconds)
    table = mark_errors(table, reasons, STAGE)
    good = good_rows(table)
    # A range broken after some samples: its samples, and one more child that records the failure.
    counts = [len(found[row]) + (broken[row] is not None) if good[row] else 1 for row in range(len(good))]
    out = fan_out(table, counts, only=good)
    samples: list[Sample | None] = []
    failures: list[str | None] = []
    for row in range(table.num_rows):
        kept = found[row] if good[row] else []
        samples += [*kept, *([None] * (counts[row] - len(kept)))]
        failures += [None] * len(kept) + [broken[row]] * (counts[row] - len(kept))
    # One slot more than the window's 1/fps times: its first frame may stand for a time before it.
    per_window = math.ceil(clip_seconds * fps) + 1 if clip_seconds else None
    return mark_errors(_with_samples(out, samples, keep, per_window), failures, STAGE)


def sample_range(
    path: str,
    fs: Any,
    start: float,
    end: float,
    keep: FrameKeeper,
    *,
    fps: float | None,
    scenes: bool,
    threshold: float,
    limit: int,
) -> tuple[list[Sample], str | None]:
    """(the samples of [start, end), why decoding stopped early after them or None); raises
    when the video cannot be opened, fails before any sample, or has no frame in the range."""
    with open_video(path, fs) as container:
        rate = container.streams.video[0].average_rate
        frames = UntilBroken(decode_frames(container, start))
        if scenes:
            seconds = 1.0 / float(rate) if rate else 0.0
            samples = sample_scenes(frames, start, end, threshold, limit, keep, seconds)
        else:
            samples = sample_fps(frames, start, end, float(fps), limit, keep)
    if frames.error is not None and not samples:
        raise frames.error
    if frames.error is not None:
        return samples, f"decoding stopped after {frames.last:.3f} s: {describe(frames.error)}"
    if not samples:
        until = "its end" if end == math.inf else f"{end:g} s"
        raise ValueError(f"no frames from {start:g} s to {until}: the video ends before it")
    return samples, None


class UntilBroken:
    """The frames of an iterator until FFmpeg fails (a truncated or corrupt stream): the error
    and the last good frame's time are kept, for the frames before it to count."""

    def __init__(self, frames: Iterator[Frame]) -> None:
        self.frames = frames
        self.error: Exception | None = None
        self.last = 0.0

    def __iter__(self) -> Iterator[Frame]:
        try:
            for frame in self.frames:
                self.last = frame.time
                yield frame
        except Exception as error:  # FFmpeg's errors (InvalidDataError, ...) all derive from it
            self.error = error


def _with_samples(
    table: pa.Table, samples: list[Sample | None], keep: FrameKeeper, per_window: int | None
) -> pa.Table:
    """The fanned-out table with each sample's columns (errored rows: nulls, their range id)."""
    ids, parents = table["id"].to_pylist(), table[PARENT_ID].to_pylist()
    video_of = table["video"].to_pylist()
    columns: dict[str, list[Any]] = {name: [] for name in ("id", INDEX, *FRAME_COLUMNS[1:])}
    images = []
    for row, sample in enumerate(samples):
        if sample is None:  # an errored range, or the failure of a broken one: the range's id
            for name, values in columns.items():
                values.append((parents[row] or ids[row]) if name == "id" else None)
            images.append(None)
            continue
        columns["id"].append(f"{video_of[row]}@{sample.t_start:.3f}")
        columns[INDEX].append(sample.index)
        columns["t_start"].append(round(sample.t_start, 6))
        columns["t_end"].append(round(sample.t_end, 6))
        columns["frame"].append(sample.frame)
        height, width = sample.image[0]
        columns["width"].append(width)
        columns["height"].append(height)
        images.append(sample.image)
    types = {"id": pa.string(), INDEX: pa.int64(), "t_start": pa.float64(), "t_end": pa.float64()}
    types.update(frame=pa.int64(), width=pa.int32(), height=pa.int32())
    for name, values in columns.items():
        array = pa.array(values, types[name])
        if name in table.column_names:
            table = table.set_column(table.schema.get_field_index(name), name, array)
        else:
            table = table.append_column(name, array)
    table = table.drop_columns([VIDEO_PATH, RANGE_START, RANGE_END])
    for name, array in keep.columns(images, per_window).items():
        table = table.append_column(name, array)
    if per_window:
        counts = [0 if sample is None else sample.frames for sample in samples]
        table = table.append_column("frame_count", pa.array(counts, pa.int32()))
    return table


class PixelKeeper:
    """Frames resized and cropped by the checkpoint's processor as they are sampled."""

    def __init__(self, model_path: str, revision: str | None) -> None:
        self.processor = load_image_processor(model_path, revision)
        self.shape = output_shape(self.processor)  # every batch's column alike, all-error ones too

    def __call__(self, pixels: np.ndarray) -> tuple[tuple[int, int], np.ndarray]:
        values, failures = process_images(self.processor, [Image.fromarray(pixels)])
        if failures[0]:
            raise ValueError(failures[0])
        return pixels.shape[:2], values[0]

    def columns(self, images: list, per_window: int | None = None) -> dict[str, pa.Array]:
        """N x 3 x H x W, or with `per_window` N x per_window x 3 x H x W (windows zero-padded)."""
        stacked = np.zeros((len(images), *((per_window,) if per_window else ()), *self.shape), np.uint8)
        for row, image in enumerate(images):
            if image is not None and per_window:
                stacked[row, : len(image[1])] = image[1]
            elif image is not None:
                stacked[row] = image[1]
        return {"pixel_values": tensor_to_arrow(stacked)}


class RgbKeeper:
    """Frames kept whole (bounded by `max_side`) for a model whose processor sizes them."""

    def __init__(self, max_side: int) -> None:
        self.max_side = max_side

    def __call__(self, pixels: np.ndarray) -> tuple[tuple[int, int], np.ndarray]:
        if max(pixels.shape[:2]) > self.max_side:
            image = Image.fromarray(pixels)
            image.thumbnail((self.max_side, self.max_side), Image.Resampling.BICUBIC)
            return pixels.shape[:2], np.asarray(image)
        return pixels.shape[:2], pixels

    def columns(self, images: list, per_window: int | None = None) -> dict[str, pa.Array]:
        raws = [None if image is None else image[1].tobytes() for image in images]
        shapes = np.array([(0, 0, 3) if image is None else image[1].shape for image in images], np.int32)
        return {"image_rgb": pa.array(raws, pa.large_binary()), "image_shape": tensor_to_arrow(shapes)}
