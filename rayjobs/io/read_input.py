"""Read a job's input as numbered shards: the unit of work, progress and resume.

The driver only lists files and reads Parquet footers (`plan_input`); rows are read inside Ray
tasks, one per shard (`read_input`). Each format's plan and read live in its own module,
registered in rayjobs.io.input_formats.FORMATS.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from rayjobs.config.config_error import ConfigError
from rayjobs.config.run_spec import InputSpec
from rayjobs.io.input_formats import FORMATS
from rayjobs.io.shards import InputPlan, ReadOptions, Shard
from rayjobs.io.storage import filesystem


def plan_input(spec: InputSpec, limit: int | None = None) -> InputPlan:
    """List the input and cut it into shards; a missing or empty input is a ConfigError."""
    fs, root = filesystem(spec.path, spec.storage_options)
    if not (FORMATS[spec.format].patterns and "{" in root) and not fs.exists(root):
        raise ConfigError("input.path", f"{spec.path!r} does not exist")
    plan = FORMATS[spec.format].plan(fs, root, spec)
    if plan.rows == 0:
        raise ConfigError("input.path", f"{spec.path!r} holds no rows")
    return plan.limited(limit) if limit is not None else plan


def read_options(plan: InputPlan, spec: InputSpec, columns: list[str]) -> ReadOptions:
    lines = FORMATS[spec.format].lines and plan.schema is not None
    names = tuple(plan.schema.names) if lines else ()
    return ReadOptions(spec, plan.root, tuple(dict.fromkeys(columns)), names)


def read_input(plan: InputPlan, shards: list[Shard], spec: InputSpec, columns: list[str]):
    """A Ray Dataset of the shards' rows: _shard, _row, id, the `columns` asked for, error columns.

    One Ray read task per shard, so the stages after it run in parallel across shards.
    """
    import ray.data

    source = ShardSource(shards, read_options(plan, spec, columns))
    return ray.data.read_datasource(source, override_num_blocks=max(1, len(shards)))


def read_shard(shard: Shard, options: ReadOptions) -> pa.Table:
    """The rows of one shard (runs in a Ray read task)."""
    return FORMATS[options.input.format].read(shard, options)


class ShardSource(Datasource):
    """A Ray Data datasource whose read tasks are our shards, one each."""

    def __init__(self, shards: list[Shard], options: ReadOptions) -> None:
        self.shards = shards
        self.options = options

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, **_: Any) -> list[ReadTask]:
        return [_read_task(shard, self.options) for shard in self.shards]

    def get_name(self) -> str:
        return "ReadShards"


def _read_task(shard: Shard, options: ReadOptions) -> ReadTask:
    files = (shard.path,) if shard.path else None
    metadata = BlockMetadata(num_rows=shard.rows, size_bytes=None, exec_stats=None, input_files=files)
    return ReadTask(lambda: [read_shard(shard, options)], metadata)
