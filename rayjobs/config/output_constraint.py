"""Structured outputs of generate_text and caption_images: prompt.json_schema / regex / choices,
compiled before Ray starts so that a schema llguidance cannot take fails with its key and the
reason."""

from __future__ import annotations

import json
from typing import Any

import fsspec
import pyarrow as pa
from omegaconf import DictConfig, OmegaConf

from operators.text.json_columns import schema_columns
from operators.text.output_grammar import EXTRA, constraint_key, grammar_error, is_json
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


def caption_constraint(
    cfg: DictConfig, chat: bool, taken: list[str], stage: str = "model"
) -> tuple[str | None, dict[str, pa.DataType]]:
    """A captioner's constraint (caption_images; edit_images' `describe` stage) and, for a JSON
    schema, the columns its properties become (none may take the name of a column the job
    already writes: `taken`)."""
    constraint = output_constraint(cfg)
    if constraint is None:
        return None, {}
    key = next(f"prompt.{k}" for k in ("json_schema", "regex", "choices") if cfg.prompt.get(k) is not None)
    if not chat:
        raise ConfigError(key, "needs a chat VLM (e.g. model=smolvlm_256m), not an image-to-text model")
    if int(cfg[stage].get("num_beams") or 1) > 1:
        raise ConfigError(f"{stage}.num_beams", "must be 1 with a constrained caption")
    if not is_json(constraint):
        return constraint, {}
    columns = schema_columns(json.loads(constraint)["json_schema"])
    clash = sorted(set(columns) & set(taken))
    if clash:
        raise ConfigError(key, f"property {clash[0]!r} would overwrite the output column of that name")
    return constraint, columns


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
