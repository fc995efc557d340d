import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from operators.arrow_tensors import tensor_to_arrow
from operators.fan_out import fan_out
from operators.file_outputs import FILE_BYTES, FILE_EXT, file_name
from operators.row_errors import ERROR, ERROR_STAGE, mark_filtered
from rayjobs.io.shards import ROW, SHARD
from rayjobs.pipeline.write_results import parse_part_name, part_name, shard_of, write_results


def batch() -> pa.Table:
    vectors = np.arange(10, dtype=np.float32).reshape(5, 2)
    return pa.table(
        {
            SHARD: pa.array([3, 3, 3, 4, 4], pa.int32()),
            ROW: pa.array([5, 6, 7, 0, 1], pa.int64()),
            "id": ["a", "b", "c", "d", "e"],
            "title": ["A", "B", "C", "D", "E"],
            ERROR: pa.array([None, "bad", None, None, None], pa.string()),
            ERROR_STAGE: pa.array([None, "decode", None, None, None], pa.string()),
            "embedding": tensor_to_arrow(vectors),
        }
    )


def test_good_rows_to_data_bad_rows_to_errors(tmp_path):
    output = {"path": str(tmp_path), "results": ["embedding"], "columns": ["title"], "run_id": "r1"}
    manifest = write_results(batch(), output=output)
    assert manifest.to_pylist() == [
        {"shard": 3, "parts": 1, "rows": 3, "errors": 1, "filtered": 0, "batch_sizes": "{}", "usage": "{}"},
        {"shard": 4, "parts": 1, "rows": 2, "errors": 0, "filtered": 0, "batch_sizes": "{}", "usage": "{}"},
    ]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        part_name(3, 5, "r1"),
        part_name(4, 0, "r1"),
    ]
    data = pq.read_table(tmp_path / "data")
    assert data.schema.field("embedding").type == pa.list_(pa.float32(), 2)
    assert data.column_names == ["id", "embedding", "title"]
    assert sorted(data["id"].to_pylist()) == ["a", "c", "d", "e"]
    errors = pq.read_table(tmp_path / "errors")
    assert errors.to_pylist() == [{"id": "b", "stage": "decode", "reason": "bad", "title": "B"}]


def test_rewriting_the_same_batch_overwrites_instead_of_duplicating(tmp_path):
    output = {"path": str(tmp_path), "results": ["embedding"], "columns": [], "run_id": "r1"}
    write_results(batch(), output=output)
    write_results(batch(), output=output)  # a retried task
    assert pq.read_table(tmp_path / "data").num_rows == 4
    assert not list(tmp_path.rglob("*.tmp"))


def test_float16_embeddings(tmp_path):
    output = {
        "path": str(tmp_path),
        "results": ["embedding"],
        "columns": [],
        "embedding_dtype": "float16",
        "run_id": "r",
    }
    write_results(batch(), output=output)
    assert pq.read_table(tmp_path / "data").schema.field("embedding").type == pa.list_(pa.float16(), 2)


def test_file_names_parse_back():
    assert parse_part_name(part_name(12, 40, "ab12")) == (12, "ab12")
    assert parse_part_name(part_name(12, 40, "ab12", first_sub=3)) == (12, "ab12")
    assert shard_of("data/" + part_name(7, 0, "x")) == 7
    assert shard_of("other.parquet") is None and shard_of("part-x-1-r.parquet") is None


def test_filtered_rows_go_to_filtered_with_the_rule(tmp_path):
    table = mark_filtered(batch(), [None, None, "clip_score 0.18 < 0.25", None, None], "score")
    output = {"path": str(tmp_path), "results": ["embedding"], "columns": [], "run_id": "r1"}
    manifest = write_results(table, output=output).to_pylist()
    assert [(m["shard"], m["rows"], m["errors"], m["filtered"]) for m in manifest] == [
        (3, 3, 1, 1),
        (4, 2, 0, 0),
    ]
    assert pq.read_table(tmp_path / "filtered").to_pylist() == [
        {"id": "c", "stage": "score", "reason": "clip_score 0.18 < 0.25"}
    ]
    assert sorted(pq.read_table(tmp_path / "data")["id"].to_pylist()) == ["a", "d", "e"]


def test_fanned_out_rows_carry_parent_and_index_and_count_as_parts(tmp_path):
    table = fan_out(batch(), [2, 1, 3, 1, 1], only=np.array([True, False, True, True, True]))
    assert table["id"].to_pylist() == ["a@0", "a@1", "b", "c@0", "c@1", "c@2", "d@0", "e@0"]
    output = {"path": str(tmp_path), "results": ["embedding"], "columns": [], "run_id": "r1"}
    manifest = write_results(table, output=output).to_pylist()
    # shard 3: a (2 parts) + c (3 parts) written, b errored once: 2/2 + 3/3 + 1/1 = its 3 rows
    assert sorted((m["shard"], m["parts"], m["rows"], m["errors"]) for m in manifest) == [
        (3, 1, 1, 1),
        (3, 2, 2, 0),
        (3, 3, 3, 0),
        (4, 1, 2, 0),
    ]
    data = pq.read_table(tmp_path / "data").sort_by("id")
    assert data.column_names[:3] == ["id", "parent_id", "index"]
    assert data["parent_id"].to_pylist() == ["a", "a", "c", "c", "c", "d", "e"]
    assert data["index"].to_pylist() == [0, 1, 0, 1, 2, 0, 0]


def test_write_batches_of_one_shard_split_inside_a_fan_out_get_distinct_names(tmp_path):
    table = fan_out(batch().slice(0, 1), [4])
    output = {"path": str(tmp_path), "results": ["embedding"], "columns": [], "run_id": "r1"}
    write_results(table.slice(0, 2), output=output)
    write_results(table.slice(2, 2), output=output)
    assert sorted(pq.read_table(tmp_path / "data")["id"].to_pylist()) == ["a@0", "a@1", "a@2", "a@3"]


def test_file_outputs_are_named_from_the_row_id_and_a_retry_replaces_them(tmp_path):
    table = batch().append_column(FILE_BYTES, pa.array([b"A", None, b"CC", b"D", b"E"], pa.binary()))
    table = table.append_column(FILE_EXT, pa.array(["png", None, "png", "png", "png"]))
    output = {"path": str(tmp_path), "results": [], "columns": [], "run_id": "r1"}
    write_results(table, output=output)
    write_results(table, output={**output, "run_id": "r2"})  # a re-run: same names, no extra file
    files = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "files").rglob("*") if p.is_file())
    assert files == ["files/a.png", "files/c.png", "files/d.png", "files/e.png"]
    data = pq.read_table(tmp_path / "data" / part_name(3, 5, "r1")).to_pylist()
    assert data == [
        {"id": "a", "path": "files/a.png", "bytes": 1},
        {"id": "c", "path": "files/c.png", "bytes": 2},
    ]


def test_file_names_are_injective_and_stay_inside_files():
    ids = ["a", "a:1", "a~3A1", "../../etc/passwd", "/abs", "sub/x", "sub//x", "日本", ".", "a@0"]
    names = [file_name(i, "jpg") for i in ids]
    assert len(set(names)) == len(names)
    for name in names:
        assert name.startswith("files/") and ".." not in name.split("/") and "//" not in name
    assert file_name("sub/cat.jpg@1", "webp") == "files/sub/cat.jpg@1.webp"


def test_token_usage_counts_written_rows_once_per_batch(tmp_path):
    table = batch().append_column(
        "input_ids", pa.array([[1, 2], [3], [4, 5, 6], [7], [8, 9]], pa.list_(pa.int32()))
    )
    table = table.append_column(
        "completion_tokens", pa.array([[2, 3], [9], [1], [4], [0]], pa.list_(pa.int64()))
    )
    output = {"path": str(tmp_path), "results": ["embedding"], "columns": [], "run_id": "r1"}
    manifest = write_results(table, output=output).to_pylist()
    # Row "b" errored: its 1 input token and 9 completion tokens are not counted.
    assert [json.loads(row["usage"]) for row in manifest] == [{"tokens_in": 8, "tokens_out": 10}, {}]
