"""An embedding job's output as the input of another job (build_index, dedup): where its vectors
are, their dimension, a sample of them, and the record of the job that made them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from omegaconf import DictConfig

from operators.arrow_tensors import arrow_to_tensor
from rayjobs.config.check_config import check_columns
from rayjobs.config.config_error import ConfigError
from rayjobs.config.run_spec import InputSpec
from rayjobs.io.read_input import read_input
from rayjobs.io.shards import InputPlan
from rayjobs.io.storage import filesystem, join
from rayjobs.pipeline import run_record

# Jobs whose output is an embedding job's rows, filtered: their record names that job in `source`.
FILTERING_JOBS = ("dedup",)


def locate_embeddings(cfg: DictConfig) -> tuple[str, dict[str, Any]]:
    """(Parquet path to read, the embedding job's run record or {}) for input.path.

    A dedup output stands for the embedding job it filtered: its record's `source` (that job's
    name, model and input) is returned as that job's record."""
    fs, root = filesystem(str(cfg.path), cfg.get("storage_options"))
    if not fs.exists(root):
        raise ConfigError("input.path", f"{cfg.path!r} does not exist")
    if fs.isdir(root) and fs.exists(join(root, "data")):
        record = run_record.read_record(fs, root) or {}
        config = record.get("config") or {}
        if (config.get("job") or {}).get("name") in FILTERING_JOBS and config.get("source"):
            record = {"config": config["source"]}
        return join(str(cfg.path), "data"), record
    return str(cfg.path), {}


def vector_dim(plan: InputPlan, column: str) -> int:
    check_columns(plan.schema, [("input.embedding_column", column)])
    kind = plan.schema.field(column).type
    if not pa.types.is_fixed_size_list(kind) or not pa.types.is_floating(kind.value_type):
        raise ConfigError("input.embedding_column", f"{column!r} is {kind}, not fixed_size_list<float>")
    return kind.list_size


def sample_vectors(plan: InputPlan, reading: InputSpec, column: str, wanted: int) -> np.ndarray:
    """`wanted` vectors from shards spread over the input (none for indexes that need no training)."""
    if not wanted:
        return np.zeros((0, 0), np.float32)
    step = max(1, len(plan.shards) * plan.shards[0].rows // max(wanted, 1))
    chosen = plan.shards[:: max(1, min(step, len(plan.shards)))]
    blocks = []
    taken = 0
    for batch in read_input(plan, chosen, reading, columns=[column]).iter_batches(
        batch_size=None, batch_format="pyarrow"
    ):
        blocks.append(arrow_to_tensor(batch[column]))
        taken += batch.num_rows
        if taken >= wanted:
            break
    sample = np.concatenate(blocks)
    if len(sample) > wanted:
        sample = sample[np.random.default_rng(0).choice(len(sample), wanted, replace=False)]
    return sample


def shard_offsets(plan: InputPlan) -> dict[int, int]:
    """Each shard's first row position in the whole input (position = offset + _row)."""
    starts = np.cumsum([0] + [s.rows for s in plan.shards])[:-1].tolist()
    return dict(zip((s.index for s in plan.shards), starts, strict=True))
