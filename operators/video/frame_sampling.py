"""Which frames of a time range become rows: one every 1/fps seconds, or one per scene.

Both samplers decide from each frame and its predecessor alone, so a range decoded on its own
picks exactly the frames a decode of the whole video would pick there: ranges of one video can
run in different tasks and their rows never overlap. A range owns the frames whose time falls
in [start, end).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from operators.video.decode_video import Frame

Keep = Callable[[np.ndarray], Any]  # a sampled frame's pixels -> what the row keeps of them
TOLERANCE = 1e-6  # seconds: frame times are rationals turned into floats


@dataclass(frozen=True)
class Sample:
    index: int  # the sample's number in its video (fps: its time slot; scenes: its first frame)
    t_start: float
    t_end: float
    frame: int  # the stream position of the frame that stands for [t_start, t_end)
    image: Any  # that frame, as `keep` made it (pixels for a model: kept frames stay small)
    frames: int = 1  # a window (video.clip_seconds): how many frames `image` stacks


def sample_fps(
    frames: Iterable[Frame], start: float, end: float, fps: float, limit: int, keep: Keep
) -> list[Sample]:
    """The first frame at or after each multiple of 1/fps (a frame that covers several such
    times, when the video has fewer frames than asked, is taken once); at most `limit` rows."""
    samples: list[Sample] = []
    previous = -math.inf
    for frame in frames:
        if previous >= end or len(samples) >= limit:
            break
        # The first time slot after the previous frame; with none decoded (the stream's start, or a
        # seek that landed late), the range's first slot, so no index is ever given twice.
        if previous > -math.inf:
            slot = math.floor(previous * fps + TOLERANCE) + 1
        else:
            slot = math.ceil(start * fps - TOLERANCE)
        if start - TOLERANCE <= frame.time < end - TOLERANCE and slot / fps <= frame.time + TOLERANCE:
            image = keep(frame.pixels())
            samples.append(Sample(slot, frame.time, frame.time + 1.0 / fps, frame.number, image))
        previous = frame.time
    return samples


def sample_scenes(
    frames: Iterable[Frame],
    start: float,
    end: float,
    threshold: float,
    limit: int,
    keep: Keep,
    frame_seconds: float,
) -> list[Sample]:
    """One row per scene starting in [start, end): a scene starts at the range's first frame and
    at every frame whose difference from its predecessor (mean absolute difference of small grey
    thumbnails, 0-1) passes `threshold`; the range's end closes its last scene. The frame that
    stands for a scene comes from its first half (not the cut itself, unless the scene is one
    frame). More than `limit` scenes in the range: the later cuts are ignored. `frame_seconds`:
    one frame's duration, which the stream's last frame adds to its scene."""
    scenes: list[list[Any]] = []  # first frame, representative (kept once closed), its number, last time
    previous: np.ndarray | None = None
    past_end: float | None = None
    for frame in frames:
        small = frame.grey().astype(np.float32)
        difference = 1.0 if previous is None else float(np.abs(small - previous).mean()) / 255.0
        previous = small
        if frame.time < start - TOLERANCE:
            continue
        if frame.time >= end - TOLERANCE:
            past_end = frame.time
            break
        if not scenes or (difference > threshold and len(scenes) < limit):
            if scenes:  # the closed scene's frame is final: keep only what the model needs
                scenes[-1][1] = keep(scenes[-1][1].pixels())
            scenes.append([frame, frame, frame.number, frame.time])
            continue
        scene = scenes[-1]
        scene[3] = frame.time
        # Doubling: the representative stays between a quarter and a half of the scene so far.
        if frame.time - scene[0].time >= 2 * (scene[1].time - scene[0].time) + 1e-3:
            scene[1], scene[2] = frame, frame.number
    if scenes:
        scenes[-1][1] = keep(scenes[-1][1].pixels())
    samples = []
    for number, (first, image, shown, last) in enumerate(scenes):
        if number + 1 < len(scenes):
            t_end = scenes[number + 1][0].time
        else:
            t_end = past_end if past_end is not None else last + frame_seconds
        samples.append(Sample(first.number, first.time, t_end, shown, image))
    return samples


def clip_windows(samples: list[Sample], clip_seconds: float) -> list[Sample]:
    """fps samples grouped into windows [w x clip_seconds, (w + 1) x clip_seconds): one row each,
    its image the stack of the window's kept frames (their embeddings are averaged later)."""
    windows: dict[int, list[Sample]] = {}
    for sample in samples:
        windows.setdefault(math.floor(sample.t_start / clip_seconds + TOLERANCE), []).append(sample)
    out = []
    for number, members in windows.items():
        size = members[0].image[0]
        stacked = np.stack([member.image[1] for member in members])
        t_end = min((number + 1) * clip_seconds, members[-1].t_end)
        out.append(
            Sample(number, number * clip_seconds, t_end, members[0].frame, (size, stacked), len(members))
        )
    return out
