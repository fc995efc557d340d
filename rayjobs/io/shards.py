"""Shards: numbered units of an input (a row range of a file, or a run of image files), the unit
of work, progress and resume. Their numbers never change while the input does not."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from operators.row_errors import ERROR, ERROR_STAGE

if TYPE_CHECKING:
    from rayjobs.config.run_spec import InputSpec

SHARD = "_shard"
ROW = "_row"
READ_STAGE = "read"


@dataclass(frozen=True)
class Shard:
    index: int
    rows: int
    path: str = ""  # row-range formats: the file
    start: int = 0  # row-range formats: first row in the file
    size: int = 0  # parquet: the file's bytes (opening with it skips a lookup that can flake)
    byte_start: int = 0  # csv / jsonl: the shard's byte range in `path`
    byte_end: int = 0
    files: tuple[str, ...] = field(default_factory=tuple)  # images: the files, relative to root
    # videos: (video id, path or URL, start s, end s or None: to the stream's end), one per row
    spans: tuple[tuple[str, str, float, float | None], ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class InputPlan:
    """Everything the driver learnt about the input before Ray starts."""

    root: str
    shards: list[Shard]
    schema: pa.Schema | None  # row formats: the columns a config may name
    files: int

    @property
    def rows(self) -> int:
        return sum(shard.rows for shard in self.shards)

    def fingerprint_source(self) -> dict[str, Any]:
        return {"files": self.files, "rows": self.rows, "shards": len(self.shards)}

    def limited(self, limit: int) -> InputPlan:
        """The first `limit` rows (job.limit)."""
        shards, left = [], limit
        for shard in self.shards:
            if left <= 0:
                break
            take = min(left, shard.rows)
            shards.append(replace(shard, rows=take, files=shard.files[:take], spans=shard.spans[:take]))
            left -= take
        return InputPlan(self.root, shards, self.schema, self.files)


@dataclass(frozen=True)
class ReadOptions:
    """What a read task needs besides its shard (pickled once into every read task)."""

    input: InputSpec
    root: str  # the plan's root: ids and image paths are relative to it
    columns: tuple[str, ...]  # input columns the job asked for
    schema_names: tuple[str, ...] = ()  # csv / jsonl: every column the files have


def shard_table(shard: Shard, ids: pa.Array | Sequence[Any]) -> pa.Table:
    """_shard, _row and id of a shard's rows: what every reader starts its table with."""
    return pa.table(
        {
            SHARD: pa.array([shard.index] * len(ids), pa.int32()),
            ROW: pa.array(range(len(ids)), pa.int64()),
            "id": ids if isinstance(ids, pa.Array | pa.ChunkedArray) else pa.array(list(ids)),
        }
    )


def row_ids(shard: Shard, root: str, rows: int) -> list[str]:
    """Default ids of row formats: "<file under the input root>:<row in the file>"."""
    name = posixpath.relpath(shard.path, root)
    return [f"{name}:{shard.start + i}" for i in range(rows)]


def with_read_errors(table: pa.Table, reasons: Sequence[str | None]) -> pa.Table:
    stages = [READ_STAGE if reason else None for reason in reasons]
    table = table.append_column(ERROR, pa.array(list(reasons), pa.string()))
    return table.append_column(ERROR_STAGE, pa.array(stages, pa.string()))


def hidden(path: str, root: str) -> bool:
    """Files under `_` or `.` names (records, journals, editors' files) are never input."""
    return any(part.startswith((".", "_")) for part in posixpath.relpath(path, root).split("/"))
