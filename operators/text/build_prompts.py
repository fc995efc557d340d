"""CPU stage ahead of a text generator: prompt text (column, template or OpenAI request) ->
chat-templated token ids, per-row generation parameters and output constraint; length-sorted to
cut padding."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyarrow as pa

from operators.arrow_tensors import lists_to_arrow
from operators.model_files import local_model_dir
from operators.row_errors import add_error_columns, good_rows, mark_errors
from operators.text.openai_requests import parse_request
from operators.text.output_grammar import EXTRA, grammar_error
from operators.text.prompt_template import prompt_text

STAGE = "prompt"
PARAMS = {
    "max_new_tokens": pa.int32(),
    "temperature": pa.float32(),
    "top_p": pa.float32(),
    "n": pa.int32(),
    "seed": pa.int64(),
}


@lru_cache(maxsize=4)
def load_chat_tokenizer(model_path: str, revision: str | None = None):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(local_model_dir(model_path, revision))


@lru_cache(maxsize=4)
def context_length(model_path: str, revision: str | None = None) -> int | None:
    """Tokens the model attends over (prompt + completion), from its config; None if unknown."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(local_model_dir(model_path, revision))
    config = getattr(config, "text_config", None) or config
    for name in ("max_position_embeddings", "n_positions", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def build_prompts(
    table: pa.Table,
    *,
    model_path: str,
    revision: str | None = None,
    prompt_column: str | None = None,
    template: str | None = None,
    system: str | None = None,
    chat_template: bool = True,
    openai: bool = False,
    max_new_tokens: int | None = None,
    truncate: bool = False,
    constraint: str | None = None,
) -> pa.Table:
    """Adds input_ids (list<int32>), the generation parameters (null: the model's defaults), the
    output constraint (a row's response_format, else `constraint`; output_grammar) and, for
    OpenAI batch input, custom_id and model.

    A prompt that leaves no room for its max_new_tokens (the row's, else `max_new_tokens`) in the
    model's context is an error row, or with `truncate` keeps its last tokens (where the question
    and the generation prompt are)."""
    tokenizer = load_chat_tokenizer(model_path, revision)
    context = context_length(model_path, revision)
    table = add_error_columns(table)
    records = table.to_pylist()
    ids: list[np.ndarray] = []
    reasons: list[str | None] = []
    params = {name: [] for name in PARAMS}
    custom_ids, models, constraints = [], [], []
    for record, ok in zip(records, good_rows(table), strict=True):
        messages, row_params, reason, custom_id, model = None, {}, None, None, None
        row_constraint = constraint
        if openai:
            request = parse_request(record.get("request") or "")
            messages, row_params, reason = request.messages, request.params, request.error
            custom_id, model = request.custom_id, request.model
            row_constraint = request.constraint or constraint
            if reason is None and row_constraint is not None:
                reason = _constraint_problem(row_constraint)
        else:
            text, reason = prompt_text(record, prompt_column, template)
            if reason is None:
                messages = ([{"role": "system", "content": system}] if system else []) + [
                    {"role": "user", "content": text}
                ]
        tokens = np.zeros(0, np.int32)
        if ok and reason is None:
            tokens = _tokenize(tokenizer, messages, chat_template)
            if len(tokens) == 0:
                reason = "empty prompt"
            elif context:
                new = row_params.get("max_new_tokens") or max_new_tokens
                tokens, reason = _fit(tokens, context, new, truncate)
        ids.append(tokens)
        reasons.append(reason)
        for name in PARAMS:
            params[name].append(row_params.get(name))
        custom_ids.append(custom_id)
        models.append(model)
        constraints.append(row_constraint)
    table = mark_errors(table, reasons, STAGE)
    table = table.append_column("input_ids", lists_to_arrow(ids))
    for name, kind in PARAMS.items():
        table = table.append_column(name, pa.array(params[name], kind))
    table = table.append_column("constraint", pa.array(constraints, pa.string()))
    if openai:
        table = table.append_column("custom_id", pa.array(custom_ids, pa.string()))
        table = table.append_column("model", pa.array(models, pa.string()))
    lengths = np.array([len(row) for row in ids])
    return table.take(pa.array(np.argsort(lengths, kind="stable")))


@lru_cache(maxsize=64)
def _constraint_problem(key: str) -> str | None:
    """Why a batch line's response_format cannot be served (the job's own was checked before Ray)."""
    try:
        problem = grammar_error(key)
    except ImportError:
        return f"response_format needs llguidance, not installed: pip install 'rayjobs[{EXTRA}]'"
    return f"body.response_format: {problem}" if problem else None


def _fit(tokens: np.ndarray, context: int, new: int | None, truncate: bool) -> tuple[np.ndarray, str | None]:
    room = context - (new or 0)
    if len(tokens) <= room:
        return tokens, None
    if room < 1:
        return tokens, f"max_new_tokens {new} leaves no room for a prompt in the model's context of {context}"
    if truncate:
        return tokens[-room:], None
    return tokens, (
        f"prompt of {len(tokens)} tokens + max_new_tokens {new} exceeds the model's context of {context} "
        "tokens (prompt.truncate=true keeps the prompt's last tokens)"
    )


def _tokenize(tokenizer, messages: list[dict[str, str]], chat_template: bool) -> np.ndarray:
    if chat_template and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        tokens = tokenizer("\n".join(m["content"] for m in messages))["input_ids"]
    return np.asarray(tokens, dtype=np.int32)
