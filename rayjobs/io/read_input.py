"""Read a job's input as numbered shards: the unit of work, progress and resume.

The driver only lists files and reads Parquet footers; rows are read inside Ray tasks. A shard
is a row range of one Parquet file or a list of image files; its number never changes while the
input does not, which is what lets a re-run skip finished shards.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from operators.row_errors import ERROR, ERROR_STAGE, describe
from rayjobs.config.config_error import ConfigError
from rayjobs.io.read_text_files import (
    LINE_FORMATS,
    RAW_LINE,
    first_record_keys,
    header,
    line_offsets,
    read_lines,
    with_parse_errors,
)
from rayjobs.io.storage import filesystem, is_transient, open_file, read_bytes, retrying

SHARD = "_shard"
ROW = "_row"
READ_STAGE = "read"


@dataclass(frozen=True)
class Shard:
    index: int
    rows: int
    path: str = ""  # parquet: the file
    start: int = 0  # parquet: first row in the file
    size: int = 0  # parquet: the file's bytes (opening with it skips a lookup that can flake)
    byte_start: int = 0  # csv / jsonl: the shard's byte range in `path`
    byte_end: int = 0
    files: tuple[str, ...] = field(default_factory=tuple)  # images: the files, relative to root


@dataclass(frozen=True)
class InputPlan:
    """Everything the driver learnt about the input before Ray starts."""

    root: str
    shards: list[Shard]
    schema: pa.Schema | None  # parquet only
    files: int

    @property
    def rows(self) -> int:
        return sum(shard.rows for shard in self.shards)

    def fingerprint_source(self) -> dict[str, Any]:
        return {"files": self.files, "rows": self.rows, "shards": len(self.shards)}


def plan_input(cfg: Mapping[str, Any], limit: int | None = None) -> InputPlan:
    """List the input and cut it into shards; a missing or empty input is a ConfigError."""
    fs, root = filesystem(cfg["path"], cfg.get("storage_options"))
    if not fs.exists(root):
        raise ConfigError("input.path", f"{cfg['path']!r} does not exist")
    if cfg["format"] == "parquet":
        plan = _plan_parquet(fs, root, cfg)
    elif cfg["format"] == "images":
        plan = _plan_images(fs, root, cfg)
    elif cfg["format"] in LINE_FORMATS:
        plan = _plan_lines(fs, root, cfg)
    else:
        formats = ", ".join(["parquet", "images", *LINE_FORMATS])
        raise ConfigError("input.format", f"must be one of {formats}, got {cfg['format']!r}")
    if plan.rows == 0:
        raise ConfigError("input.path", f"{cfg['path']!r} holds no rows")
    return _limited(plan, limit) if limit is not None else plan


def _plan_parquet(fs, root: str, cfg: Mapping[str, Any]) -> InputPlan:
    if fs.isdir(root):
        found = retrying(lambda: fs.find(root, detail=True))
        sizes = {
            p: info["size"] for p, info in found.items() if p.endswith(".parquet") and not _hidden(p, root)
        }
    elif any(c in root for c in "*?["):
        sizes = {p: info["size"] for p, info in retrying(lambda: fs.glob(root, detail=True)).items()}
    else:
        sizes = {root: retrying(lambda: fs.info(root))["size"]}
    files = sorted(sizes)
    if not files:
        raise ConfigError("input.path", f"no .parquet files under {cfg['path']!r}")

    def footer(path: str) -> pq.FileMetaData:
        def read() -> pq.FileMetaData:
            with open_file(fs, path, sizes[path]) as handle:
                return pq.ParquetFile(handle).metadata

        return retrying(read)

    try:
        with ThreadPoolExecutor(16) as pool:  # footers of many remote files: latency-bound
            footers = list(pool.map(footer, files))
    except Exception as error:
        raise ConfigError("input.path", f"cannot read Parquet footers: {describe(error)}") from None
    step = int(cfg.get("shard_rows") or 4096)
    shards: list[Shard] = []
    for path, meta in zip(files, footers, strict=True):
        for start in range(0, meta.num_rows, step):
            rows = min(step, meta.num_rows - start)
            shards.append(Shard(len(shards), rows, path=path, start=start, size=sizes[path]))
    base = root if fs.isdir(root) else posixpath.dirname(files[0])
    return InputPlan(base, shards, footers[0].schema.to_arrow_schema(), len(files))


def _plan_images(fs, root: str, cfg: Mapping[str, Any]) -> InputPlan:
    extensions = tuple(e.lower() for e in cfg.get("extensions") or ())
    if fs.isdir(root):
        found = sorted(p for p in fs.find(root) if p.lower().endswith(extensions) and not _hidden(p, root))
        files = [posixpath.relpath(p, root) for p in found]
    else:
        root, files = posixpath.dirname(root), [posixpath.basename(root)]
    if not files:
        raise ConfigError("input.path", f"no image files ({', '.join(extensions)}) under {cfg['path']!r}")
    step = int(cfg.get("shard_rows") or 512)
    shards = [
        Shard(i, len(chunk), files=tuple(chunk))
        for i, chunk in enumerate(files[start : start + step] for start in range(0, len(files), step))
    ]
    return InputPlan(root, shards, None, len(files))


def _plan_lines(fs, root: str, cfg: Mapping[str, Any]) -> InputPlan:
    fmt = cfg["format"]
    if fs.isdir(root):
        files = sorted(
            p for p in fs.find(root) if p.lower().endswith(LINE_FORMATS[fmt]) and not _hidden(p, root)
        )
        base = root
    else:
        files = sorted(fs.glob(root)) if any(c in root for c in "*?[") else [root]
        base = posixpath.dirname(files[0]) if files else root
    if not files:
        raise ConfigError(
            "input.path", f"no {fmt} files ({', '.join(LINE_FORMATS[fmt])}) under {cfg['path']!r}"
        )
    step = int(cfg.get("shard_rows") or 1024)
    shards: list[Shard] = []
    for path in files:
        with fs.open(path, "rb") as handle:
            first = 0
            for start, end, rows in line_offsets(handle, step, skip_header=fmt == "csv"):
                shards.append(
                    Shard(len(shards), rows, path=path, start=first, byte_start=start, byte_end=end)
                )
                first += rows
    if fmt == "csv":
        names = header(fs, files[0])
    elif fmt == "jsonl":
        names = first_record_keys(fs, files[0])
    else:
        names = [RAW_LINE]
    schema = pa.schema([(name, pa.string()) for name in names])
    return InputPlan(base, shards, schema, len(files))


def _hidden(path: str, root: str) -> bool:
    return any(part.startswith((".", "_")) for part in posixpath.relpath(path, root).split("/"))


def _limited(plan: InputPlan, limit: int) -> InputPlan:
    shards, left = [], limit
    for shard in plan.shards:
        if left <= 0:
            break
        take = min(left, shard.rows)
        shards.append(replace(shard, rows=take, files=shard.files[:take] if shard.files else ()))
        left -= take
    return InputPlan(plan.root, shards, plan.schema, plan.files)


def read_input(plan: InputPlan, shards: list[Shard], cfg: Mapping[str, Any], columns: list[str]):
    """A Ray Dataset of the shards' rows: _shard, _row, id, the `columns` asked for, error columns.

    One Ray read task per shard, so the stages after it run in parallel across shards.
    """
    import ray.data

    options = {
        "format": cfg["format"],
        "line_columns": plan.schema.names
        if plan.schema is not None and cfg["format"] in LINE_FORMATS
        else [],
        "url": str(cfg["path"]),
        "root": plan.root,
        "storage_options": dict(cfg.get("storage_options") or {}),
        "id_column": cfg.get("id_column"),
        "image_column": cfg.get("image_column") or "image",
        "columns": list(dict.fromkeys(columns)),
    }
    return ray.data.read_datasource(ShardSource(shards, options), override_num_blocks=max(1, len(shards)))


class ShardSource(Datasource):
    """A Ray Data datasource whose read tasks are our shards, one each."""

    def __init__(self, shards: list[Shard], options: dict[str, Any]) -> None:
        self.shards = shards
        self.options = options

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, **_: Any) -> list[ReadTask]:
        return [_read_task(shard, self.options) for shard in self.shards]

    def get_name(self) -> str:
        return "ReadShards"


def _read_task(shard: Shard, options: dict[str, Any]) -> ReadTask:
    files = (shard.path,) if shard.path else None
    metadata = BlockMetadata(num_rows=shard.rows, size_bytes=None, exec_stats=None, input_files=files)
    return ReadTask(lambda: [read_shard(shard, options)], metadata)


def read_shard(shard: Shard, options: dict[str, Any]) -> pa.Table:
    """The rows of one shard (runs in a Ray read task)."""
    if options["format"] in LINE_FORMATS:
        return _read_lines(shard, options)
    return _read_parquet(shard, options) if shard.path else _read_images(shard, options)


def _read_lines(shard: Shard, options: dict[str, Any]) -> pa.Table:
    fs, _ = filesystem(options["url"], options["storage_options"])

    def read() -> bytes:
        with fs.open(shard.path, "rb") as handle:
            handle.seek(shard.byte_start)
            return handle.read(shard.byte_end - shard.byte_start)

    names = options["line_columns"]
    data, reasons = read_lines(retrying(read), options["format"], names)
    data, reasons = data.slice(0, shard.rows), reasons[: shard.rows]  # job.limit may cut a shard short
    if options["id_column"]:
        ids = data[options["id_column"]]
    else:
        name = posixpath.relpath(shard.path, options["root"])
        ids = pa.array([f"{name}:{shard.start + i}" for i in range(data.num_rows)])
    table = pa.table(
        {
            SHARD: pa.array([shard.index] * data.num_rows, pa.int32()),
            ROW: pa.array(range(data.num_rows), pa.int64()),
            "id": ids,
        }
    )
    for column in dict.fromkeys([*options["columns"], *names]):
        if column in data.column_names and column not in table.column_names:
            table = table.append_column(column, data[column])
    return with_parse_errors(table, reasons, READ_STAGE)


def _read_parquet(shard: Shard, options: dict[str, Any]) -> pa.Table:
    fs, _ = filesystem(options["url"], options["storage_options"])
    wanted = list(dict.fromkeys(c for c in [options["id_column"], *options["columns"]] if c))

    def read() -> pa.Table:
        with open_file(fs, shard.path, shard.size) as handle:
            return _read_rows(pq.ParquetFile(handle), shard.start, shard.rows, wanted)

    data = retrying(read)
    if options["id_column"]:
        ids = data[options["id_column"]]
    else:
        name = posixpath.relpath(shard.path, options["root"])
        ids = pa.array([f"{name}:{shard.start + i}" for i in range(shard.rows)])
    table = pa.table({SHARD: _shard_column(shard), ROW: pa.array(range(shard.rows), pa.int64()), "id": ids})
    for column in options["columns"]:
        table = table.append_column(column, data[column])
    return _with_read_errors(table, [None] * shard.rows)


def _read_rows(file: pq.ParquetFile, start: int, count: int, columns: list[str]) -> pa.Table:
    """Rows [start, start+count) reading only the row groups that hold them."""
    meta, first, groups, offset = file.metadata, 0, [], 0
    for group in range(meta.num_row_groups):
        size = meta.row_group(group).num_rows
        if first + size > start and first < start + count:
            if not groups:
                offset = start - first
            groups.append(group)
        first += size
    return file.read_row_groups(groups, columns=columns).slice(offset, count)


def _read_images(shard: Shard, options: dict[str, Any]) -> pa.Table:
    fs, _ = filesystem(options["url"], options["storage_options"])
    paths = [posixpath.join(options["root"], name) for name in shard.files]
    # One call fetches the whole shard concurrently on object stores.
    fetched = fs.cat(paths, on_error="return") if len(paths) > 1 else _cat_one(fs, paths[0])
    blobs, reasons = [], []
    for path in paths:
        value = fetched.get(path, FileNotFoundError(path))
        if isinstance(value, BaseException) and is_transient(value):
            value = _cat_one(fs, path)[path]
        if isinstance(value, BaseException):
            blobs.append(None)
            reasons.append(describe(value))
        else:
            blobs.append(value)
            reasons.append(None)
    table = pa.table(
        {
            SHARD: _shard_column(shard),
            ROW: pa.array(range(shard.rows), pa.int64()),
            "id": pa.array(list(shard.files), pa.string()),
            options["image_column"]: pa.array(blobs, pa.binary()),
        }
    )
    return _with_read_errors(table, reasons)


def _cat_one(fs, path: str) -> dict[str, Any]:
    """{path: bytes or the exception}; transient failures are retried first."""
    try:
        return {path: read_bytes(fs, path)}
    except Exception as error:
        return {path: error}


def _shard_column(shard: Shard) -> pa.Array:
    return pa.array([shard.index] * shard.rows, pa.int32())


def _with_read_errors(table: pa.Table, reasons: list[str | None]) -> pa.Table:
    stages = [READ_STAGE if reason else None for reason in reasons]
    table = table.append_column(ERROR, pa.array(reasons, pa.string()))
    return table.append_column(ERROR_STAGE, pa.array(stages, pa.string()))
