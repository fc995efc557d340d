"""Build a vector index from an embedding job's output, for `rayjobs.search` and `serve_index`.

    python -m rayjobs.build_index input.path=out/photos index.path=out/photos-index

plan shards of the embeddings (Parquet footers, on the driver) -> choose the index from the row
count and dimension (flat below index.exact_below, else IVF-PQ; HNSW on request) -> train on a
sample (IVF-PQ) -> fill: one Ray task per shard adds its vectors to a copy of the trained index
and writes it with the shard's items (id + metadata) -> merge the pieces one at a time -> write
index.faiss, index.json (parameters, the embedding model's identity, where the items' files are,
timings) and _SUCCESS.

Video frames (embed_videos) are indexed like images: one item per frame, with video, t_start,
t_end and frame among the metadata; index.json's source.video_root is the folder their `video`
paths are relative to (serve_index makes frame thumbnails and serves the videos from it).
"""

from __future__ import annotations

import logging
import posixpath
import time
from typing import Any

import pyarrow as pa
from omegaconf import DictConfig, OmegaConf

from rayjobs.config.check_config import check_columns, required
from rayjobs.config.config_error import ConfigError
from rayjobs.config.optional_deps import require
from rayjobs.config.run_spec import InputSpec
from rayjobs.index.embedding_input import locate_embeddings, sample_vectors, shard_offsets, vector_dim
from rayjobs.index.index_files import (
    ITEMS_DIR,
    PARTS_DIR,
    RECORD,
    fill_shard,
    fill_spec,
    merge_parts,
    save_index,
    train,
)
from rayjobs.index.index_spec import choose_index, train_rows
from rayjobs.io.read_input import plan_input, read_input
from rayjobs.io.shards import InputPlan
from rayjobs.io.storage import filesystem, join, write_bytes
from rayjobs.pipeline import run_record
from rayjobs.pipeline.cli import run_cli
from rayjobs.pipeline.job_run import RunResult
from rayjobs.pipeline.run_stats import versions
from rayjobs.pipeline.runtime import start_ray

log = logging.getLogger("rayjobs")


def run(cfg: DictConfig) -> RunResult:
    started = time.monotonic()
    require("faiss", "index", key="index")  # the fill tasks import it: fail here, not inside Ray
    required(cfg, "input.path")
    source, record = locate_embeddings(cfg.input)
    reading = InputSpec.parse(
        {**OmegaConf.to_container(cfg.input, resolve=True), "path": source, "format": "parquet"}
    )
    plan = plan_input(reading)
    vectors, dim = cfg.input.embedding_column, vector_dim(plan, cfg.input.embedding_column)
    columns = metadata_columns(plan, cfg.input)
    check_columns(
        plan.schema, [("input.id_column", cfg.input.id_column), *(("input.columns", c) for c in columns)]
    )
    spec = choose_index(cfg.index, plan.rows, dim)
    index_path = cfg.index.path or join(str(cfg.input.path), "index")
    fs, root = filesystem(index_path, cfg.input.get("storage_options"))
    claim_index_folder(fs, root, bool(cfg.index.overwrite))
    start_ray(cfg.runtime)
    log.info("build_index: %d vectors of %d -> %s %s", plan.rows, dim, spec.kind, spec.as_dict())

    trained_at = time.monotonic()
    sample = sample_vectors(plan, reading, vectors, train_rows(spec, cfg.index))
    trained = train(fill_spec(spec), sample)
    filled_at = time.monotonic()
    offsets = shard_offsets(plan)  # each shard's first position
    manifest = read_input(plan, plan.shards, reading, columns=[vectors, *columns]).map_batches(
        fill_shard,
        batch_size=None,  # a whole shard per task: one piece of index per shard
        batch_format="pyarrow",
        num_cpus=float(cfg.fill.num_cpus),
        fn_kwargs={
            "trained": trained,
            "spec": fill_spec(spec).as_dict(),
            "offsets": offsets,
            "embedding_column": vectors,
            "columns": columns,
            "path": index_path,
            "storage_options": dict(cfg.input.get("storage_options") or {}),
            "threads": max(1, int(cfg.fill.num_cpus)),
        },
    )
    filled = manifest.to_pandas()
    if int(filled["rows"].sum()) != plan.rows or sorted(filled["shard"]) != [s.index for s in plan.shards]:
        raise RuntimeError(f"index fill lost shards: {len(filled)} of {len(plan.shards)} came back")
    merged_at = time.monotonic()
    index = merge_parts(fs, root, [s.index for s in plan.shards], spec)
    save_index(fs, root, index)
    fs.rm(join(root, PARTS_DIR), recursive=True)
    seconds = time.monotonic() - started
    stats = {
        "rows": plan.rows,
        "shards": len(plan.shards),
        "wall_s": round(seconds, 3),
        "rows_per_s": round(plan.rows / seconds, 1),
        "train_s": round(filled_at - trained_at, 3),
        "fill_s": round(merged_at - filled_at, 3),
        "merge_s": round(time.monotonic() - merged_at, 3),
        "train_rows": int(len(sample)),
    }
    info = {
        "spec": spec.as_dict(),
        "rows": plan.rows,
        "embedding_column": vectors,
        "columns": columns,
        "model": embedding_model(record),
        "source": source_info(cfg, source, record),
        "stats": stats,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "versions": versions(),
    }
    write_json(fs, root, info)
    run_record.write_success(fs, root)
    return RunResult(
        "build_index", index_path, plan.rows, plan.rows, 0, seconds, plan.rows / seconds, stats=stats
    )


def metadata_columns(plan: InputPlan, cfg: DictConfig) -> list[str]:
    """Columns kept for search results: as configured, else all but the vectors, ids and blobs."""
    if cfg.get("columns") is not None:
        return list(cfg.columns)
    skip = {cfg.embedding_column, cfg.id_column, "id"}
    return [
        f.name
        for f in plan.schema
        if f.name not in skip
        and not (pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type))
        and not pa.types.is_fixed_size_list(f.type)
    ]


def claim_index_folder(fs, root: str, overwrite: bool) -> None:
    if fs.exists(join(root, RECORD)) or fs.exists(join(root, ITEMS_DIR)):
        if not overwrite:
            raise ConfigError(
                "index.path", f"{root!r} already holds an index; index.overwrite=true replaces it"
            )
        fs.rm(root, recursive=True)


def embedding_model(record: dict[str, Any]) -> dict[str, Any]:
    """The model that made the vectors (queries must use it): from the embedding job's record."""
    config = record.get("config") or {}
    model = config.get("model") or {}
    keys = ("_target_", "path", "revision", "pooling", "normalize", "dtype", "trust_remote_code")
    return {"job": (config.get("job") or {}).get("name"), **{k: model.get(k) for k in keys if k in model}}


def source_info(cfg: DictConfig, source: str, record: dict[str, Any]) -> dict[str, Any]:
    """Where the items came from; for a folder of images, its root, and for videos, the folder
    their paths are relative to (thumbnails and videos are served from them)."""
    config = record.get("config") or {}
    job_input = config.get("input") or {}
    images = job_input.get("format") == "images"
    return {
        "embeddings": source,
        "input_path": job_input.get("path"),
        "image_root": job_input.get("path") if images else None,
        "video_root": video_root(job_input),
        "storage_options": job_input.get("storage_options") or {},
    }


def video_root(job_input: dict[str, Any]) -> str | None:
    """What embed_videos' `video` paths are relative to: input.path when it is a folder, else the
    folder of the one video or of the list file it names (None for other jobs)."""
    path = job_input.get("path")
    if job_input.get("format") != "videos" or not path:
        return None
    try:
        fs, root = filesystem(str(path), job_input.get("storage_options"))
        folder = fs.isdir(root)
    except Exception:  # unreachable from here: a folder is by far the usual input
        folder = True
    return str(path) if folder else posixpath.dirname(str(path).rstrip("/"))


def write_json(fs, root: str, info: dict[str, Any]) -> None:
    import json

    write_bytes(fs, join(root, RECORD), json.dumps(info, indent=2, default=str).encode())


def main() -> None:
    run_cli("build_index")


if __name__ == "__main__":
    main()
