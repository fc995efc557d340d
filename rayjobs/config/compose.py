"""Compose a job's config with Hydra, from the CLI or from a notebook."""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rayjobs.config.config_error import ConfigError

CONF_DIR = Path(os.environ.get("RAYJOBS_CONF_DIR", Path(__file__).resolve().parents[2] / "conf"))
MODEL_JOBS = (
    "embed_texts",
    "embed_images",
    "caption_images",
    "generate_text",
    "generate_images",
    "score_images",
    "embed_videos",
    "caption_videos",
)  # input -> model -> output
CPU_JOBS = ("transform_images",)  # input -> CPU stages -> output, no model
EDIT_JOBS = ("edit_images",)  # input -> model stages named by `edits` -> output
JOBS = (*MODEL_JOBS, *CPU_JOBS, *EDIT_JOBS, "build_index", "dedup")  # what rayjobs.run runs
CONFIGS = (*JOBS, "search", "serve_index", "serve_batches")  # every root config compose() knows


def package_model_path(package: str) -> str:
    """Folder of a model shipped inside a Python package that offers get_model_path()."""
    try:
        module = importlib.import_module(package)
    except ImportError as error:
        raise ConfigError("model.path", f"package {package!r} is not installed ({error})") from None
    return str(module.get_model_path())


def register_resolvers() -> None:
    """Make ${package_model:pkg} usable in configs."""
    OmegaConf.register_new_resolver("package_model", package_model_path, replace=True)


def compose(job: str, overrides: Sequence[str] = (), **settings: Any) -> DictConfig:
    """The resolved config of `job` with Hydra-style overrides, e.g. ["model=minilm_offline"], and
    keyword settings, e.g. **{"input.path": "texts/", "model": "minilm_offline"} (after them)."""
    if job not in CONFIGS:
        raise ConfigError("job", f"unknown job {job!r}; choose one of {', '.join(CONFIGS)}")
    if isinstance(overrides, str):
        raise ConfigError("overrides", "must be a list of key=value strings, not one string")
    register_resolvers()
    overrides = [*overrides, *(f"{key}={override_value(value)}" for key, value in settings.items())]
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name=job):
            cfg = hydra_compose(config_name=job, overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(*_key_and_problem(error)) from None
    return cfg


def override_value(value: Any) -> str:
    """A Python value as Hydra's override grammar writes it (strings quoted: any path is safe)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(override_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{override_value(item)}" for key, item in value.items()) + "}"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def _key_and_problem(error: Exception) -> tuple[str, str]:
    """Hydra's multi-line errors boiled down to the key and the first useful line."""
    key = getattr(error, "full_key", None) or "overrides"
    cause = error.__cause__ or error.__context__
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if cause is not None and getattr(cause, "full_key", None):
        key = cause.full_key
        lines = [line.strip() for line in str(cause).splitlines() if line.strip()][:1] + lines
    problem = lines[0] if lines else type(error).__name__
    return key, problem
