"""The input formats: one module each with a `plan` (driver: list the input, cut it into shards)
and a `read` (Ray task: one shard's rows). The config check and read_input use this one table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from rayjobs.io import image_files, parquet_input, text_lines, video_files, webdataset_input
from rayjobs.io.shards import InputPlan, ReadOptions, Shard


@dataclass(frozen=True)
class InputFormat:
    plan: Callable[..., InputPlan]  # (fs, root, InputSpec) -> InputPlan
    read: Callable[[Shard, ReadOptions], pa.Table]
    shard_rows: int  # a sensible unit of work when the config names none
    lines: bool = False  # csv / jsonl: the reader needs every column name of the files
    patterns: bool = False  # input.path may be a brace pattern the format expands itself


FORMATS: dict[str, InputFormat] = {
    "parquet": InputFormat(parquet_input.plan, parquet_input.read, 4096),
    "images": InputFormat(image_files.plan, image_files.read, 512),
    "videos": InputFormat(video_files.plan, video_files.read, 8),
    "webdataset": InputFormat(webdataset_input.plan, webdataset_input.read, 1, patterns=True),
    **{
        name: InputFormat(text_lines.plan, text_lines.read, 1024, lines=True)
        for name in text_lines.LINE_FORMATS
    },
}
