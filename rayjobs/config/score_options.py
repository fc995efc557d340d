"""The `score` and `filter` blocks that score_images and generate_images share, checked before Ray."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig

from operators.filter_rows import parse_rules
from rayjobs.config.config_error import ConfigError


def wants_scores(score: DictConfig | None) -> bool:
    """Whether the `score` block asks for anything (generate_images scores only when it does)."""
    return bool(score and (score.get("text") or score.get("text_column") or score.get("labels")))


def scorer_options(score: DictConfig) -> tuple[dict[str, Any], tuple[str, ...]]:
    """(ImageScorer keyword arguments, the columns it makes) from score.*; ConfigError if empty."""
    labels = list(score.labels or [])
    if not all(isinstance(label, str) and label for label in labels):
        raise ConfigError("score.labels", f"must be a list of non-empty strings, got {labels!r}")
    if score.text and score.text_column:
        raise ConfigError("score.text", "set score.text or score.text_column, not both")
    if not wants_scores(score):
        raise ConfigError(
            "score", "nothing to score against: set score.text, score.text_column or score.labels"
        )
    options = {"text": score.text, "row_text": bool(score.text_column), "labels": labels}
    outputs = (("clip_score", "clip_cosine") if score.text or score.text_column else ()) + (
        ("label_probs", "top_label") if labels else ()
    )
    return options, outputs


def check_filters(rules: Sequence[str], columns: Sequence[str]) -> None:
    """ConfigError("filter") for a rule that does not parse or names none of `columns`."""
    try:
        parse_rules(rules, columns)
    except ValueError as error:
        raise ConfigError("filter", str(error)) from None
