"""Structured outputs: a JSON schema, a regex or a list of choices, compiled by llguidance into a
grammar whose token masks constrain decoding, so that every finished completion matches it.

A constraint travels with its row as compact JSON (`constraint_key`), so that OpenAI batch lines
can each carry their own `response_format` and rows that share one are generated together.
"""

from __future__ import annotations

import json
from typing import Any

KINDS = ("json_schema", "regex", "choices")
ANY_OBJECT = {"type": "object"}  # response_format {"type": "json_object"}: any JSON object
# Whitespace as json.dumps writes it: a flexible pattern lets a weak model pad forever.
JSON_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
EXTRA = "structured"  # pip install 'rayjobs[structured]' brings llguidance


def constraint_key(kind: str, value: Any) -> str:
    """The compact text of a constraint. Keys keep their order: a schema's property order is the
    order the completion writes them in (a model's reasoning field before its answer, say)."""
    if kind not in KINDS:
        raise ValueError(f"a constraint is one of {KINDS}, got {kind!r}")
    return json.dumps({kind: value}, separators=(",", ":"))


def grammar(key: str) -> str:
    """The llguidance grammar of a constraint key."""
    from llguidance import LLMatcher

    ((kind, value),) = json.loads(key).items()
    if kind == "json_schema":
        return LLMatcher.grammar_from_json_schema(value, defaults=JSON_LAYOUT)
    if kind == "regex":
        return LLMatcher.grammar_from_regex(value)
    # Lark string literals take JSON escapes: any choice text is matched verbatim.
    return LLMatcher.grammar_from_lark("start: " + " | ".join(json.dumps(str(c)) for c in value))


def grammar_error(key: str) -> str | None:
    """Why a constraint cannot be compiled, or None."""
    from llguidance import LLMatcher

    ((kind, value),) = json.loads(key).items()
    if kind == "choices" and (not isinstance(value, list) or not value or not all(map(str, value))):
        return "choices must be a non-empty list of non-empty strings"
    if kind == "regex" and (not isinstance(value, str) or not value):
        return "regex must be a non-empty string"
    if kind == "json_schema" and not isinstance(value, dict):
        return f"a JSON schema must be an object, got {type(value).__name__}"
    try:
        compiled = grammar(key)
    except (ValueError, TypeError, RuntimeError) as error:  # the JSON schema compiler raises
        return _one_line(str(error))
    failed, messages = LLMatcher.validate_grammar_with_warnings(compiled)
    return _one_line(messages[0] if messages else "invalid grammar") if failed else None


def _one_line(message: str) -> str:
    """llguidance's messages draw carets under the grammar over several lines: one line, for a
    config error or a row's reason."""
    return " ".join(message.split())


def parsed_json(text: str) -> str | None:
    """A completion as compact JSON when it parses (a JSON constraint cut short by max_new_tokens
    does not), else None."""
    try:
        return json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))
    except ValueError:
        return None


def token_ids(value: int | list[int] | None) -> set[int]:
    """A generation config's eos_token_id (one id, a list, or None) as a set."""
    return set(value) if isinstance(value, list) else {value} - {None}


def is_json(key: str | None) -> bool:
    return key is not None and key.startswith('{"json_schema"')


class GrammarMask:
    """A transformers logits processor: one llguidance matcher per sequence of a generate() call
    (rows x n, in order); each step consumes the token just sampled and masks every token the
    grammar cannot take next. It runs before any sampling warper, so that top-p never leaves a
    sequence with no allowed token."""

    def __init__(self, tokenizer: Any, key: str, sequences: int, prompt_length: int, eos: set[int]) -> None:
        from llguidance import LLExecutor, LLMatcher

        compiled = grammar(key)
        self.matchers = [LLMatcher(tokenizer, compiled, log_level=0) for _ in range(sequences)]
        self.done = [False] * sequences  # the end-of-sequence token was taken: nothing more to check
        self.executor = LLExecutor()
        self.prompt_length = prompt_length
        self.eos = eos

    def __call__(self, input_ids, scores):
        import torch
        from llguidance.torch import allocate_token_bitmask, fill_next_token_bitmask_par

        if input_ids.shape[1] > self.prompt_length:  # not the first step: take the last tokens
            for i, token in enumerate(input_ids[:, -1].tolist()):
                if not self.done[i]:
                    self.matchers[i].consume_token(token)
                    self.done[i] = token in self.eos or self.matchers[i].is_error()
        mask = allocate_token_bitmask(len(self.matchers), scores.shape[-1])  # all allowed
        live = [(m, i) for i, m in enumerate(self.matchers) if not self.done[i]]
        if live:
            fill_next_token_bitmask_par(self.executor, live, mask)
        bits = (mask.unsqueeze(-1) >> torch.arange(32, dtype=torch.int32)) & 1
        allowed = bits.bool().view(len(self.matchers), -1)[:, : scores.shape[-1]]
        return scores.masked_fill(~allowed.to(scores.device), float("-inf"))

    def errors(self) -> list[str | None]:
        """Per sequence, what the matcher refused (a bug or a grammar limit), else None."""
        return [m.get_error() or None if m.is_error() else None for m in self.matchers]


class GrammarDecoding:
    """What a generator needs to constrain its generate() calls: llguidance's view of its
    vocabulary (built once, on first use: about a second for a large vocabulary) and, per call,
    the mask then the sampling warpers."""

    def __init__(self, model: Any, tokenizer: Any, eos: set[int]) -> None:
        self.model, self.tokenizer, self.eos = model, tokenizer, eos
        self._vocabulary = None

    def processors(self, key: str, sequences: int, prompt_length: int, temperature: float, top_p: float):
        """The grammar's mask, then temperature and top-p (in that order): a checkpoint's default
        top-k or top-p ahead of the mask could leave a sequence with no allowed token."""
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

        if self._vocabulary is None:
            import llguidance.hf

            size = self.model.get_output_embeddings().weight.shape[0]
            try:
                self._vocabulary = llguidance.hf.from_tokenizer(
                    self.tokenizer, n_vocab=size, eos_token=sorted(self.eos) or None
                )
            except (ValueError, RuntimeError) as error:  # e.g. a WordPiece vocabulary it cannot decode
                raise ValueError(f"structured outputs cannot use this model's tokenizer: {error}") from None
        mask = GrammarMask(self._vocabulary, key, sequences, prompt_length, self.eos)
        processors = LogitsProcessorList([mask])
        if temperature > 0:
            processors.append(TemperatureLogitsWarper(temperature))
            if top_p < 1:
                processors.append(TopPLogitsWarper(top_p))
        return processors


# The generation config of a constrained sampling call: neutral, so that the checkpoint's own
# defaults (None would take them) add no warper ahead of GrammarDecoding's processors.
NEUTRAL_SAMPLING = {"temperature": 1.0, "top_p": 1.0, "top_k": 0}
