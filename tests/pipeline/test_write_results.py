import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from operators.arrow_tensors import tensor_to_arrow
from operators.row_errors import ERROR, ERROR_STAGE
from rayjobs.io.read_input import ROW, SHARD
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
        {"shard": 3, "rows": 3, "errors": 1, "batch_size": 0},
        {"shard": 4, "rows": 2, "errors": 0, "batch_size": 0},
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
    assert shard_of("data/" + part_name(7, 0, "x")) == 7
    assert shard_of("other.parquet") is None and shard_of("part-x-1-r.parquet") is None
