import csv
import json

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from operators.arrow_tensors import tensor_to_arrow
from rayjobs.io.csv_output import write_csv


def test_data_rows_become_one_csv_with_lists_as_json_and_no_vectors(tmp_path):
    (tmp_path / "data").mkdir()
    first = pa.table({"id": ["a", "b"], "tags": [["x", "y"], []], "image": [b"\x00", b"\x01"]})
    # The second shard: tags all null (typed null), a column the first lacks, two row groups.
    second = pa.table({"id": ["c", "d"], "tags": [None, None], "image": [b"\x02", b""], "brand": ["x", None]})
    pq.write_table(first, tmp_path / "data" / "shard-00000.parquet")
    pq.write_table(second, tmp_path / "data" / "shard-00001.parquet", row_group_size=1)
    assert write_csv(fsspec.filesystem("file"), str(tmp_path)) == 4
    with open(tmp_path / "data.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["id"] for row in rows] == ["a", "b", "c", "d"]
    assert [json.loads(row["tags"]) if row["tags"] else None for row in rows] == [["x", "y"], [], None, None]
    assert [row["brand"] for row in rows] == ["", "", "x", ""]
    assert "image" not in rows[0]
    assert not list(tmp_path.glob("*.tmp"))


def test_embeddings_are_left_out(tmp_path):
    (tmp_path / "data").mkdir()
    table = pa.table({"id": [1, 2], "embedding": tensor_to_arrow(np.ones((2, 4), np.float32))})
    pq.write_table(table, tmp_path / "data" / "part.parquet")
    write_csv(fsspec.filesystem("file"), str(tmp_path))
    assert (tmp_path / "data.csv").read_text().splitlines() == ['"id"', "1", "2"]
