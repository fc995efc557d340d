"""generate_text end to end on a real local Ray: prompt columns and OpenAI Batch files."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import rayjobs
from tests.operators.text.test_text_generator import direct_greedy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def request(custom_id, content, **body):
    return json.dumps(
        {
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "tiny", "messages": [{"role": "user", "content": content}], **body},
        }
    )


def test_openai_batch_round_trip_every_custom_id_once(local_ray, tmp_path, tiny_gpt2):
    lines = [
        request("r1", "a red car", max_tokens=5),
        request("r2", "the small dog", max_completion_tokens=4, n=2, temperature=0.8, seed=3),
        "{this is not json",
        request("r4", "a tree", tools=[{"type": "function"}]),
        json.dumps({"custom_id": "r5", "method": "POST", "url": "/v1/embeddings", "body": {"input": "x"}}),
        request("r6", [{"type": "text", "text": "a blue "}, {"type": "text", "text": "sky"}], max_tokens=3),
        "",
        request("r7", "   "),  # blank content: the API accepts it, so do we
    ]
    (tmp_path / "batch.jsonl").write_text("\n".join(lines) + "\n")
    cfg = rayjobs.compose(
        "generate_text",
        [
            f"input.path={tmp_path / 'batch.jsonl'}",
            "input.format=openai_batch",
            f"output.path={tmp_path / 'out'}",
            f"model.path={tiny_gpt2}",
            "model.max_new_tokens=6",
            "model.batch_size=2",
            "input.shard_rows=3",
            "runtime.progress_bars=false",
            "job.max_error_fraction=0.7",
        ],
    )
    result = rayjobs.run(cfg)
    assert (result.rows_written, result.rows_errored) == (4, 3)
    output = [json.loads(line) for line in (tmp_path / "out" / "output.jsonl").read_text().splitlines()]
    by_id = {line["custom_id"]: line for line in output if line["custom_id"]}
    assert len(output) == 7 and sorted(by_id) == ["r1", "r2", "r4", "r5", "r6", "r7"]
    r1 = by_id["r1"]["response"]
    assert r1["status_code"] == 200 and r1["body"]["object"] == "chat.completion"
    assert r1["body"]["choices"][0]["message"]["content"] == direct_greedy(tiny_gpt2, "a red car", 5)
    usage = r1["body"]["usage"]
    assert (
        usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        and usage["completion_tokens"] <= 5
    )
    assert len(by_id["r2"]["response"]["body"]["choices"]) == 2
    assert "unsupported body field(s): tools" in by_id["r4"]["error"]["message"]
    assert "only POST /v1/chat/completions" in by_id["r5"]["error"]["message"]
    assert by_id["r6"]["error"] is None and by_id["r7"]["error"] is None  # blank content is valid for the API
    unparsable = [line for line in output if line["custom_id"] is None]
    assert len(unparsable) == 1 and "invalid JSON" in unparsable[0]["error"]["message"]


def test_csv_prompts_with_a_template(local_ray, tmp_path, tiny_gpt2):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "products.csv").write_text("sku,name,style\n1,shoe,noir\n2,car,\n3,tree,sea\n")
    cfg = rayjobs.compose(
        "generate_text",
        [
            f"input.path={tmp_path / 'in'}",
            "input.format=csv",
            "input.id_column=sku",
            f"output.path={tmp_path / 'out'}",
            f"model.path={tiny_gpt2}",
            "model.max_new_tokens=4",
            "prompt.template='a {name} in {style} style'",
            "runtime.progress_bars=false",
        ],
    )
    result = rayjobs.run(cfg)
    assert (result.rows_written, result.rows_errored) == (3, 0)
    data = pq.read_table(tmp_path / "out" / "data")
    assert sorted(data["id"].to_pylist()) == ["1", "2", "3"]
    assert data.schema.field("completions").type == pa.list_(pa.string())
    by_id = dict(zip(data["id"].to_pylist(), data["completions"].to_pylist(), strict=True))
    assert by_id["1"] == [direct_greedy(tiny_gpt2, "a shoe in noir style", 4)]


def test_empty_and_too_long_prompts_land_in_errors_continuous_engine(local_ray, tmp_path, tiny_gpt2):
    prompts = ["a red car", "", None, "   ", " ".join(["word"] * 200), "the dog"]
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"key": list(range(6)), "prompt": prompts}), tmp_path / "in" / "p.parquet")
    cfg = rayjobs.compose(
        "generate_text",
        [
            f"input.path={tmp_path / 'in'}",
            "input.format=parquet",
            "input.id_column=key",
            f"output.path={tmp_path / 'out'}",
            f"model.path={tiny_gpt2}",
            "model.max_new_tokens=5",
            "model.engine=continuous",
            "runtime.progress_bars=false",
            "job.max_error_fraction=0.9",
        ],
    )
    result = rayjobs.run(cfg)
    assert (result.rows_written, result.rows_errored) == (2, 4)
    data = dict(
        zip(
            *(pq.read_table(tmp_path / "out" / "data")[c].to_pylist() for c in ("id", "completions")),
            strict=True,
        )
    )
    assert data == {
        0: [direct_greedy(tiny_gpt2, "a red car", 5)],
        5: [direct_greedy(tiny_gpt2, "the dog", 5)],
    }
    errors = {e["id"]: e["reason"] for e in pq.read_table(tmp_path / "out" / "errors").to_pylist()}
    assert errors[1] == "empty prompt" and errors[3] == "empty prompt"
    assert errors[2] == "missing prompt (null)"
    assert "exceeds the model's context of 128 tokens" in errors[4]


def test_json_schema_from_a_file_every_completion_parses_and_validates(local_ray, tmp_path, tiny_gpt2):
    import jsonschema

    from tests.operators.text.test_output_grammar import SCHEMA

    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    (tmp_path / "in").mkdir()
    prompts = [f"describe thing {i}" for i in range(6)]
    pq.write_table(pa.table({"prompt": prompts}), tmp_path / "in" / "p.parquet")
    cfg = rayjobs.compose(
        "generate_text",
        [
            f"input.path={tmp_path / 'in'}",
            "input.format=parquet",
            f"output.path={tmp_path / 'out'}",
            f"model.path={tiny_gpt2}",
            "model.max_new_tokens=90",
            "model.temperature=1.0",
            "model.n=2",
            f"prompt.json_schema={tmp_path / 'schema.json'}",
            "runtime.progress_bars=false",
        ],
    )
    result = rayjobs.run(cfg)
    assert (result.rows_written, result.rows_errored) == (6, 0)
    rows = pq.read_table(tmp_path / "out" / "data").to_pylist()
    assert len(rows) == 6 and all(len(row["completions"]) == 2 for row in rows)
    for row in rows:
        assert row["finish_reasons"] == ["stop", "stop"]
        for text, parsed in zip(row["completions"], row["json"], strict=True):
            jsonschema.validate(json.loads(text), SCHEMA)
            assert json.loads(parsed) == json.loads(text)


def test_openai_batch_response_formats_are_honoured(local_ray, tmp_path, tiny_gpt2):
    import jsonschema

    from tests.operators.text.test_output_grammar import SCHEMA

    strict = {"type": "json_schema", "json_schema": {"name": "thing", "schema": SCHEMA, "strict": True}}
    broken = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}
    lines = [
        request("schema", "describe a car", max_tokens=90, response_format=strict),
        request("object", "describe a dog", max_tokens=90, response_format={"type": "json_object"}),
        request("text", "a tree", max_tokens=5, response_format={"type": "text"}),
        request("broken", "a tree", response_format=broken),
    ]
    (tmp_path / "batch.jsonl").write_text("\n".join(lines) + "\n")
    cfg = rayjobs.compose(
        "generate_text",
        [
            f"input.path={tmp_path / 'batch.jsonl'}",
            "input.format=openai_batch",
            f"output.path={tmp_path / 'out'}",
            f"model.path={tiny_gpt2}",
            "runtime.progress_bars=false",
            "job.max_error_fraction=0.5",
        ],
    )
    result = rayjobs.run(cfg)
    assert (result.rows_written, result.rows_errored) == (3, 1)
    output = [json.loads(line) for line in (tmp_path / "out" / "output.jsonl").read_text().splitlines()]
    by_id = {line["custom_id"]: line for line in output}
    served = ("schema", "object", "text")
    content = {key: by_id[key]["response"]["body"]["choices"][0]["message"]["content"] for key in served}
    jsonschema.validate(json.loads(content["schema"]), SCHEMA)
    assert isinstance(json.loads(content["object"]), dict)
    assert content["text"] == direct_greedy(tiny_gpt2, "a tree", 5)
    assert by_id["broken"]["error"]["message"].startswith("body.response_format: ")


@pytest.mark.parametrize(
    ("override", "key", "reason"),
    [
        ("prompt.json_schema={type: object, properties: {a: {type: strin}}}", "prompt.json_schema", "strin"),
        ("prompt.json_schema=/nonexistent/schema.json", "prompt.json_schema", "cannot read the schema file"),
        ("prompt.regex='a(b'", "prompt.regex", "unclosed group"),
        ("prompt.choices=[]", "prompt.choices", "non-empty list"),
    ],
)
def test_a_constraint_that_cannot_compile_fails_before_ray_naming_its_key(tmp_path, override, key, reason):
    from rayjobs.config.config_error import ConfigError

    cfg = rayjobs.compose(
        "generate_text",
        [f"input.path={tmp_path}", f"output.path={tmp_path / 'out'}", "model.path=/nowhere", override],
    )
    with pytest.raises(ConfigError) as raised:
        rayjobs.run(cfg)
    assert raised.value.key == key and reason in str(raised.value)
    assert not (tmp_path / "out").exists()
