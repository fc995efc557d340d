"""Ray task at the end of every pipeline: each row to the folder of its outcome.

data/      written rows: id, the results, output.columns (fan-out: parent_id, index; file
           outputs: path, width/height when the stage gave them, bytes)
errors/    errored rows: id, stage, reason
filtered/  filtered rows: id, stage, reason (the rule with the value)
files/     file outputs, named from the row id (operators.file_outputs)
tars/      with output.format=webdataset, the file outputs of kept rows as WebDataset tars instead
           (rayjobs.io.webdataset_output); data/ rows still list them: path (the tar), tar_key
<name>/    side files (thumbnail_256/ ...) of kept and filtered rows; their paths in column <name>

Parquet names come from the shard, the batch's first (row, child) and the run's id, so a
retried task overwrites its own file instead of adding a duplicate, and files of an earlier
(killed) run are told apart from this run's. Each call returns manifest rows per (shard, parts),
which the driver adds up to know when a shard's input rows all have an outcome.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa

from operators.arrow_tensors import arrow_to_tensor, tensor_to_arrow
from operators.fan_out import INDEX, PARENT_ID, parts_of, sub_of
from operators.file_outputs import FILE_BYTES, FILE_EXT, file_name, side_file_columns, side_file_names
from operators.row_errors import ERROR, ERROR_STAGE, FILTER_STAGE, FILTERED, errored_rows, good_rows
from rayjobs.io.shards import ROW, SHARD
from rayjobs.io.storage import filesystem, join, write_bytes, write_parquet
from rayjobs.io.webdataset_output import (
    TAR_KEY,
    WEBDATASET,
    Sample,
    row_json,
    sample_json_columns,
    sample_key,
    write_tars,
)
from rayjobs.pipeline.model_stage import BATCH_SIZE_PREFIX

DATA_DIR = "data"
ERRORS_DIR = "errors"
FILTERED_DIR = "filtered"
OUTCOME_DIRS = (DATA_DIR, ERRORS_DIR, FILTERED_DIR)
MANIFEST = pa.schema(
    [
        ("shard", pa.int32()),
        ("parts", pa.int64()),  # outputs per input row of these rows (1 without fan-out)
        ("rows", pa.int64()),
        ("errors", pa.int64()),
        ("filtered", pa.int64()),
        ("batch_sizes", pa.string()),  # JSON {model stage: rows per call}, for the run record
        ("usage", pa.string()),  # JSON {tokens_in, tokens_out} of the written rows, for the run record
    ]
)


def part_name(shard: int, first_row: int, run_id: str, first_sub: int = 0) -> str:
    return f"part-{shard:06d}-{first_row:08d}-{first_sub}-{run_id}.parquet"


def parse_part_name(name: str) -> tuple[int, str] | None:
    """(shard, run id) of a file name written by this module (a Parquet part, or a tar named
    after one with its number appended), else None. A temp file a killed write left behind
    gets a run id no run has, so the output folder's cleanup removes it."""
    parts = name.rsplit("/", 1)[-1].split("-")
    if len(parts) not in (5, 6) or parts[0] != "part" or not parts[1].isdigit():
        return None
    if len(parts) == 6 and not re.fullmatch(r"\d+\.tar(\.[0-9a-f]+\.tmp)?", parts[5]):
        return None
    run = parts[4].removesuffix(".parquet")
    whole = parts[4].endswith(".parquet") if len(parts) == 5 else parts[5].endswith(".tar")
    return int(parts[1]), run if whole else f"{run}.tmp"


def shard_of(name: str) -> int | None:
    parsed = parse_part_name(name)
    return parsed[0] if parsed else None


def write_results(table: pa.Table, *, output: dict[str, Any]) -> pa.Table:
    """Writes this batch's rows by outcome; returns its manifest rows."""
    fs, root = filesystem(output["path"], output.get("storage_options"))
    compression = output.get("compression", "zstd")
    good = good_rows(table)
    errored = errored_rows(table)
    filtered = ~good & ~errored
    shards = table[SHARD].to_numpy()
    parts = parts_of(table)
    rows, subs = table[ROW].to_numpy(), sub_of(table)
    names = {}  # shard -> this batch's part name: the same on a retry
    for shard in np.unique(shards):
        mine = shards == shard
        first = min(zip(rows[mine].tolist(), subs[mine].tolist(), strict=True))
        names[int(shard)] = part_name(int(shard), first[0], output["run_id"], first[1])
    if FILE_BYTES in table.column_names and output.get("format") == WEBDATASET:
        table = _write_tars(fs, root, table, good, names, output)
    elif FILE_BYTES in table.column_names:
        table = _write_files(fs, root, table, good)
    for name in side_file_names(table.column_names):
        table = _write_side_files(fs, root, table, name, ~errored)
    sizes = json.dumps(_batch_sizes(table))
    usage = json.dumps(token_usage(table, good))
    manifest = []
    for shard, name in names.items():
        mine = shards == shard
        outcomes = {
            DATA_DIR: (mine & good, _result_columns),
            ERRORS_DIR: (mine & errored, _error_columns),
            FILTERED_DIR: (mine & filtered, _filtered_columns),
        }
        for folder, (rows_here, columns) in outcomes.items():
            if rows_here.any():
                part = columns(table.filter(pa.array(rows_here)), output)
                write_parquet(fs, join(root, folder, name), part, compression)
        for k in np.unique(parts[mine]):
            group = mine & (parts == k)
            counts = [int(group.sum()), int((group & errored).sum()), int((group & filtered).sum())]
            manifest.append((int(shard), int(k), *counts, sizes, "{}"))
    if manifest:  # the batch's usage once, on its first manifest row
        manifest[0] = (*manifest[0][:-1], usage)
    return pa.Table.from_pylist(
        [dict(zip(MANIFEST.names, row, strict=True)) for row in manifest], schema=MANIFEST
    )


def _write_files(fs, root: str, table: pa.Table, good: np.ndarray) -> pa.Table:
    """Store the good rows' artefacts; the rows carry `path` (relative to output.path) and `bytes`."""
    blobs = table[FILE_BYTES].to_pylist()
    exts = table[FILE_EXT].to_pylist()
    ids = table["id"].to_pylist()
    paths: list[str | None] = [None] * table.num_rows
    jobs = []
    for i in np.flatnonzero(good):
        paths[i] = file_name(ids[i], exts[i])
        jobs.append((join(root, paths[i]), blobs[i]))
    _store(fs, jobs)
    sizes = [len(blob) if path else None for path, blob in zip(paths, blobs, strict=True)]
    table = table.drop_columns([FILE_BYTES, FILE_EXT])
    table = table.append_column("path", pa.array(paths, pa.string()))
    return table.append_column("bytes", pa.array(sizes, pa.int64()))


def _write_tars(
    fs, root: str, table: pa.Table, good: np.ndarray, names: dict[int, str], output: dict[str, Any]
) -> pa.Table:
    """The good rows' artefacts as WebDataset samples (the image and the row as JSON), in tars
    per shard named after its Parquet part; the rows carry `path` (their tar), TAR_KEY, `bytes`."""
    blobs, exts = table[FILE_BYTES].to_pylist(), table[FILE_EXT].to_pylist()
    sizes = [len(blob) if ok and blob is not None else None for blob, ok in zip(blobs, good, strict=True)]
    described = table.drop_columns([FILE_BYTES, FILE_EXT]).append_column("bytes", pa.array(sizes, pa.int64()))
    columns = sample_json_columns(
        described.schema, [name for name in _row_names(described, output) if name != "path"]
    )
    metas = described.select(columns).to_pylist()
    shards = table[SHARD].to_numpy()
    paths: list[str | None] = [None] * table.num_rows
    keys: list[str | None] = [None] * table.num_rows
    max_mb, max_samples = output.get("tar_size_mb"), output.get("tar_samples")
    max_bytes = int(max_mb * 2**20) if max_mb else None
    for shard, name in names.items():
        chosen = [i for i in np.flatnonzero(good & (shards == shard)) if blobs[i] is not None]
        samples = []
        for i in chosen:
            keys[i] = sample_key(metas[i]["id"])
            samples.append(Sample(keys[i], exts[i], blobs[i], row_json(metas[i])))
        if samples:
            prefix = name.removesuffix(".parquet")
            for i, tar in zip(
                chosen, write_tars(fs, root, prefix, samples, max_bytes, max_samples), strict=True
            ):
                paths[i] = tar
    described = described.append_column("path", pa.array(paths, pa.string()))
    return described.append_column(TAR_KEY, pa.array(keys, pa.string()))


def _write_side_files(fs, root: str, table: pa.Table, name: str, rows: np.ndarray) -> pa.Table:
    """Store side file `name` of `rows` under <name>/; the rows carry its path in column `name`."""
    blob_column, ext_column = side_file_columns(name)
    blobs, exts, ids = table[blob_column].to_pylist(), table[ext_column].to_pylist(), table["id"].to_pylist()
    paths: list[str | None] = [None] * table.num_rows
    jobs = []
    for i in np.flatnonzero(rows):
        if blobs[i] is not None:
            paths[i] = file_name(ids[i], exts[i], folder=name)
            jobs.append((join(root, paths[i]), blobs[i]))
    _store(fs, jobs)
    table = table.drop_columns([blob_column, ext_column])
    return table.append_column(name, pa.array(paths, pa.string()))


def _store(fs, files: list[tuple[str, bytes]]) -> None:
    with ThreadPoolExecutor(8) as pool:  # object-store PUTs are latency-bound
        list(pool.map(lambda file: write_bytes(fs, *file), files))


def _batch_sizes(table: pa.Table) -> dict[str, int]:
    """{model stage: rows per call} of this batch; 0 (no row reached the model) is left out."""
    sizes = {
        name.removeprefix(BATCH_SIZE_PREFIX): int(np.max(table[name].to_numpy(), initial=0))
        for name in table.column_names
        if name.startswith(BATCH_SIZE_PREFIX)
    }
    return {stage: size for stage, size in sizes.items() if size}


def token_usage(table: pa.Table, rows: np.ndarray) -> dict[str, int]:
    """Tokens the model read (input_ids, or prompt_tokens) and wrote (completion_tokens) for `rows`."""
    import pyarrow.compute as pc

    chosen = table.filter(pa.array(rows))
    usage = {}
    if "prompt_tokens" in chosen.column_names:
        usage["tokens_in"] = pc.sum(chosen["prompt_tokens"]).as_py() or 0
    elif "input_ids" in chosen.column_names:
        usage["tokens_in"] = pc.sum(pc.list_value_length(chosen["input_ids"])).as_py() or 0
    if "completion_tokens" in chosen.column_names:
        column = chosen["completion_tokens"]
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            column = pc.list_flatten(column)
        usage["tokens_out"] = pc.sum(column).as_py() or 0
    return usage


def _row_names(table: pa.Table, output: dict[str, Any]) -> list[str]:
    """The columns of a data/ row, in order: id, lineage, results, file columns, output.columns."""
    lineage = [name for name in (PARENT_ID, INDEX) if name in table.column_names]
    files = [name for name in ("path", TAR_KEY, "bytes") if name in table.column_names]
    if "path" in output["results"]:  # the job lists its file columns itself
        files = [name for name in files if name == TAR_KEY]
    return list(dict.fromkeys(["id", *lineage, *output["results"], *files, *output.get("columns", [])]))


def _result_columns(table: pa.Table, output: dict[str, Any]) -> pa.Table:
    columns = {}
    for name in _row_names(table, output):
        column = table[name]
        if name == "embedding" and output.get("embedding_dtype", "float32") != "float32":
            column = tensor_to_arrow(arrow_to_tensor(column).astype(output["embedding_dtype"]))
        columns[name] = column
    return pa.table(columns)


def _error_columns(table: pa.Table, output: dict[str, Any]) -> pa.Table:
    return _outcome_columns(table, output, ERROR_STAGE, ERROR)


def _filtered_columns(table: pa.Table, output: dict[str, Any]) -> pa.Table:
    return _outcome_columns(table, output, FILTER_STAGE, FILTERED)


def _outcome_columns(table: pa.Table, output: dict[str, Any], stage: str, reason: str) -> pa.Table:
    columns = {"id": table["id"], "stage": table[stage], "reason": table[reason]}
    lineage = [name for name in (PARENT_ID, INDEX) if name in table.column_names]
    for name in [*lineage, *output.get("error_columns", []), *output.get("columns", [])]:
        columns.setdefault(name, table[name])
    return pa.table(columns)
