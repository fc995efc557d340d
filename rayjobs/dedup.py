"""Remove exact and near-duplicate rows from an embedding job's output.

    python -m rayjobs.dedup input.path=out/texts output.path=out/texts-dedup
    python -m rayjobs.dedup input.path=out/photos output.path=out/photos-dedup dedup.threshold=0.9

plan shards of the embeddings (Parquet footers, on the driver) -> exact keys: one Ray task per
shard hashes each row's text (image folders: the file's bytes; else the vector's bytes) and reads
its keep score; equal hashes are an exact group, represented by the row dedup.keep prefers ->
index the representatives' unit vectors (flat below index.exact_below rows, else IVF-SQ8: the
choice build_index makes), one fill task per shard, merged -> near duplicates: one Ray task per
shard range-searches its representatives against the index (cosine >= dedup.threshold) and sends
back the edges of their components -> connected components on the driver, each keeping its best
row by dedup.keep -> the kept rows' ids and vectors -> write: data/ (kept rows, every column,
the embedding included: build_index reads it as is), filtered/ (id, duplicate_of, similarity,
rule, reason), then the run record and _SUCCESS.

Every pass reads the whole input (a resumed run redoes the search and writes only the shards not
done); the driver holds a few integers per row, the index, the edges and the kept rows' vectors.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pyarrow as pa
from omegaconf import DictConfig, OmegaConf

from rayjobs.config.dedup_options import dedup_options
from rayjobs.config.optional_deps import require
from rayjobs.index.duplicate_search import (
    RESULT_COLUMNS,
    mark_duplicates,
    near_pairs,
    row_keys,
    rows_at,
    unit_vectors,
    without_copies,
)
from rayjobs.index.embedding_input import sample_vectors, shard_offsets, vector_dim
from rayjobs.index.index_files import fill_shard, merge_parts, train
from rayjobs.index.index_spec import IndexSpec, choose_index, train_rows
from rayjobs.index.near_duplicates import decide, exact_representatives, priorities
from rayjobs.io.read_input import read_input
from rayjobs.io.storage import filesystem, join
from rayjobs.pipeline.cli import run_cli
from rayjobs.pipeline.job_run import JobRun, RunResult, start_job
from rayjobs.pipeline.write_results import write_results

log = logging.getLogger("rayjobs")
EDGES = pa.schema([("left", pa.int64()), ("right", pa.int64())])  # what near_pairs returns
SCRATCH = "_index"  # the index's pieces while the job runs, in the output folder (removed after)


def run(cfg: DictConfig) -> RunResult:
    require("faiss", "index", key="index")  # the search tasks import it: fail here, not inside Ray
    cfg, options = dedup_options(cfg)  # checked before Ray starts; input.path now names data/
    job = start_job(cfg, models={}, tasks=("search",))
    if job.result:  # this exact job already finished in output.path
        return job.result
    import ray

    started = time.monotonic()
    offsets, vectors = shard_offsets(job.plan), options.embedding_column
    every_row = read_input(job.plan, job.plan.shards, job.spec.input, options.key_columns)
    keyed = every_row.map_batches(
        row_keys, fn_kwargs={"offsets": offsets, **options.keys}, **job.task_args("search")
    )
    keys = by_position(collect(keyed), job.plan.rows)
    rank = priorities(keys["score"])
    representative = exact_representatives(keys["key"], keys["has_key"], rank)
    is_copy = representative != np.arange(job.plan.rows)
    log.info("dedup: %d rows, %d exact copies by %s", job.plan.rows, int(is_copy.sum()), options.exact)

    vectors_read = read_input(job.plan, job.plan.shards, job.spec.input, [vectors])
    kwargs = {"offsets": offsets, "copies": ray.put(is_copy), "embedding_column": vectors}
    representatives = vectors_read.map_batches(without_copies, fn_kwargs=kwargs, **job.task_args("search"))
    index, spec = build_index(cfg, job, representatives, int((~is_copy).sum()), vectors)
    search = {"index": index, "nprobe": spec.nprobe, "offsets": offsets, "embedding_column": vectors}
    search.update(threshold=options.threshold, threads=max(1, int(job.task_args("search")["num_cpus"])))
    found_pairs = representatives.map_batches(near_pairs, fn_kwargs=search, **job.task_args("search"))
    edges = collect(found_pairs, EDGES)
    left, right = edges["left"].to_numpy(), edges["right"].to_numpy()
    found = decide(representative, left, right, rank, keys["key"], keys["has_key"])
    counts = found.counts()
    log.info(
        "dedup: %d exact, %d near duplicates (%s, %.1f s)",
        counts["exact_duplicates"],
        counts["near_duplicates"],
        spec.kind,
        time.monotonic() - started,
    )

    kept = np.unique(found.kept_of[found.dropped])  # the rows their groups keep
    ids, unit = kept_rows(job, kept, vectors)
    marks = {
        "kept_of": found.kept_of,
        "exact": found.exact,
        "kept_positions": kept,
        "kept_ids": ids,
        "kept_vectors": unit,
    }
    rules = {"exact_rule": f"exact_{options.exact}", "near_rule": f"near_duplicate>={options.threshold:g}"}
    kwargs = {"offsets": offsets, "decisions": ray.put(marks), "embedding_column": vectors, **rules}
    rows = job.read(columns=options.columns)
    marked = rows.map_batches(mark_duplicates, fn_kwargs=kwargs, **job.task_args("search"))
    manifest = marked.map_batches(write_results, **job.write_args(options.columns, RESULT_COLUMNS))
    result = job.finish(manifest, stats={"dedup": {**counts, "index": spec.as_dict(), "edges": len(edges)}})
    log.info(
        "dedup: %d rows in, %d exact duplicates, %d near duplicates, %d kept, %.1f rows/s",
        counts["rows_in"],
        counts["exact_duplicates"],
        counts["near_duplicates"],
        counts["kept"],
        counts["rows_in"] / max(result.seconds, 1e-9),
    )
    return result


def collect(dataset, empty: pa.Schema | None = None) -> pa.Table:
    """A (small) result dataset on the driver, as one table (`empty`'s columns when it has no rows:
    Ray drops empty blocks)."""
    tables = [t for t in dataset.iter_batches(batch_size=None, batch_format="pyarrow") if t.num_rows]
    if not tables:
        return (empty or pa.schema([])).empty_table()
    return pa.concat_tables(tables)


def by_position(table: pa.Table, rows: int) -> dict[str, np.ndarray]:
    """row_keys' output as arrays indexed by position; every row exactly once, or the run stops."""
    positions = table["position"].to_numpy()
    if len(positions) != rows or not np.array_equal(np.sort(positions), np.arange(rows)):
        raise RuntimeError(f"dedup: the key pass returned {len(positions)} rows of {rows}")
    order = np.argsort(positions)
    hi, lo = table["key_hi"].to_numpy()[order], table["key_lo"].to_numpy()[order]
    return {
        "key": np.stack([hi, lo], axis=1),
        "has_key": table["has_key"].to_numpy(zero_copy_only=False)[order],
        "score": table["score"].to_numpy()[order],
    }


def build_index(
    cfg: DictConfig, job: JobRun, representatives, rows: int, vectors: str
) -> tuple[Any, IndexSpec]:
    """The index of the representatives' vectors, put in Ray's object store (every search task
    reads it from there), and its spec: fill tasks per shard, pieces merged on the driver."""
    import faiss
    import ray

    dim = vector_dim(job.plan, vectors)
    spec = choose_index({**OmegaConf.to_container(cfg.index, resolve=True), "normalize": True}, rows, dim)
    sample = sample_vectors(job.plan, job.spec.input, vectors, train_rows(spec, cfg.index))
    scratch = join(str(cfg.output.path), SCRATCH)
    kwargs = {
        "trained": train(spec, sample),
        "spec": spec.as_dict(),
        "offsets": shard_offsets(job.plan),
        "embedding_column": vectors,
        "columns": [],
        "path": scratch,
        "storage_options": dict(cfg.output.get("storage_options") or {}),
        "threads": max(1, int(job.task_args("search")["num_cpus"])),
    }
    filled = collect(representatives.map_batches(fill_shard, fn_kwargs=kwargs, **job.task_args("search")))
    shards = [shard.index for shard in job.plan.shards]
    if sorted(filled["shard"].to_pylist()) != shards:
        raise RuntimeError(f"dedup: index fill returned {len(filled)} pieces for {len(shards)} shards")
    fs, root = filesystem(scratch, cfg.output.get("storage_options"))
    index = merge_parts(fs, root, shards, spec)
    fs.rm(root, recursive=True)
    log.info("dedup: %s index of %d vectors of %d", spec.kind, index.ntotal, dim)
    return ray.put(faiss.serialize_index(index)), spec


def kept_rows(job: JobRun, positions: np.ndarray, vectors: str) -> tuple[list[Any], np.ndarray]:
    """(ids, unit vectors) of the rows at `positions` (sorted), in that order."""
    import ray

    kwargs = {"offsets": shard_offsets(job.plan), "wanted": ray.put(positions), "embedding_column": vectors}
    read = read_input(job.plan, job.plan.shards, job.spec.input, [vectors])
    found = collect(read.map_batches(rows_at, fn_kwargs=kwargs, **job.task_args("search")))
    if len(found) != len(positions):
        raise RuntimeError(f"dedup: found {len(found)} of the {len(positions)} kept rows")
    if not len(positions):
        return [], np.zeros((0, vector_dim(job.plan, vectors)), np.float32)
    order = np.argsort(found["position"].to_numpy())  # in numpy: take() garbles sliced nested lists
    ids = found["id"].to_pylist()
    return [ids[i] for i in order], unit_vectors(found["embedding"])[order]


def main() -> None:
    run_cli("dedup")


if __name__ == "__main__":
    main()
