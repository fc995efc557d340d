"""Ray task at the end of every pipeline: good rows to data/, errored rows to errors/.

File names come from the shard, its first row in the batch and the run's id, so a retried task
overwrites its own file instead of adding a duplicate, and files of an earlier (killed) run are
told apart from this run's. Each call returns one manifest row per shard, which the driver
counts to know when a shard is complete.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.arrow_tensors import arrow_to_tensor, tensor_to_arrow
from operators.row_errors import ERROR, ERROR_STAGE, good_rows
from rayjobs.io.read_input import ROW, SHARD
from rayjobs.io.storage import filesystem, join, write_parquet
from rayjobs.pipeline.model_stage import BATCH_SIZE

DATA_DIR = "data"
ERRORS_DIR = "errors"
MANIFEST = pa.schema(
    [("shard", pa.int32()), ("rows", pa.int64()), ("errors", pa.int64()), ("batch_size", pa.int32())]
)


def part_name(shard: int, first_row: int, run_id: str) -> str:
    return f"part-{shard:06d}-{first_row:08d}-{run_id}.parquet"


def parse_part_name(name: str) -> tuple[int, str] | None:
    """(shard, run id) of a file name written by this module, else None."""
    parts = name.rsplit("/", 1)[-1].removesuffix(".parquet").split("-")
    if len(parts) != 4 or parts[0] != "part" or not parts[1].isdigit():
        return None
    return int(parts[1]), parts[3]


def shard_of(name: str) -> int | None:
    parsed = parse_part_name(name)
    return parsed[0] if parsed else None


def write_results(table: pa.Table, *, output: dict[str, Any]) -> pa.Table:
    """Writes this batch's rows; returns the manifest (shard, rows, errors, model batch size)."""
    fs, root = filesystem(output["path"], output.get("storage_options"))
    good = good_rows(table)
    shards = table[SHARD].to_numpy()
    sizes = table[BATCH_SIZE].to_numpy() if BATCH_SIZE in table.column_names else np.zeros(len(shards))
    manifest = []
    for shard in np.unique(shards):
        mine = shards == shard
        part = table.filter(pa.array(mine))
        ok = good[mine]
        name = part_name(int(shard), int(pc.min(part[ROW]).as_py()), output["run_id"])
        if ok.any():
            data = _result_columns(part.filter(pa.array(ok)), output)
            write_parquet(fs, join(root, DATA_DIR, name), data, output.get("compression", "zstd"))
        if not ok.all():
            errors = _error_columns(part.filter(pa.array(~ok)), output)
            write_parquet(fs, join(root, ERRORS_DIR, name), errors, output.get("compression", "zstd"))
        manifest.append((int(shard), int(len(ok)), int((~ok).sum()), int(sizes[mine].max())))
    return pa.Table.from_pylist(
        [dict(zip(MANIFEST.names, row, strict=True)) for row in manifest], schema=MANIFEST
    )


def _result_columns(table: pa.Table, output: dict[str, Any]) -> pa.Table:
    names = ["id", *output["results"], *output.get("columns", [])]
    columns = {}
    for name in dict.fromkeys(names):
        column = table[name]
        if name == "embedding" and output.get("embedding_dtype", "float32") != "float32":
            column = tensor_to_arrow(arrow_to_tensor(column).astype(output["embedding_dtype"]))
        columns[name] = column
    return pa.table(columns)


def _error_columns(table: pa.Table, output: dict[str, Any]) -> pa.Table:
    columns = {"id": table["id"], "stage": table[ERROR_STAGE], "reason": table[ERROR]}
    for name in [*output.get("error_columns", []), *output.get("columns", [])]:
        columns.setdefault(name, table[name])
    return pa.table(columns)
