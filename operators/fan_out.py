"""Fan-out: a stage that makes k output rows from one input row (n images per prompt, frames).

Each child keeps its parent's shard and row, and gets `parent_id`, `index` (0..k-1) and the id
`<parent id>@<index>` (a string, whatever the input ids' type). `_parts` (how many outputs the
input row became, multiplied through nested fan-outs) lets the driver count a shard done when
its input rows' outcomes add up; `_sub` orders the children of one input row so every write
file has a distinct name.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PARENT_ID = "parent_id"
INDEX = "index"
PARTS = "_parts"
SUB = "_sub"
SUB_STRIDE = 1 << 20  # children per row at each level: room for three nested fan-outs in an int64


def fan_out(table: pa.Table, counts: Sequence[int], only: np.ndarray | None = None) -> pa.Table:
    """Row i repeated counts[i] times (counts >= 1) with the child columns set.

    `only`: a mask of the rows to fan out; the others (say, rows that already failed) pass
    through once, keeping their id, with no parent_id or index."""
    counts = np.asarray(counts, dtype=np.int64)
    if len(counts) != table.num_rows or (counts < 1).any() or (counts >= SUB_STRIDE).any():
        raise ValueError(f"fan_out needs one count in [1, {SUB_STRIDE}) per row")
    fanned = np.ones(table.num_rows, dtype=bool) if only is None else np.asarray(only, dtype=bool)
    counts = np.where(fanned, counts, 1)
    take = np.repeat(np.arange(table.num_rows), counts)
    index = np.arange(len(take)) - np.repeat(np.cumsum(counts) - counts, counts)
    child = fanned[take]
    ids = [str(value) for value in table["id"].to_pylist()]
    parents = pc.if_else(pa.array(child), table["id"].take(pa.array(take)), pa.scalar(None, table["id"].type))
    parts = parts_of(table)[take] * np.where(child, counts[take], 1)
    parent_sub = sub_of(table)[take]
    sub = np.where(child, parent_sub * SUB_STRIDE + index, parent_sub)
    out = table.take(pa.array(take))
    columns = {
        "id": pa.array(
            [f"{ids[p]}@{i}" if c else ids[p] for p, i, c in zip(take, index, child, strict=True)],
            pa.string(),
        ),
        PARENT_ID: parents,  # the input's id, in the input's type
        INDEX: pa.array(np.where(child, index, 0), pa.int32(), mask=~child),
        PARTS: pa.array(parts, pa.int64()),
        SUB: pa.array(sub, pa.int64()),
    }
    for name, values in columns.items():
        if name in out.column_names:
            out = out.set_column(out.schema.get_field_index(name), name, values)
        else:
            out = out.append_column(name, values)
    return out


def parts_of(table: pa.Table) -> np.ndarray:
    """Outputs each row's input row became (1 without fan-out)."""
    return _column(table, PARTS, 1)


def sub_of(table: pa.Table) -> np.ndarray:
    return _column(table, SUB, 0)


def _column(table: pa.Table, name: str, default: int) -> np.ndarray:
    if name not in table.column_names:
        return np.full(table.num_rows, default, dtype=np.int64)
    return table[name].to_numpy().astype(np.int64)
