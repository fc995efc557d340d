"""What an index folder holds, and the faiss calls that make and fill its pieces.

<index.path>/index.faiss          the merged index; ids are row positions 0..n-1
<index.path>/items/part-*.parquet position, id and metadata columns of every row
<index.path>/index.json           kind, parameters, the embedding model's identity, the run
<index.path>/parts/               per-shard pieces while building (removed when merged)
<index.path>/_SUCCESS             written last
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from operators.arrow_tensors import arrow_to_tensor
from rayjobs.index.index_spec import IndexSpec
from rayjobs.io.storage import filesystem, join, read_bytes, write_bytes, write_parquet

INDEX_FILE = "index.faiss"
ITEMS_DIR = "items"
PARTS_DIR = "parts"
RECORD = "index.json"
POSITION = "position"


def empty_index(spec: IndexSpec):
    import faiss

    return faiss.index_factory(spec.dim, spec.factory(), faiss.METRIC_INNER_PRODUCT)


def prepare_vectors(vectors: np.ndarray, spec: IndexSpec) -> np.ndarray:
    """float32, C-contiguous, unit length when the index compares by cosine."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if spec.normalize:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
    return vectors


def train(spec: IndexSpec, sample: np.ndarray) -> bytes:
    """An empty index trained on `sample` (flat and HNSW need no training), serialised."""
    import faiss

    index = empty_index(spec)
    if not index.is_trained:
        index.train(prepare_vectors(sample, spec))
    return faiss.serialize_index(index).tobytes()


def fill_shard(
    table: pa.Table,
    *,
    trained: bytes,
    spec: dict[str, Any],
    offsets: dict[int, int],
    embedding_column: str,
    columns: list[str],
    path: str,
    storage_options: dict[str, Any] | None = None,
    threads: int = 1,
) -> pa.Table:
    """Ray task: add one shard's vectors to a copy of the trained index; write it and the items.

    Row positions are the shard's offset in the input plus the row: the same on every retry, so
    a retried task rewrites the same two files."""
    import faiss

    faiss.omp_set_num_threads(threads)  # the task's CPU share, not every core of the node
    index_spec = IndexSpec(**spec)
    shard = int(table["_shard"][0].as_py())
    table = table.filter(table[embedding_column].is_valid())  # a row without a vector cannot be found
    positions = offsets[shard] + table["_row"].to_numpy().astype(np.int64)
    vectors = prepare_vectors(arrow_to_tensor(table[embedding_column]), index_spec)
    index = faiss.deserialize_index(np.frombuffer(trained, dtype=np.uint8))
    index.add_with_ids(vectors, positions)
    fs, root = filesystem(path, storage_options)
    name = f"part-{shard:06d}"
    write_bytes(fs, join(root, PARTS_DIR, f"{name}.faiss"), faiss.serialize_index(index).tobytes())
    items = {POSITION: pa.array(positions), "id": table["id"]}
    for column in columns:
        items[column] = table[column]
    write_parquet(fs, join(root, ITEMS_DIR, f"{name}.parquet"), pa.table(items), "zstd")
    return pa.table({"shard": [shard], "rows": [table.num_rows]})


def fill_spec(spec: IndexSpec) -> IndexSpec:
    """What the shard tasks fill: HNSW graphs cannot be merged, so its shards hold flat vectors."""
    return IndexSpec("flat", spec.dim, spec.normalize) if spec.kind == "hnsw" else spec


def merge_parts(fs, root: str, shards: list[int], spec: IndexSpec):
    """One index from the shards' pieces, read one at a time (in shard order)."""
    import faiss

    merged = empty_index(spec) if spec.kind == "hnsw" else None
    if merged is not None:
        faiss.downcast_index(merged.index).hnsw.efSearch = spec.ef_search
    for shard in shards:
        part = _deserialize(read_bytes(fs, join(root, PARTS_DIR, f"part-{shard:06d}.faiss")))
        if spec.kind == "hnsw":  # the graph is built here, from each shard's flat vectors in turn
            ids = faiss.vector_to_array(part.id_map).astype(np.int64)
            merged.add_with_ids(part.index.reconstruct_n(0, part.ntotal), ids)
        elif merged is None:
            merged = part
        else:
            merged.merge_from(part, 0)
    return merged


def save_index(fs, root: str, index) -> None:
    import faiss

    write_bytes(fs, join(root, INDEX_FILE), faiss.serialize_index(index).tobytes())


def load_index(fs, root: str):
    return _deserialize(read_bytes(fs, join(root, INDEX_FILE)))


def _deserialize(data: bytes):
    import faiss

    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
