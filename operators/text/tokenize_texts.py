"""CPU stage ahead of a text model: tokenize, flag truncation, sort by length to cut padding."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa

from operators.arrow_tensors import lists_to_arrow
from operators.model_files import local_model_dir
from operators.row_errors import add_error_columns, good_rows, mark_errors
from operators.text.sentence_config import read_sentence_config

STAGE = "tokenize"


# Tokenizer classes whose tokenizer.json alone reproduces transformers' ids (special tokens come
# from its post-processor); others (e.g. add_eos_token switches) go through transformers.
PLAIN_TOKENIZERS = {
    f"{name}Tokenizer{fast}"
    for name in ("Bert", "DistilBert", "MPNet", "Roberta", "XLMRoberta", "Electra", "CLIP")
    for fast in ("", "Fast")
} | {"PreTrainedTokenizerFast", "TokenizersBackend"}  # transformers' generic tokenizer.json wrappers


class FastTokenizer:
    """A checkpoint's tokenizer.json run by the `tokenizers` library: the ids transformers gives,
    without importing transformers (3 s of CPU per worker on a small machine)."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self._whole = Tokenizer.from_file(str(path))
        self._whole.no_padding()
        self._whole.no_truncation()
        self._cut = Tokenizer.from_file(str(path))
        self._cut.no_padding()

    def __call__(
        self, texts: list[str], truncation: bool = False, max_length: int | None = None
    ) -> dict[str, list[list[int]]]:
        tokenizer = self._whole
        if truncation and max_length:
            self._cut.enable_truncation(max_length)
            tokenizer = self._cut
        return {"input_ids": [encoding.ids for encoding in tokenizer.encode_batch(texts)]}


@lru_cache(maxsize=4)
def load_tokenizer(model_path: str, revision: str | None = None):
    """The checkpoint's tokenizer and its length limit, loaded once per worker process."""
    folder = Path(local_model_dir(model_path, revision))
    config = _read_json(folder / "tokenizer_config.json")
    tokenizer = plain_tokenizer(folder, config)
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
    settings = read_sentence_config(str(folder))
    limit = settings.max_seq_length
    model_max = config.get("model_max_length") or getattr(tokenizer, "model_max_length", None)
    if limit is None and model_max and model_max < 1_000_000:
        limit = int(model_max)
    positions = model_positions(folder)  # a tokenizer that records no limit says 512 or nothing
    return tokenizer, min(limit or 512, positions or 512), settings.lowercase


ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert", "longformer")  # positions start at pad + 1


def model_positions(folder: Path) -> int | None:
    """How many tokens the checkpoint's text model can take (config.json), if it says."""
    config = _read_json(folder / "config.json")
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    positions = text.get("max_position_embeddings")
    if not isinstance(positions, int) or positions < 1:
        return None
    if text.get("model_type", config.get("model_type")) in ROBERTA_LIKE:
        positions -= int(text.get("pad_token_id") or 1) + 1
    return positions


def plain_tokenizer(folder: Path, config: dict) -> FastTokenizer | None:
    """The `tokenizers`-only path when the checkpoint's tokenizer class allows it, else None."""
    if not (folder / "tokenizer.json").is_file() or config.get("tokenizer_class") not in PLAIN_TOKENIZERS:
        return None
    if config.get("add_bos_token") or config.get("add_eos_token"):
        return None
    return FastTokenizer(folder / "tokenizer.json")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def tokenize_texts(
    table: pa.Table,
    *,
    model_path: str,
    text_column: str,
    revision: str | None = None,
    max_length: int | None = None,
    keep_text: bool = False,
) -> pa.Table:
    """Adds `input_ids` (list<int32>), `truncated` and `prompt_tokens`; empty or missing texts
    become errors."""
    tokenizer, model_limit, lowercase = load_tokenizer(model_path, revision)
    limit = max_length or model_limit
    table = add_error_columns(table)
    texts = table[text_column].to_pylist()
    reasons = [_text_problem(text) for text in texts]
    table = mark_errors(table, reasons, STAGE)
    good = good_rows(table)
    rows = np.flatnonzero(good)
    chosen = [str(texts[i]).lower() if lowercase else str(texts[i]) for i in rows]
    ids: list[np.ndarray] = [np.zeros(0, np.int32)] * table.num_rows
    truncated = np.zeros(table.num_rows, dtype=bool)
    if chosen:
        encoded = tokenizer(chosen, truncation=True, max_length=limit)["input_ids"]
        for row, tokens in zip(rows, encoded, strict=True):
            ids[row] = np.asarray(tokens, dtype=np.int32)
        # Only rows that hit the limit can have been cut: re-count just those.
        full = [k for k, row in enumerate(rows) if len(ids[row]) == limit]
        if full:
            whole = tokenizer([chosen[k] for k in full])["input_ids"]
            for k, tokens in zip(full, whole, strict=True):
                truncated[rows[k]] = len(tokens) > limit
    if not keep_text:
        table = table.drop_columns([text_column])
    table = table.append_column("input_ids", lists_to_arrow(ids))
    table = table.append_column("truncated", pa.array(truncated))
    # Tokens the model reads, for the run's usage (and the OpenAI embeddings response's).
    table = table.append_column("prompt_tokens", pa.array([len(row) for row in ids], pa.int32()))
    # Good rows shortest first: model batches cut from this block carry little padding.
    lengths = np.array([len(row) if ok else 1 << 30 for row, ok in zip(ids, good, strict=True)])
    return table.take(pa.array(np.argsort(lengths, kind="stable")))


def _text_problem(text: object) -> str | None:
    if text is None:
        return "missing text (null)"
    if not isinstance(text, str):
        return f"text is {type(text).__name__}, not a string"
    if not text.strip():
        return "empty text"
    return None
