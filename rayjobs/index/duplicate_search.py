"""The Ray tasks of dedup, one call per shard of an embedding job's output (batch_size=None).

row_keys        position, exact-duplicate key (a 128-bit hash of the text, the file's bytes or
                the vector's bytes) and keep score of every row
without_copies  nulls the vectors of exact copies, so the index holds one row per exact group
near_pairs      range search of the shard's representatives against the whole index: pairs at
                cosine >= threshold, sent back as one edge per row of their components
rows_at         id and vector of the rows the driver asks for (the kept rows of groups)
mark_duplicates the write pass: marks each dropped row filtered, with duplicate_of, similarity, rule

Large inputs of a task (the index, per-row arrays) come as Ray object refs: put once by the
driver, read zero-copy by every task on a node.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.arrow_tensors import arrow_to_tensor
from operators.row_errors import mark_filtered
from rayjobs.index.near_duplicates import spanning_edges
from rayjobs.io.shards import ROW, SHARD
from rayjobs.io.storage import filesystem, join, read_bytes

EXACT_MODES = ("auto", "text", "file", "embedding", "none")
RESULT_COLUMNS = ["duplicate_of", "similarity", "rule"]  # on filtered/ rows, next to id, stage, reason
STAGE = "dedup"
QUERY_CHUNK = 4096  # queries per range search call: bounds the result lists held at once


def positions_of(table: pa.Table, offsets: dict[int, int]) -> np.ndarray:
    """Each row's position in the whole input: its shard's offset + its row in the shard."""
    shards = table[SHARD].to_numpy()
    starts = np.array([offsets[int(s)] for s in np.unique(shards)], np.int64)
    return starts[np.searchsorted(np.unique(shards), shards)] + table[ROW].to_numpy().astype(np.int64)


def row_keys(
    table: pa.Table,
    *,
    offsets: dict[int, int],
    exact: str,
    keep: dict[str, Any],
    text_column: str | None = None,
    embedding_column: str = "embedding",
    file_root: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> pa.Table:
    """Ray task: position, key_hi, key_lo, has_key and keep score of every row."""
    digests = _digests(table, exact, text_column, embedding_column, file_root, storage_options)
    has_key = np.array([d is not None for d in digests], dtype=bool)
    raw = b"".join(d if d is not None else bytes(16) for d in digests)
    keys = np.frombuffer(raw, dtype=np.uint64).reshape(-1, 2) if raw else np.zeros((0, 2), np.uint64)
    return pa.table(
        {
            "position": positions_of(table, offsets),
            "key_hi": keys[:, 0],
            "key_lo": keys[:, 1],
            "has_key": has_key,
            "score": keep_scores(table, keep),
        }
    )


def keep_scores(table: pa.Table, keep: dict[str, Any]) -> np.ndarray:
    """What the keep rule compares (higher is kept): 0 for `first`, the text's length in
    characters for `longest_text`, the column's value for `highest:<column>` (null lowest)."""
    if keep["kind"] == "first":
        return np.zeros(table.num_rows)
    if keep["kind"] == "longest_text":
        lengths = pc.utf8_length(table[keep["text_column"]])
        return pc.fill_null(lengths, -1).to_numpy().astype(np.float64)
    values = pc.cast(table[keep["column"]], pa.float64())
    return pc.fill_null(values, -np.inf).to_numpy()


def _digests(table, exact, text_column, embedding_column, file_root, storage_options) -> list:
    if exact == "none":
        return [None] * table.num_rows
    if exact == "text":
        return [_hash(t.encode()) if t is not None else None for t in table[text_column].to_pylist()]
    if exact == "file":
        fs, root = filesystem(file_root, storage_options)

        def digest(name: str) -> bytes | None:
            try:
                return _hash(read_bytes(fs, join(root, name)))
            except (FileNotFoundError, IsADirectoryError):  # gone since it was embedded: no exact key
                return None

        with ThreadPoolExecutor(16) as pool:  # object-store GETs are latency-bound
            return list(pool.map(digest, table["id"].to_pylist()))
    valid = table[embedding_column].is_valid().to_numpy(zero_copy_only=False)
    digests: list[bytes | None] = [None] * table.num_rows
    vectors = np.ascontiguousarray(arrow_to_tensor(table[embedding_column].filter(pa.array(valid))))
    for row, vector in zip(np.flatnonzero(valid), vectors, strict=True):
        digests[row] = _hash(vector.tobytes())
    return digests


def _hash(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def without_copies(
    table: pa.Table, *, offsets: dict[int, int], copies: Any, embedding_column: str
) -> pa.Table:
    """Ray task: the vectors of exact copies (not their group's representative) set to null, so
    the index and the queries see one row per exact group."""
    import ray

    copy = ray.get(copies)[positions_of(table, offsets)]
    if not copy.any():
        return table
    column = table[embedding_column].combine_chunks()
    nulled = pc.if_else(pa.array(~copy), column, pa.nulls(table.num_rows, column.type))
    return table.set_column(table.schema.get_field_index(embedding_column), embedding_column, nulled)


def unit_vectors(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """float32 rows scaled to unit length: inner product is then cosine."""
    vectors = np.ascontiguousarray(arrow_to_tensor(column), dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def range_pairs(index, vectors: np.ndarray, positions: np.ndarray, threshold: float) -> tuple:
    """(left, right): every pair of a query row (`positions`, unit `vectors`) and another indexed
    row at cosine >= threshold (to float32 rounding: 1e-6)."""
    lefts, rights = [], []
    for start in range(0, len(vectors), QUERY_CHUNK):
        chunk = vectors[start : start + QUERY_CHUNK]
        # faiss keeps inner products strictly above the radius
        limits, _, found = index.range_search(chunk, float(threshold) - 1e-6)
        counts = np.diff(limits).astype(np.int64)
        left = np.repeat(positions[start : start + QUERY_CHUNK], counts)
        other = found != left  # a row finds itself
        lefts.append(left[other])
        rights.append(found[other])
    if not lefts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(lefts), np.concatenate(rights)


def near_pairs(
    table: pa.Table,
    *,
    index: Any,
    nprobe: int,
    offsets: dict[int, int],
    embedding_column: str,
    threshold: float,
    threads: int = 1,
) -> pa.Table:
    """Ray task: near-duplicate pairs of this shard's rows (those with a vector: one per exact
    group) against the whole index, as spanning edges (left -> right) of their components."""
    import faiss
    import ray

    faiss.omp_set_num_threads(threads)  # the task's CPU share, not every core of the node
    searched = faiss.deserialize_index(ray.get(index))
    if nprobe:
        faiss.extract_index_ivf(searched).nprobe = nprobe
    valid = table[embedding_column].is_valid().to_numpy(zero_copy_only=False)
    table = table.filter(pa.array(valid))
    positions = positions_of(table, offsets) if table.num_rows else np.zeros(0, np.int64)
    vectors = unit_vectors(table[embedding_column]) if table.num_rows else np.zeros((0, 1), np.float32)
    left, right = spanning_edges(*range_pairs(searched, vectors, positions, threshold))
    return pa.table({"left": pa.array(left, pa.int64()), "right": pa.array(right, pa.int64())})


def rows_at(table: pa.Table, *, offsets: dict[int, int], wanted: Any, embedding_column: str) -> pa.Table:
    """Ray task: position, id and vector of the rows whose position is in `wanted` (sorted)."""
    import ray

    chosen = ray.get(wanted)
    positions = positions_of(table, offsets)
    mine = np.isin(positions, chosen)
    picked = table.filter(pa.array(mine))
    return pa.table({"position": positions[mine], "id": picked["id"], "embedding": picked[embedding_column]})


def mark_duplicates(
    table: pa.Table,
    *,
    offsets: dict[int, int],
    decisions: Any,
    embedding_column: str,
    exact_rule: str,
    near_rule: str,
) -> pa.Table:
    """Ray task of the write pass: each dropped row marked filtered (stage dedup) with
    duplicate_of (the kept row's id), similarity (cosine to it; 1.0 for an exact duplicate) and
    rule; kept rows pass unchanged (nulls in the three columns)."""
    import ray

    found = ray.get(decisions)
    kept_of, exact = found["kept_of"], found["exact"]
    positions = positions_of(table, offsets)
    target = kept_of[positions]
    dropped = target != positions
    at = np.searchsorted(found["kept_positions"], target[dropped])
    kept_ids = [found["kept_ids"][i] for i in at]
    kept_vectors = found["kept_vectors"][at]
    rows = table.filter(pa.array(dropped))
    own = unit_vectors(rows[embedding_column]) if rows.num_rows else np.zeros_like(kept_vectors)
    similarity = np.where(exact[positions[dropped]], 1.0, np.sum(own * kept_vectors, axis=1))
    names = np.where(exact[positions[dropped]], exact_rule, near_rule)
    duplicate_of: list[str | None] = [None] * table.num_rows
    cosine: list[float | None] = [None] * table.num_rows
    rule: list[str | None] = [None] * table.num_rows
    reasons: list[str | None] = [None] * table.num_rows
    for i, row in enumerate(np.flatnonzero(dropped)):
        duplicate_of[row], cosine[row], rule[row] = kept_ids[i], float(similarity[i]), str(names[i])
        reasons[row] = f"{names[i]}: duplicate of {kept_ids[i]} (cosine {similarity[i]:.4f})"
    table = mark_filtered(table, reasons, STAGE)
    table = table.append_column("duplicate_of", pa.array(duplicate_of, table["id"].type))
    table = table.append_column("similarity", pa.array(cosine, pa.float32()))
    return table.append_column("rule", pa.array(rule, pa.string()))
