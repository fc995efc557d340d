import json

import pyarrow as pa

from operators.row_errors import ERROR, mark_errors
from operators.text.json_columns import json_columns, schema_columns

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "price": {"type": "number"},
        "stock": {"type": "integer"},
        "sale": {"type": "boolean"},
        "size": {"type": "object", "properties": {"w": {"type": "integer"}}},
        "kind": {"enum": ["a", "b"]},
    },
}


def test_schema_properties_become_typed_columns_and_unparsable_rows_errors():
    columns = schema_columns(SCHEMA)
    assert columns == {
        "title": pa.string(),
        "tags": pa.list_(pa.string()),
        "price": pa.float64(),
        "stock": pa.int64(),
        "sale": pa.bool_(),
        "size": pa.string(),
        "kind": pa.string(),
    }
    good = {
        "title": "Boot",
        "tags": ["x", "y"],
        "price": 9.5,
        "stock": 3,
        "sale": True,
        "size": {"w": 2},
        "kind": "a",
    }
    texts = [json.dumps(good), '{"title": "cut', "[1, 2]", json.dumps({"title": "only"}), "{}"]
    table = mark_errors(pa.table({"caption": texts}), [None, None, None, None, "decode failed"], "decode")
    out = json_columns(table, source="caption", columns=columns)
    rows = out.to_pylist()
    assert {k: rows[0][k] for k in columns} == {**good, "size": '{"w": 2}'}
    assert "cut short by max_new_tokens" in rows[1][ERROR] and "not an object: list" in rows[2][ERROR]
    assert rows[3][ERROR] is None and rows[3]["title"] == "only" and rows[3]["tags"] is None
    assert rows[4][ERROR] == "decode failed"  # an earlier outcome wins
    assert out.schema.field("tags").type == pa.list_(pa.string())
