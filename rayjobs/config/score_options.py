"""The `score` and `filter` blocks that score_images and generate_images share, checked before Ray."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fsspec
from omegaconf import DictConfig

from operators.filter_rows import parse_rules
from operators.image.image_scorer import ImageScorer, label_names
from rayjobs.config.config_error import ConfigError

ASKS = ("text", "text_column", "labels", "aesthetic", "classifier")


def wants_scores(score: DictConfig | None) -> bool:
    """Whether the `score` block asks for anything (generate_images scores only when it does)."""
    return bool(score and any(score.get(key) for key in ASKS))


def scorer_options(score: DictConfig, taken: Sequence[str] = ()) -> tuple[dict[str, Any], tuple[str, ...]]:
    """(ImageScorer keyword arguments, the columns it makes) from score.*; ConfigError if empty.
    `taken`: the rows' other columns, which a classifier's label columns must not shadow."""
    labels = list(score.labels or [])
    if not all(isinstance(label, str) and label for label in labels):
        raise ConfigError("score.labels", f"must be a list of non-empty strings, got {labels!r}")
    if score.text and score.text_column:
        raise ConfigError("score.text", "set score.text or score.text_column, not both")
    if not wants_scores(score):
        raise ConfigError("score", f"nothing to score: set one of {', '.join('score.' + k for k in ASKS)}")
    aesthetic, classifier = score.get("aesthetic"), score.get("classifier")
    if aesthetic and "://" not in str(aesthetic) and not Path(str(aesthetic)).is_file():
        raise ConfigError("score.aesthetic", f"no such weights file: {aesthetic}")
    classes = classifier_labels(str(classifier), score.get("classifier_revision")) if classifier else []
    clash = sorted(set(classes) & {*taken, *ImageScorer.outputs})
    if clash:
        raise ConfigError("score.classifier", f"its labels {clash} would overwrite columns of the same names")
    options = {
        "text": score.text,
        "row_text": bool(score.text_column),
        "labels": labels,
        "aesthetic": aesthetic,
        "classifier": classifier,
        "classifier_revision": score.get("classifier_revision"),
    }
    outputs = (
        *(("clip_score", "clip_cosine") if score.text or score.text_column else ()),
        *(("label_probs", "top_label") if labels else ()),
        *(("aesthetic",) if aesthetic else ()),
        *classes,
    )
    return options, outputs


def scorer_io(outputs: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The scorer stage as start_job checks it: its input, and the outputs every ImageScorer
    declares (a classifier's label columns are the instance's own)."""
    return ("pixel_values",), tuple(name for name in outputs if name in ImageScorer.outputs)


def classifier_labels(path: str, revision: str | None = None) -> list[str]:
    """The label columns of an image classifier, from its config.json alone (no weights)."""
    try:
        if Path(path).is_dir():
            text = (Path(path) / "config.json").read_text()
        elif "://" in path:
            with fsspec.open(f"{path.rstrip('/')}/config.json", "r") as handle:
                text = handle.read()
        else:
            from huggingface_hub import hf_hub_download

            text = Path(hf_hub_download(path, "config.json", revision=revision)).read_text()
        config = json.loads(text)
    except Exception as error:
        raise ConfigError("score.classifier", f"cannot read {path}'s config.json ({error})") from None
    id2label = config.get("id2label")
    if not id2label:
        raise ConfigError("score.classifier", f"{path} is no image classifier: its config has no id2label")
    return label_names(id2label)


def check_filters(rules: Sequence[str], columns: Sequence[str]) -> None:
    """ConfigError("filter") for a rule that does not parse or names none of `columns`."""
    try:
        parse_rules(rules, columns)
    except ValueError as error:
        raise ConfigError("filter", str(error)) from None
