"""<output>/data.csv: the rows of data/ as one CSV for tools that import nothing else (catalogue
and spreadsheet imports). Lists and other nested values become JSON text; binary columns and
vectors are left out."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.csv as pv
import pyarrow.parquet as pq

from rayjobs.io.storage import join, list_folder, write_bytes
from rayjobs.pipeline.write_results import DATA_DIR

CSV_FILE = "data.csv"


def write_csv(fs, root: str) -> int:
    """Writes <root>/data.csv from every file of data/; returns the number of rows."""
    folder = join(root, DATA_DIR)
    files = sorted(list_folder(fs, folder)) if fs.exists(folder) else []
    tables = []
    for file in files:
        with fs.open(file, "rb") as handle:
            tables.append(pq.read_table(handle))
    table = pa.concat_tables(tables, promote_options="default") if tables else pa.table({})
    buffer = io.BytesIO()
    if table.num_columns:
        pv.write_csv(_flat(table), buffer)
    write_bytes(fs, join(root, CSV_FILE), buffer.getvalue())
    return table.num_rows


def _flat(table: pa.Table) -> pa.Table:
    """Columns CSV can hold: nested ones as JSON text; binary and fixed-size lists dropped."""
    columns = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = column.type
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_list(kind):
            continue
        if pa.types.is_nested(kind):
            texts = [None if v is None else json.dumps(v, ensure_ascii=False) for v in column.to_pylist()]
            column = pa.array(texts, pa.string())
        columns[name] = column
    return pa.table(columns)
