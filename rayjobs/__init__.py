"""rayjobs: offline batch inference on Ray.

From a notebook:
    cfg = rayjobs.compose("embed_texts", **{"input.path": "texts.parquet", "output.path": "out"})
    result = rayjobs.run(cfg)      # RunResult: rows, output_path, seconds, rows_per_second
    result.to_pandas(limit=5); result.errors(); result.data()   # DataFrames; a Ray Dataset
    rayjobs.search("out/index", "a red shoe", k=10)   # pandas DataFrame, after build_index
    job = rayjobs.submit(cfg, address="http://head:8265")   # .status() .logs() .wait() .cancel()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rayjobs.config.compose import JOBS, compose
from rayjobs.config.config_error import ConfigError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from rayjobs.pipeline.job_run import RunResult
    from rayjobs.submit.job_client import JobHandle

__all__ = ["JOBS", "ConfigError", "compose", "run", "search", "submit"]


def submit(
    cfg: DictConfig, address: str | None = None, working_dir: str = ".", check: bool = True
) -> JobHandle:
    """Send a composed config to a Ray cluster as a job (checked here first); a JobHandle."""
    from rayjobs.submit.job_client import submit as submit_job

    return submit_job(str(cfg.job.name), cfg=cfg, address=address, working_dir=working_dir, check=check)


def search(index_path: str, query: str | None = None, k: int = 10, **options: Any) -> Any:
    """Top k items of an index for a text query (or image=path): a pandas DataFrame."""
    from rayjobs.search import search as search_index

    return search_index(index_path, query, k, **options)


def run(cfg: DictConfig) -> RunResult:
    """Run the job a composed config describes; raises ConfigError before Ray starts on bad ones."""
    name = cfg.job.name
    if name not in JOBS:
        raise ConfigError("job.name", f"unknown job {name!r}")
    return importlib.import_module(f"rayjobs.{name}").run(cfg)
