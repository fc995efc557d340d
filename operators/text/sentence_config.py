"""How a checkpoint wants its texts embedded, read from sentence-transformers' files when present."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

POOLING_MODES = ("mean", "cls", "max", "lasttoken")


@dataclass(frozen=True)
class SentenceConfig:
    pooling: str = "mean"
    normalize: bool = False
    max_seq_length: int | None = None
    lowercase: bool = False


def read_sentence_config(model_dir: str) -> SentenceConfig:
    """Pooling, normalisation and length limit of a sentence-transformers checkpoint; else mean."""
    root = Path(model_dir)
    modules = _read_json(root / "modules.json") or []
    pooling, normalize = "mean", False
    for module in modules:
        kind = module.get("type", "")
        if kind.endswith("Pooling"):
            pooling = _pooling_mode(_read_json(root / module.get("path", "") / "config.json") or {})
        elif kind.endswith("Normalize"):
            normalize = True
    bert = _read_json(root / "sentence_bert_config.json") or {}
    return SentenceConfig(
        pooling=pooling,
        normalize=normalize,
        max_seq_length=bert.get("max_seq_length"),
        lowercase=bool(bert.get("do_lower_case", False)),
    )


def _pooling_mode(config: dict) -> str:
    for mode in ("cls_token", "lasttoken", "max_tokens"):
        if config.get(f"pooling_mode_{mode}"):
            return {"cls_token": "cls", "max_tokens": "max"}.get(mode, mode)
    return "mean"


def _read_json(path: Path) -> dict | list | None:
    return json.loads(path.read_text()) if path.is_file() else None
