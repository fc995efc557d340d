"""The output folder's state across runs: who owns it, which shards are done, what to delete.

A folder is ours when it holds a `_run.json`. A re-run with the same fingerprint resumes it; any
other run is refused unless `job.overwrite=true`. Files of unfinished shards, and files another
(killed) run wrote for a shard, are deleted so that every row is written exactly once.
"""

from __future__ import annotations

import posixpath
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow.parquet as pq

from rayjobs.config.config_error import ConfigError
from rayjobs.config.run_spec import RunSpec
from rayjobs.io.shards import InputPlan
from rayjobs.io.storage import join, list_folder
from rayjobs.io.webdataset_output import TARS_DIR
from rayjobs.pipeline import run_record
from rayjobs.pipeline.write_results import OUTCOME_DIRS, parse_part_name, shard_of


def claim_output(
    spec: RunSpec, fs, root: str, fingerprint: str, parts: dict[str, Any], plan: InputPlan
) -> set[int]:
    """Finished shards of an earlier run of this same job; refuses to mix in other results.

    `parts` is what the fingerprint hashes; a mismatch names the first key that changed."""
    if not fs.exists(root):
        return set()
    record = run_record.read_record(fs, root)
    if spec.job.overwrite:
        if record is None and fs.ls(root):
            raise ConfigError(
                "output.path", f"{spec.output.path!r} is not a rayjobs output; refusing to delete it"
            )
        fs.rm(root, recursive=True)
        return set()
    if record is None:
        if fs.isdir(root) and not fs.ls(root):
            return set()
        raise ConfigError("output.path", f"{spec.output.path!r} exists and is not a rayjobs output")
    if record.get("fingerprint") != fingerprint:
        changed = run_record.changed_keys(record.get("fingerprinted"), parts)
        if changed:
            key, before, after = changed[0]
            more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
            raise ConfigError(
                key,
                f"is {after!r} but {spec.output.path!r} was written with {before!r}{more}: results would "
                "mix; use another output.path, or job.overwrite=true to redo it",
            )
        raise ConfigError(
            "output.path",
            f"{spec.output.path!r} holds results of a different run ({record.get('job')}, fingerprint "
            f"{record.get('fingerprint')} != {fingerprint}): use another output.path or job.overwrite=true",
        )
    return run_record.read_progress(fs, root) & {shard.index for shard in plan.shards}


def remove_shard_files(fs, root: str, shards: set[int], keep_run: str | None = None) -> None:
    """Delete the files of `shards` (all of them, or those not written by run `keep_run`).

    Unfinished shards are redone whole, and a writer of a killed run that outlives it leaves
    files that this removes when the shard completes: no row appears twice.
    """
    if not shards:
        return
    stale = []
    for folder in (*OUTCOME_DIRS, TARS_DIR):  # tars are named after their shard's Parquet parts
        if len(shards) == 1:  # one shard: a prefix listing, cheap on object stores
            (shard,) = shards
            names = fs.glob(join(root, folder, f"part-{shard:06d}-*"))
        else:
            names = list_folder(fs, join(root, folder)) if fs.exists(join(root, folder)) else []
        for name in names:
            parsed = parse_part_name(posixpath.basename(name))
            if parsed and parsed[0] in shards and parsed[1] != keep_run:
                stale.append(name)
    if stale:
        fs.rm(stale)


def outcome_rows(fs, root: str, shards: set[int]) -> dict[str, int]:
    """Rows already recorded for `shards` in each outcome folder (Parquet footers only)."""
    totals = dict.fromkeys(OUTCOME_DIRS, 0)
    for folder in OUTCOME_DIRS:
        path = join(root, folder)
        if not shards or not fs.exists(path):
            continue
        mine = [file for file in list_folder(fs, path) if shard_of(posixpath.basename(file)) in shards]
        with ThreadPoolExecutor(16) as pool:  # footers of remote files: latency-bound
            totals[folder] = sum(pool.map(lambda file: _num_rows(fs, file), mine))
    return totals


def _num_rows(fs, file: str) -> int:
    with fs.open(file, "rb") as handle:
        return pq.ParquetFile(handle).metadata.num_rows
