"""Videos: a folder (searched recursively), one file, or a list (a .txt of paths, or a Parquet
column `input.video_column`), local or fsspec URLs. Each video is cut into time ranges of
`input.split_seconds`, the input rows: the unit of resume, so a long video is shared by several
tasks. A shard (one read task) packs ranges up to `input.shard_rows` rows and
`input.shard_seconds` of video, so short clips share a task and long ranges get one each.

The driver opens each video's header (16 at a time, 64 on object stores) for its duration; a
video whose header cannot be read is one range, and its read task records why it fails.
"""

from __future__ import annotations

import logging
import posixpath
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

from operators.video.decode_video import EXTENSIONS, open_video, probe_video
from operators.video.sample_frames import RANGE_END, RANGE_START, VIDEO_PATH
from rayjobs.config.config_error import ConfigError
from rayjobs.io.shards import InputPlan, ReadOptions, Shard, hidden, shard_table, with_read_errors
from rayjobs.io.storage import filesystem, is_local, read_bytes
from rayjobs.pipeline.run_stats import duration

PROBE_THREADS = {"local": 16, "remote": 64}  # a remote header costs round trips, not CPU
log = logging.getLogger("rayjobs")


def plan(fs, root: str, spec) -> InputPlan:
    videos = _list_videos(fs, root, spec)
    started = time.monotonic()
    with ThreadPoolExecutor(PROBE_THREADS["local" if is_local(fs) else "remote"]) as pool:
        durations = list(pool.map(lambda video: _duration(fs, video[1]), videos))
    known = [d for d in durations if d]
    log.info(
        "videos: %d files, %s of video by their headers (read in %.1f s; %d without a duration)",
        len(videos),
        duration(sum(known)),
        time.monotonic() - started,
        len(videos) - len(known),
    )
    step = spec.split_seconds
    shards: list[Shard] = []
    batch: list[tuple[str, str, float, float | None]] = []  # (video id, path, start, end or None)
    seconds = 0.0  # of video in `batch`
    for (name, path), total in zip(videos, durations, strict=True):
        count = max(1, -int(-total // step)) if total else 1
        for i in range(count):
            start = i * step
            length = min(step, total - start) if total else step
            if batch and (len(batch) >= spec.shard_rows or seconds + length > spec.shard_seconds):
                shards.append(Shard(len(shards), len(batch), spans=tuple(batch)))
                batch, seconds = [], 0.0
            # The last range runs to the stream's end, whatever the container said.
            batch.append((name, path, start, start + step if i + 1 < count else None))
            seconds += length
    shards.append(Shard(len(shards), len(batch), spans=tuple(batch)))
    return InputPlan(root, shards, None, len(videos))


def read(shard: Shard, options: ReadOptions) -> pa.Table:
    """The shard's ranges; nothing is decoded here (sample_frames does, in the next stage)."""
    ids = [range_id(name, start, end) for name, _, start, end in shard.spans]
    table = shard_table(shard, pa.array(ids, pa.string()))
    table = table.append_column("video", pa.array([span[0] for span in shard.spans], pa.string()))
    table = table.append_column(VIDEO_PATH, pa.array([span[1] for span in shard.spans], pa.string()))
    table = table.append_column(RANGE_START, pa.array([span[2] for span in shard.spans], pa.float64()))
    table = table.append_column(RANGE_END, pa.array([span[3] for span in shard.spans], pa.float64()))
    return with_read_errors(table, [None] * table.num_rows)


def range_id(video: str, start: float, end: float | None) -> str:
    """A range's id, which its errors are recorded under: `<video>@<start>s-<end>s` (or `-end`)."""
    return f"{video}@{start:g}s-{'end' if end is None else f'{end:g}s'}"


def _list_videos(fs, root: str, spec) -> list[tuple[str, str]]:
    """(video id, full path or URL) of every video, sorted by id."""
    extensions = spec.extensions or EXTENSIONS
    if fs.isdir(root):
        found = sorted(p for p in fs.find(root) if p.lower().endswith(extensions) and not hidden(p, root))
        videos = [(posixpath.relpath(p, root), _full(fs, p)) for p in found]
    elif root.lower().endswith((".txt", ".parquet")):
        videos = _listed(fs, root, spec)
    else:
        videos = [(posixpath.basename(root), _full(fs, root))]
    if not videos:
        raise ConfigError("input.path", f"no videos ({', '.join(extensions)}) under {spec.path!r}")
    return videos


def _listed(fs, root: str, spec) -> list[tuple[str, str]]:
    """A list file's videos: ids as written, relative paths taken from the list's folder."""
    if root.endswith(".parquet"):
        with fs.open(root, "rb") as handle:
            table = pq.read_table(handle)
        if spec.video_column not in table.column_names:
            raise ConfigError("input.video_column", f"{spec.video_column!r} is not a column of {spec.path!r}")
        names = [str(value) for value in table[spec.video_column].to_pylist() if value]
    else:
        names = [line.strip() for line in read_bytes(fs, root).decode("utf-8").splitlines()]
        names = [name for name in names if name and not name.startswith("#")]
    folder = posixpath.dirname(root)
    out = []
    for name in dict.fromkeys(names):  # a video listed twice is one video
        absolute = "://" in name or name.startswith("/")
        out.append((name, name if absolute else _full(fs, posixpath.join(folder, name))))
    return out


def _full(fs, path: str) -> str:
    """A path the read task can open with its storage options: the URL for remote files."""
    return path if is_local(fs) else fs.unstrip_protocol(path)


def _duration(fs, path: str) -> float | None:
    """The container's duration in seconds, or None when it cannot say (then: one range)."""
    try:
        inner_fs, inner = (fs, path) if is_local(fs) else filesystem(path, fs.storage_options)
        with open_video(inner, inner_fs) as container:
            return probe_video(container).duration
    except Exception:  # the read task meets the same failure and records it for this video
        return None
