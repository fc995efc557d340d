"""Checks a config before Ray starts: every problem is one ConfigError naming its key."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from operators.model_files import check_model_reference
from operators.torch_device import DTYPE_NAMES
from rayjobs.config.config_error import ConfigError
from rayjobs.config.stage_spec import STAGE_KEYS


def required(cfg: DictConfig, *keys: str) -> None:
    """Keys left at ??? (Hydra's missing value) or null."""
    for key in keys:
        node, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(cfg, node) if node else cfg
        if parent is None or OmegaConf.is_missing(parent, leaf) or parent.get(leaf) in (None, ""):
            raise ConfigError(key, f"is required, e.g. {key}=...")


def operator_config(model: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(`_target_`, constructor kwargs) of a model node: everything that is not a stage key."""
    kwargs = {k: v for k, v in model.items() if k != "_target_" and k not in STAGE_KEYS}
    return str(model.get("_target_")), kwargs


def check_operator(
    model: Mapping[str, Any],
    inputs: tuple[str, ...],
    job: str,
    outputs: tuple[str, ...] = (),
    key: str = "model",
) -> type:
    """Bind the `key` node's keys to its operator's signature without loading anything."""
    target, kwargs = operator_config(model)
    if not model.get("_target_"):
        raise ConfigError(f"{key}._target_", "is required (the operator class, e.g. operators.TextEmbedder)")
    try:
        operator = get_class(target)
    except Exception as error:
        reason = " ".join(str(error).split())  # Hydra's message spans lines; ours is one
        raise ConfigError(f"{key}._target_", f"cannot import {target!r} ({reason})") from None
    parameters = inspect.signature(operator).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for name in kwargs:
        if name not in parameters and not accepts_any:
            raise ConfigError(f"{key}.{name}", f"{target} has no parameter {name!r}")
    try:
        inspect.signature(operator).bind(**kwargs)
    except TypeError as error:
        raise ConfigError(key, f"{target}: {error}") from None
    _check_shared_options(kwargs, key)
    made = tuple(getattr(operator, "outputs", ()))
    if tuple(getattr(operator, "inputs", ())) != inputs or not set(outputs) <= set(made):
        raise ConfigError(
            key,
            f"{target} maps {getattr(operator, 'inputs', '?')} to {made}; {job} feeds {inputs} and needs "
            f"{outputs}: choose a model preset made for this job",
        )
    if "path" in kwargs:
        problem = check_model_reference(str(kwargs["path"]))
        if problem:
            raise ConfigError(f"{key}.path", problem)
    return operator


def check_columns(schema: pa.Schema | None, columns: Iterable[tuple[str, str | None]]) -> None:
    """Each configured column, as (config key, column name) pairs, exists in the input's schema."""
    if schema is None:
        return
    for key, name in columns:
        if name and name not in schema.names:
            raise ConfigError(key, f"no column {name!r} in the input (columns: {', '.join(schema.names)})")


def _check_shared_options(kwargs: Mapping[str, Any], key: str) -> None:
    """Options many operators share, checked here so a typo fails before Ray, not in an actor."""
    dtype = kwargs.get("dtype", "auto")
    if dtype != "auto" and dtype not in DTYPE_NAMES:
        raise ConfigError(f"{key}.dtype", f"must be auto or one of {', '.join(DTYPE_NAMES)}, got {dtype!r}")
    option = kwargs.get("compile", False)
    if not isinstance(option, bool | str) or option in ("", "true", "false"):
        raise ConfigError(
            f"{key}.compile", f"must be true, false or a torch.compile backend name, got {option!r}"
        )


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def loopback_http(cfg: DictConfig) -> tuple[str, int]:
    """(host, port) of a service's `http` block: loopback only (a proxy in front exposes it)."""
    host, port = str(cfg.http.host), cfg.http.port
    if host not in LOOPBACK:
        raise ConfigError("http.host", f"serves on loopback only ({', '.join(LOOPBACK)}), got {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError("http.port", f"must be a port number, got {port!r}")
    return host, port
