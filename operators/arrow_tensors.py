"""Numpy tensors <-> plain Arrow columns (nested fixed_size_list, list<int>).

Plain Arrow types, not Ray's tensor extension: pandas, polars, DuckDB and faiss read them as-is,
and converting back to numpy is a reshape of one buffer.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def tensor_to_arrow(array: np.ndarray) -> pa.Array:
    """An (N, d1, d2, ...) array as N rows of nested fixed_size_list, row-major."""
    array = np.ascontiguousarray(array)
    column: pa.Array = pa.array(array.reshape(-1))
    for size in reversed(array.shape[1:]):
        column = pa.FixedSizeListArray.from_arrays(column, size)
    return column


def arrow_to_tensor(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The (N, d1, d2, ...) numpy array of a nested fixed_size_list column; null rows (a block
    whose rows all failed upstream lacks the column, and Ray fills it with nulls) become zeros."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    shape = [len(column)]
    valid = column.is_valid().to_numpy(zero_copy_only=False) if column.null_count else None
    values: pa.Array = column
    while pa.types.is_fixed_size_list(values.type):
        shape.append(values.type.list_size)
        values = values.flatten()  # honours the slice offset of `column`, skips null rows
    dense = values.to_numpy(zero_copy_only=False).reshape([-1, *shape[1:]])
    if valid is None:
        return dense
    full = np.zeros(shape, dtype=dense.dtype)
    full[valid] = dense
    return full


def lists_to_arrow(rows: list[np.ndarray], dtype: pa.DataType | None = None) -> pa.Array:
    """Variable-length integer rows (token ids) as list<dtype>."""
    lengths = np.fromiter((len(row) for row in rows), dtype=np.int32, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = np.concatenate(rows) if rows else np.zeros(0)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=dtype or pa.int32()))


def arrow_to_lists(column: pa.Array | pa.ChunkedArray) -> list[np.ndarray]:
    """A list<int> column as one numpy array per row."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    offsets = column.offsets.to_numpy()
    values = column.values.to_numpy(zero_copy_only=False)
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(column))]
