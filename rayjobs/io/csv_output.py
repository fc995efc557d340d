"""<output>/data.csv: the rows of data/ as one CSV for tools that import nothing else (catalogue
and spreadsheet imports). Lists and other nested values become JSON text; binary columns and
vectors are left out."""

from __future__ import annotations

import json
import tempfile

import pyarrow as pa
import pyarrow.csv as pv
import pyarrow.parquet as pq

from rayjobs.io.storage import join, list_folder, upload_file
from rayjobs.pipeline.write_results import DATA_DIR

CSV_FILE = "data.csv"


def write_csv(fs, root: str) -> int:
    """Writes <root>/data.csv from every file of data/, one row group at a time through a local
    spool file (millions of rows never sit in memory); returns the number of rows."""
    folder = join(root, DATA_DIR)
    files = sorted(list_folder(fs, folder)) if fs.exists(folder) else []
    schemas = []
    for file in files:
        with fs.open(file, "rb") as handle:
            schemas.append(pq.read_schema(handle))
    # Shards can differ: a column all null in one shard, or absent from another.
    schema = pa.unify_schemas(schemas, promote_options="default") if schemas else pa.schema([])
    rows = 0
    with tempfile.NamedTemporaryFile(suffix=".csv") as spool:
        writer = None
        for file in files:
            with fs.open(file, "rb") as handle:
                for batch in pq.ParquetFile(handle).iter_batches():
                    flat = _flat(_conformed(pa.Table.from_batches([batch]), schema))
                    if flat.num_columns == 0:
                        break
                    writer = writer or pv.CSVWriter(spool.name, flat.schema)
                    writer.write_table(flat)
                    rows += flat.num_rows
        if writer is not None:
            writer.close()
        upload_file(fs, join(root, CSV_FILE), spool.name)
    return rows


def _conformed(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with every column of `schema`, in its order and type (nulls where it has none)."""
    columns = [
        table[field.name].cast(field.type)
        if field.name in table.column_names
        else pa.nulls(table.num_rows, field.type)
        for field in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _flat(table: pa.Table) -> pa.Table:
    """Columns CSV can hold: nested ones as JSON text; binary and fixed-size lists dropped."""
    columns = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = column.type
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_list(kind):
            continue
        if pa.types.is_nested(kind) or pa.types.is_null(kind):  # null: no shard had a value (typed as text)
            texts = [None if v is None else json.dumps(v, ensure_ascii=False) for v in column.to_pylist()]
            column = pa.array(texts, pa.string())
        columns[name] = column
    return pa.table(columns)
