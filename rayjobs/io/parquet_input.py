"""Parquet input: shards are row ranges of files, planned from the footers alone."""

from __future__ import annotations

import posixpath
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

from operators.row_errors import describe
from rayjobs.config.config_error import ConfigError
from rayjobs.io.shards import InputPlan, ReadOptions, Shard, hidden, row_ids, shard_table, with_read_errors
from rayjobs.io.storage import filesystem, open_file, retrying


def plan(fs, root: str, spec) -> InputPlan:
    if fs.isdir(root):
        found = retrying(lambda: fs.find(root, detail=True))
        sizes = {
            p: info["size"] for p, info in found.items() if p.endswith(".parquet") and not hidden(p, root)
        }
    elif any(c in root for c in "*?["):
        sizes = {p: info["size"] for p, info in retrying(lambda: fs.glob(root, detail=True)).items()}
    else:
        sizes = {root: retrying(lambda: fs.info(root))["size"]}
    files = sorted(sizes)
    if not files:
        raise ConfigError("input.path", f"no .parquet files under {spec.path!r}")

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
    shards: list[Shard] = []
    for path, meta in zip(files, footers, strict=True):
        for start in range(0, meta.num_rows, spec.shard_rows):
            rows = min(spec.shard_rows, meta.num_rows - start)
            shards.append(Shard(len(shards), rows, path=path, start=start, size=sizes[path]))
    base = root if fs.isdir(root) else posixpath.dirname(files[0])
    return InputPlan(base, shards, footers[0].schema.to_arrow_schema(), len(files))


def read(shard: Shard, options: ReadOptions) -> pa.Table:
    spec = options.input
    fs, _ = filesystem(spec.path, spec.storage_options)
    wanted = list(dict.fromkeys(c for c in [spec.id_column, *options.columns] if c))

    def read_rows() -> pa.Table:
        with open_file(fs, shard.path, shard.size) as handle:
            return rows_of(pq.ParquetFile(handle), shard.start, shard.rows, wanted)

    data = retrying(read_rows)
    ids = data[spec.id_column] if spec.id_column else row_ids(shard, options.root, shard.rows)
    table = shard_table(shard, ids)
    for column in options.columns:
        if column not in table.column_names:
            table = table.append_column(column, data[column])
    return with_read_errors(table, [None] * shard.rows)


def rows_of(file: pq.ParquetFile, start: int, count: int, columns: list[str]) -> pa.Table:
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
