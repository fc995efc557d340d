import json
import shutil

import pyarrow as pa
import pytest

from operators.arrow_tensors import arrow_to_lists
from operators.row_errors import ERROR, ERROR_STAGE
from operators.text.tokenize_texts import FastTokenizer, load_tokenizer, tokenize_texts


def test_tokenizes_flags_truncation_and_records_bad_texts(tiny_bert_st):
    texts = ["a red car", "", None, "   ", "the cat " * 40, "a dog"]
    table = tokenize_texts(
        pa.table({"id": range(6), "text": texts}), model_path=tiny_bert_st, text_column="text"
    )
    rows = {row["id"]: row for row in table.to_pylist()}
    assert table.num_rows == 6 and "text" not in table.column_names
    assert {i: rows[i][ERROR] for i in (1, 2, 3)} == {
        1: "empty text",
        2: "missing text (null)",
        3: "empty text",
    }
    assert {rows[i][ERROR_STAGE] for i in (1, 2, 3)} == {"tokenize"}
    lengths = {
        i: len(ids)
        for i, ids in zip(table["id"].to_pylist(), arrow_to_lists(table["input_ids"]), strict=True)
    }
    assert lengths[4] == 16 and rows[4]["truncated"]  # max_seq_length from sentence_bert_config.json
    assert not rows[0]["truncated"] and not rows[5]["truncated"] and 3 <= lengths[0] < 16
    assert {i: rows[i]["prompt_tokens"] for i in rows} == lengths  # usage: the tokens the model reads


def test_good_rows_come_shortest_first(tiny_bert):
    texts = ["the big green tree by the sea", "a", "a red car", None]
    table = tokenize_texts(
        pa.table({"id": range(4), "text": texts}), model_path=tiny_bert, text_column="text"
    )
    assert table["id"].to_pylist() == [1, 2, 0, 3]


def test_keeps_text_when_asked_and_keeps_earlier_errors(tiny_bert):
    source = pa.table(
        {
            "text": ["a car", "a dog"],
            ERROR: pa.array(["read failed", None]),
            ERROR_STAGE: pa.array(["read", None]),
        }
    )
    table = tokenize_texts(source, model_path=tiny_bert, text_column="text", keep_text=True)
    by_text = {row["text"]: row for row in table.to_pylist()}
    assert by_text["a car"][ERROR] == "read failed" and by_text["a car"][ERROR_STAGE] == "read"
    assert by_text["a dog"][ERROR] is None


TEXTS = [
    "a red car",
    "Crème brûlée à l'ÉCOLE",
    "日本語のテキスト and emoji 🎉",
    "the cat " * 200,
    "  spaces\tand\nnewlines  ",
    "don't stop—ever!",
]


@pytest.mark.parametrize("fixture", ["tiny_bert_st", "tiny_clip", "tiny_siglip", "minilm_path"])
def test_tokenizer_json_alone_gives_the_ids_transformers_gives(fixture, request):
    from transformers import AutoTokenizer

    path = request.getfixturevalue(fixture)
    tokenizer, limit, _ = load_tokenizer(path)
    reference = AutoTokenizer.from_pretrained(path)
    assert isinstance(tokenizer, FastTokenizer)  # no transformers import in the tokenize tasks
    cut = tokenizer(TEXTS, truncation=True, max_length=limit)["input_ids"]
    assert cut == reference(TEXTS, truncation=True, max_length=limit)["input_ids"]
    assert max(map(len, cut)) == limit
    assert tokenizer(TEXTS)["input_ids"] == reference(TEXTS)["input_ids"]


def test_tokenizers_with_extra_switches_go_through_transformers(tiny_bert, tmp_path):
    folder = tmp_path / "bert"
    shutil.copytree(tiny_bert, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "add_eos_token": True}))
    tokenizer, _, _ = load_tokenizer(str(folder))
    assert not isinstance(tokenizer, FastTokenizer)
    table = tokenize_texts(pa.table({"text": ["a red car"]}), model_path=str(folder), text_column="text")
    assert arrow_to_lists(table["input_ids"])[0].tolist() == tokenizer(["a red car"])["input_ids"][0]


def test_a_tokenizer_without_a_limit_is_capped_at_the_models_positions(tiny_bert, tmp_path):
    folder = tmp_path / "no_limit"
    shutil.copytree(tiny_bert, folder)
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    settings.pop("model_max_length", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = 12
    (folder / "config.json").write_text(json.dumps(config))
    load_tokenizer.cache_clear()
    table = pa.table({"id": ["a"], "text": [" ".join(["cat"] * 40)]})
    out = tokenize_texts(table, model_path=str(folder), text_column="text")
    assert len(arrow_to_lists(out["input_ids"])[0]) == 12 and out["truncated"].to_pylist() == [True]
