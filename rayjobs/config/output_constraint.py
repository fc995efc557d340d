"""generate_text's structured outputs: prompt.json_schema / regex / choices, compiled before Ray
starts so that a schema llguidance cannot take fails with its key and the reason."""

from __future__ import annotations

import json
from typing import Any

import fsspec
from omegaconf import DictConfig, OmegaConf

from operators.text.output_grammar import EXTRA, constraint_key, grammar_error
from rayjobs.config.config_error import ConfigError
from rayjobs.config.optional_deps import require


def output_constraint(cfg: DictConfig) -> str | None:
    """The constraint key every prompt's completion must match (output_grammar), or None.

    prompt.json_schema is a schema inline, a JSON text, or a path / URL of a .json file."""
    prompt = cfg.prompt
    given = {
        kind: prompt.get(kind) for kind in ("json_schema", "regex", "choices") if prompt.get(kind) is not None
    }
    if not given:
        return None
    if len(given) > 1:
        raise ConfigError(f"prompt.{sorted(given)[1]}", f"give one of prompt.{' / prompt.'.join(given)}")
    ((kind, value),) = given.items()
    key = f"prompt.{kind}"
    require("llguidance", EXTRA, key)
    value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    if kind == "json_schema" and isinstance(value, str):
        value = _schema_text(key, value)
    constraint = constraint_key(kind, value)
    problem = grammar_error(constraint)
    if problem:
        raise ConfigError(key, problem)
    return constraint


def _schema_text(key: str, text: str) -> Any:
    """A JSON schema given as text, or read from the file it names."""
    if not text.lstrip().startswith("{"):
        try:
            with fsspec.open(text, "r", encoding="utf-8") as file:
                text = file.read()
        except (OSError, ValueError) as error:
            raise ConfigError(key, f"cannot read the schema file {text!r}: {error}") from None
    try:
        return json.loads(text)
    except ValueError as error:
        raise ConfigError(key, f"not valid JSON: {error}") from None
