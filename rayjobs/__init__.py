"""rayjobs: offline batch inference on Ray.

From a notebook:
    cfg = rayjobs.compose("embed_texts", overrides=["input.path=texts.parquet", "output.path=out"])
    result = rayjobs.run(cfg)      # RunResult: rows, output_path, seconds, rows_per_second
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from rayjobs.config_error import ConfigError
from rayjobs.configs import JOBS, compose

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from rayjobs.job_run import RunResult

__all__ = ["JOBS", "ConfigError", "compose", "run"]


def run(cfg: DictConfig) -> RunResult:
    """Run the job a composed config describes; raises ConfigError before Ray starts on bad ones."""
    name = cfg.job.name
    if name not in JOBS:
        raise ConfigError("job.name", f"unknown job {name!r}")
    return importlib.import_module(f"rayjobs.{name}").run(cfg)
