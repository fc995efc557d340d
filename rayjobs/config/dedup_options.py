"""dedup's settings (dedup.*, index.kind, the input's columns), checked before Ray starts."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from omegaconf import DictConfig, OmegaConf

from rayjobs.config.check_config import check_columns, required
from rayjobs.config.config_error import ConfigError
from rayjobs.config.run_spec import InputSpec
from rayjobs.index.duplicate_search import EXACT_MODES
from rayjobs.index.embedding_input import locate_embeddings, vector_dim
from rayjobs.index.near_duplicates import KeepRule
from rayjobs.io.read_input import plan_input
from rayjobs.io.storage import filesystem
from rayjobs.pipeline import run_record

INDEX_KINDS = ("auto", "flat", "ivfsq8")  # what faiss range-searches: exact, or IVF over 8-bit codes


@dataclass(frozen=True)
class DedupOptions:
    threshold: float
    exact: str  # text | file | embedding | none: what an exact duplicate has in common
    keys: dict[str, Any]  # row_keys' keyword arguments
    key_columns: list[str]  # what the exact-key pass reads
    columns: list[str]  # every input column but id: data/ keeps them all
    embedding_column: str


def dedup_options(cfg: DictConfig) -> tuple[DictConfig, DedupOptions]:
    """Every check that needs no Ray, each a ConfigError naming its key; the config to run (input.path
    is the embedding output's data/, `source` its job's name, model and input: what build_index and
    search read from the record to embed queries)."""
    required(cfg, "input.path", "output.path")
    threshold = cfg.dedup.threshold
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold <= 1:
        raise ConfigError("dedup.threshold", f"must be a cosine in (0, 1], got {threshold!r}")
    keep = KeepRule.parse(cfg.dedup.keep)
    if cfg.dedup.exact not in EXACT_MODES:
        raise ConfigError("dedup.exact", f"must be one of {', '.join(EXACT_MODES)}, got {cfg.dedup.exact!r}")
    if cfg.index.kind not in INDEX_KINDS:
        raise ConfigError(
            "index.kind", f"dedup range-searches {', '.join(INDEX_KINDS)}, got {cfg.index.kind!r}"
        )
    source, record = locate_embeddings(cfg.input)
    fs, root = filesystem(str(cfg.input.path), cfg.input.get("storage_options"))
    if record and not run_record.has_success(fs, root):
        raise ConfigError("input.path", f"{cfg.input.path!r} has no _SUCCESS: its job has not finished")
    reading = {**OmegaConf.to_container(cfg.input, resolve=True), "path": source, "format": "parquet"}
    plan = plan_input(InputSpec.parse(reading))
    vectors = str(cfg.input.embedding_column)
    vector_dim(plan, vectors)  # a fixed_size_list<float> column, or this is no embedding output
    upstream = record.get("config") or {}
    text = cfg.input.get("text_column") or None
    has_text = bool(text) and text in plan.schema.names
    exact = cfg.dedup.exact
    images = (upstream.get("input") or {}).get("format") == "images"
    if exact == "auto":
        exact = "text" if has_text else "file" if images else "embedding"
    if exact == "text" or keep.kind == "longest_text":
        check_columns(plan.schema, [("input.text_column", text)])
        if not text:
            raise ConfigError(
                "input.text_column", f"is required by dedup.exact={exact} / dedup.keep={keep.kind}"
            )
    if exact == "file" and not images:
        raise ConfigError(
            "dedup.exact",
            "file hashes the images of an embed_images run over a folder; this input is not one",
        )
    if keep.kind == "highest":
        check_columns(plan.schema, [("dedup.keep", keep.column)])
        kind = plan.schema.field(keep.column).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            raise ConfigError("dedup.keep", f"highest:{keep.column} needs a numeric column, not {kind}")
    keys = {
        "exact": exact,
        "keep": {"kind": keep.kind, "column": keep.column, "text_column": text},
        "text_column": text,
        "embedding_column": vectors,
        "file_root": (upstream.get("input") or {}).get("path") if exact == "file" else None,
        "storage_options": (upstream.get("input") or {}).get("storage_options") or {},
    }
    wanted = {"text": [text], "file": [], "embedding": [vectors], "none": []}[exact]
    wanted += {"first": [], "longest_text": [text], "highest": [keep.column]}[keep.kind]
    columns = [name for name in plan.schema.names if name != "id"]
    cfg = copy.deepcopy(cfg)
    OmegaConf.update(cfg, "input.path", source)
    kept = {key: upstream[key] for key in ("job", "model", "input") if key in upstream}
    OmegaConf.update(cfg, "source", kept or None, merge=False)
    return cfg, DedupOptions(float(threshold), exact, keys, list(dict.fromkeys(wanted)), columns, vectors)
