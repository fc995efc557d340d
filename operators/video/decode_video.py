"""Video files opened with PyAV (FFmpeg): what a container says about its video stream, and its
frames over a time range, decoded one at a time (a 2-hour video is never held in memory),
upright (the display matrix applied) and timed in seconds from the stream's start."""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")


@dataclass(frozen=True)
class VideoInfo:
    """What the container says (it may be wrong: decoding is the truth)."""

    duration: float | None  # seconds
    fps: float | None  # the stream's average frame rate
    width: int
    height: int


@dataclass(frozen=True)
class Frame:
    time: float  # seconds from the stream's start
    number: int  # position in the stream: time x the average frame rate
    source: Any  # the decoded av.VideoFrame: converted only when a sampler wants it

    def pixels(self) -> np.ndarray:
        """H x W x 3 uint8 RGB, upright."""
        return upright(self.source)

    def grey(self, width: int = 64, height: int = 36) -> np.ndarray:
        """A small grey version (scaled by FFmpeg): cheap to compare, blind to noise."""
        return self.source.reformat(width=width, height=height, format="gray").to_ndarray()


@contextmanager
def open_video(path: str, fs: Any = None) -> Iterator[Any]:
    """An open PyAV container with a decodable video stream (`container.streams.video[0]`);
    raises ValueError naming what is wrong (no video stream, no decoder) otherwise."""
    import av

    remote = fs is not None and not _local(fs)
    if (fs.size(path) if remote else os.path.getsize(path)) == 0:  # FFmpeg would only say "invalid data"
        raise ValueError("empty file (0 bytes)")
    # Remote files open seekable: PyAV reads the index and then only the byte ranges it needs.
    handle = fs.open(path, "rb") if remote else None
    try:
        container = av.open(handle if handle is not None else path, "r")
        try:
            if not container.streams.video:
                kinds = sorted({stream.type for stream in container.streams}) or ["nothing"]
                raise ValueError(f"no video stream (the file holds {', '.join(kinds)})")
            stream = container.streams.video[0]
            if stream.codec_context is None or not stream.codec_context.name:
                raise ValueError("unsupported codec: FFmpeg has no decoder for this video stream")
            yield container
        finally:
            container.close()
    finally:
        if handle is not None:
            handle.close()


def probe_video(container) -> VideoInfo:
    stream = container.streams.video[0]
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000  # AV_TIME_BASE
    rate = stream.average_rate or stream.guessed_rate
    return VideoInfo(
        duration=duration if duration and duration > 0 else None,
        fps=float(rate) if rate else None,
        width=int(stream.codec_context.width or 0),
        height=int(stream.codec_context.height or 0),
    )


def decode_frames(container, start: float = 0.0, threads: int = 0) -> Iterator[Frame]:
    """Every frame from the keyframe at or before `start` on (the caller stops when it has
    what it needs): frames before `start` come too, so a sampler sees each frame's predecessor."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame + slice threads: FFmpeg decodes ahead on the task's cores
    if threads:
        stream.codec_context.thread_count = threads
    base = stream.time_base
    origin = stream.start_time or 0
    fps = float(stream.average_rate or stream.guessed_rate or 25)
    frames = container.decode(stream)
    if start > 0:
        # One frame early: a keyframe exactly at `start` would leave its predecessor undecoded.
        target = max(0.0, start - 1.5 / fps)
        container.seek(origin + int(target / base), stream=stream, backward=True, any_frame=False)
        first = next(frames, None)
        if first is not None and first.pts is not None and (first.pts - origin) * base > target:
            # The index pointed past it (a damaged or missing index): decode from the start instead.
            container.seek(origin, stream=stream, backward=True, any_frame=False)
            frames = container.decode(stream)
        elif first is not None:
            frames = itertools.chain([first], frames)
    last = -math.inf
    for frame in frames:
        if frame.pts is not None:
            time = float((frame.pts - origin) * base)
        else:  # no timestamp: one frame after the last
            time = last + 1.0 / fps if last > -math.inf else 0.0
        last = time
        yield Frame(time, int(round(time * fps)), frame)


def upright(frame) -> np.ndarray:
    """The frame as shown: FFmpeg's display rotation (counter-clockwise degrees) applied."""
    pixels = frame.to_ndarray(format="rgb24")
    turns = int(round((getattr(frame, "rotation", 0) or 0) / 90)) % 4
    return np.ascontiguousarray(np.rot90(pixels, turns)) if turns else pixels


def _local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")
