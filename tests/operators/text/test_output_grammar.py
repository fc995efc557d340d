"""Structured outputs on a tiny random GPT-2: unconstrained it writes noise, constrained every
finished completion parses and validates."""

import json
import re

import jsonschema
import pyarrow as pa
import pytest

from operators.text.openai_requests import parse_request
from operators.text.output_grammar import constraint_key, grammar_error, parsed_json
from tests.operators.text.test_text_generator import generate

# Nested objects, enums, arrays, bounded numbers and strings: short enough for the toy's 128 positions.
SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"enum": ["cat", "dog", "bird"]},
        "score": {"type": "integer", "minimum": 0, "maximum": 9},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2},
        "box": {
            "type": "object",
            "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer", "minimum": 0, "maximum": 99}},
            "required": ["ok", "n"],
            "additionalProperties": False,
        },
    },
    "required": ["label", "score", "tags", "box"],
    "additionalProperties": False,
}
PROMPTS = ["describe a red car", "the big green tree", "a dog"]


def constrained(tiny_gpt2, key, **kwargs):
    _, out = generate(tiny_gpt2, PROMPTS, constraint=key, **kwargs)
    return out


def test_json_schema_completions_all_parse_and_validate(tiny_gpt2):
    key = constraint_key("json_schema", SCHEMA)
    for kwargs in ({}, {"n": 3, "temperature": 1.0, "top_p": 0.9, "seed": 5}):
        out = constrained(tiny_gpt2, key, max_new_tokens=90, **kwargs)
        rows = zip(out["completions"], out["finish_reasons"], out["json"], strict=True)
        for texts, reasons, parsed in rows:
            assert list(reasons) == ["stop"] * len(texts)
            for text, compact in zip(texts, parsed, strict=True):
                value = json.loads(text)
                jsonschema.validate(value, SCHEMA)
                assert json.loads(compact) == value
    free = constrained(tiny_gpt2, None, max_new_tokens=40)
    assert all(parsed_json(texts[0]) is None for texts in free["completions"])  # the toy writes noise
    assert list(free["json"]) == [None] * len(PROMPTS)


def test_regex_and_choices_bind_every_completion(tiny_gpt2):
    pattern = r"[0-9]{3}-[a-z]{2,5}"
    out = constrained(tiny_gpt2, constraint_key("regex", pattern), max_new_tokens=20, n=2, temperature=1.0)
    assert all(re.fullmatch(pattern, text) for texts in out["completions"] for text in texts)
    choices = ["yes", "no", 'maybe "so"']
    for engine in ("static", "continuous"):  # constrained rows take the static path on either
        key = constraint_key("choices", choices)
        out = constrained(tiny_gpt2, key, max_new_tokens=10, n=4, temperature=1.0, engine=engine)
        assert all(text in choices for texts in out["completions"] for text in texts)
        assert all(reason == "stop" for reasons in out["finish_reasons"] for reason in reasons)


def test_a_cut_short_json_completion_is_kept_with_a_null_json(tiny_gpt2):
    out = constrained(tiny_gpt2, constraint_key("json_schema", SCHEMA), max_new_tokens=8)
    assert all(list(reasons) == ["length"] for reasons in out["finish_reasons"])
    assert all(texts[0].startswith("{") for texts in out["completions"])
    assert all(list(parsed) == [None] for parsed in out["json"])


@pytest.mark.parametrize(
    ("kind", "value", "reason"),
    [
        ("json_schema", {"type": "object", "properties": {"a": {"type": "strin"}}}, "strin"),
        ("json_schema", [1, 2], "must be an object"),
        ("regex", "a(b", "unclosed group"),
        ("choices", [], "non-empty list"),
    ],
)
def test_a_constraint_that_cannot_compile_says_why_in_one_line(kind, value, reason):
    problem = grammar_error(constraint_key(kind, value))
    assert reason in problem and "\n" not in problem


def test_completions_write_properties_in_the_schemas_order(tiny_gpt2):
    ordered = {**SCHEMA, "properties": dict(reversed(SCHEMA["properties"].items()))}
    out = constrained(tiny_gpt2, constraint_key("json_schema", ordered), max_new_tokens=90)
    for texts in out["completions"]:
        assert list(json.loads(texts[0])) == ["box", "tags", "score", "label"]
    assert grammar_error(constraint_key("json_schema", SCHEMA)) is None


def line(response_format, custom_id="a"):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "response_format": response_format}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body})


def test_openai_response_formats_become_constraints():
    schema = {"type": "json_schema", "json_schema": {"name": "thing", "schema": SCHEMA, "strict": True}}
    assert parse_request(line(schema)).constraint == constraint_key("json_schema", SCHEMA)
    assert parse_request(line({"type": "json_object"})).constraint == constraint_key(
        "json_schema", {"type": "object"}
    )
    assert parse_request(line({"type": "text"})).constraint is None
    assert "must be text, json_object or json_schema" in parse_request(line({"type": "xml"})).error
    assert "schema must be a JSON schema object" in parse_request(line({"type": "json_schema"})).error


def test_build_prompts_refuses_a_lines_bad_schema_and_keeps_the_rest(tiny_gpt2):
    from operators.text.build_prompts import build_prompts

    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}
    lines = [line({"type": "json_object"}, "obj"), line(bad, "bad"), line(None, "free")]
    table = build_prompts(pa.table({"request": lines}), model_path=tiny_gpt2, openai=True)
    rows = {row["custom_id"]: row for row in table.select(["custom_id", "constraint", "_error"]).to_pylist()}
    assert rows["obj"]["constraint"] == constraint_key("json_schema", {"type": "object"})
    assert rows["obj"]["_error"] is None and rows["free"]["_error"] is None
    assert rows["free"]["constraint"] is None
    assert rows["bad"]["_error"].startswith("body.response_format: ") and "nope" in rows["bad"]["_error"]


def test_a_tokenizer_llguidance_cannot_read_is_named(tiny_gpt2, tiny_bert):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from operators.text.output_grammar import GrammarDecoding

    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    word_piece = AutoTokenizer.from_pretrained(tiny_bert)  # BERT's WordPiece: no byte-level decoder
    decoding = GrammarDecoding(model, word_piece, {0})
    with pytest.raises(ValueError, match="structured outputs cannot use this model's tokenizer"):
        decoding.processors(constraint_key("regex", "[0-9]+"), 1, 4, 0.0, 1.0)
