"""An index folder opened for queries: by text, by image or by vector, with metadata filters and
`collapse` (the best row per value of a column, e.g. one frame per video).

Used by `python -m rayjobs.search`, by `rayjobs.search(...)` in a notebook and by the Ray Serve
deployment of `rayjobs.serve_index`. Everything a query returns comes from the index's own
items table, and files (images, videos) are only ever read for items in it, under the root the
index recorded.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from rayjobs.config.config_error import ConfigError
from rayjobs.config.optional_deps import require
from rayjobs.index.index_files import ITEMS_DIR, POSITION, RECORD, load_index, prepare_vectors
from rayjobs.index.index_spec import IVF_KINDS, IndexSpec
from rayjobs.index.query_encoder import QueryEncoder, QueryError
from rayjobs.io.storage import filesystem, join, read_bytes
from rayjobs.pipeline import run_record

MAX_K = 1000
QUERY_ATTRS = ("truncated", "query_tokens", "token_limit")  # DataFrame.attrs of a text search


class SearchIndex:
    def __init__(self, path: str, storage_options: Mapping[str, Any] | None = None) -> None:
        require("faiss", "index", key="index.path")  # search, serve_index and the notebook open indexes here
        fs, root = filesystem(path, storage_options)
        if not run_record.has_success(fs, root):
            raise ConfigError(
                "index.path", f"{path!r} holds no finished index (build one: python -m rayjobs.build_index)"
            )
        self.path = path
        self.info: dict[str, Any] = json.loads(read_bytes(fs, join(root, RECORD)))
        self.spec = IndexSpec(**self.info["spec"])
        self.index = load_index(fs, root)
        import faiss

        if self.spec.kind in IVF_KINDS:
            faiss.extract_index_ivf(self.index).nprobe = self.spec.nprobe
        elif self.spec.kind == "hnsw":
            faiss.downcast_index(self.index.index).hnsw.efSearch = self.spec.ef_search
        items = pq.read_table(join(root, ITEMS_DIR), filesystem=fs).to_pandas()
        self.items = items.set_index(POSITION).sort_index()
        self.columns: list[str] = list(self.info.get("columns") or [])
        self.encoder = QueryEncoder(self.info.get("model") or {})

    @property
    def rows(self) -> int:
        return int(self.index.ntotal)

    @property
    def image_root(self) -> str | None:
        return (self.info.get("source") or {}).get("image_root")

    @property
    def video_root(self) -> str | None:
        return (self.info.get("source") or {}).get("video_root")

    @property
    def videos(self) -> bool:
        """Items are frames of video files (embed_videos): they have a video and a time."""
        return bool(self.video_root) and {"video", "t_start"} <= set(self.columns)

    def search_text(
        self,
        query: str,
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        collapse: str | None = None,
    ) -> pd.DataFrame:
        """Top k items for a text query; `attrs` say whether it was cut to the model's token limit."""
        if not query or not query.strip():
            raise QueryError("empty query")
        self.check_collapse(collapse)  # before the model loads: a typo costs nothing
        encoded = self.encoder.encode_text(query)
        found = self.search_vector(encoded.vector, k, filters, collapse)
        # On the frame, not in a column: the notebook, the CLI and HTTP all read the same three keys.
        found.attrs.update(
            truncated=encoded.truncated, query_tokens=encoded.tokens, token_limit=encoded.limit
        )
        return found

    def search_image(
        self,
        data: bytes,
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        collapse: str | None = None,
    ) -> pd.DataFrame:
        self.check_collapse(collapse)
        return self.search_vector(self.encoder.image(data), k, filters, collapse)

    def search_vector(
        self,
        vector: np.ndarray,
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        collapse: str | None = None,
    ) -> pd.DataFrame:
        """Top k items (rank, position, id, score, metadata); `filters`: column -> required value;
        `collapse`: a column whose values appear once each, on their best-scoring row."""
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= MAX_K:
            raise QueryError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
        filters = dict(filters or {})
        unknown = sorted(set(filters) - set(self.columns) - {"id"})
        if unknown:
            raise QueryError(f"no metadata column {unknown[0]!r} to filter on (columns: {self.columns})")
        self.check_collapse(collapse)
        query = prepare_vectors(np.asarray(vector, dtype=np.float32).reshape(1, -1), self.spec)
        if query.shape[1] != self.spec.dim:
            raise QueryError(f"query vector has {query.shape[1]} dimensions, the index {self.spec.dim}")
        narrowed = bool(filters) or collapse is not None
        fetch = k if not narrowed else min(self.rows, k * 10)
        while True:  # filters and collapse drop candidates: fetch more until k remain or all were seen
            scores, positions = self.index.search(query, max(1, min(fetch, self.rows)))
            found = self._rows(scores[0], positions[0], filters, collapse)
            if len(found) >= k or fetch >= self.rows or not narrowed:
                break
            fetch *= 4
        found = found.head(k).reset_index(drop=True)
        found.insert(0, "rank", np.arange(1, len(found) + 1))
        return found

    def check_collapse(self, collapse: str | None) -> None:
        """QueryError unless `collapse` is None or a column the results carry."""
        if collapse is None:
            return
        if collapse not in [*self.columns, "id"]:
            named = str(collapse)[:50]
            raise QueryError(f"no metadata column {named!r} to collapse on (columns: {self.columns})")

    def _rows(
        self, scores: np.ndarray, positions: np.ndarray, filters: dict[str, Any], collapse: str | None
    ) -> pd.DataFrame:
        keep = positions >= 0  # faiss pads with -1 when it finds fewer than asked
        picked = self.items.loc[positions[keep]].reset_index()
        picked.insert(2, "score", scores[keep].astype(float))
        for column, value in filters.items():
            picked = picked[picked[column].astype(str) == str(value)]
        if collapse is not None:  # candidates come best first: the first of each value is its best
            seen = picked[collapse].astype(str).duplicated()  # as text, as filters compare (lists too)
            picked = picked[~seen]
        return picked

    def image_path(self, position: int) -> str:
        """The file of an indexed image: its id under the recorded root, and nothing else."""
        if not self.image_root:
            raise QueryError("this index's items are not image files")
        return self._file_under(self.image_root, position, "id", "image")

    def video_path(self, position: int) -> str:
        """The video file of an indexed frame: its `video` under the recorded root, and nothing else."""
        if not self.videos:
            raise QueryError("this index's items are not video frames")
        return self._file_under(str(self.video_root), position, "video", "video")

    def start_time(self, position: int) -> float:
        """Seconds into its video of an indexed frame (its t_start)."""
        if not self.videos or position not in self.items.index:
            raise QueryError(f"no video item {position}")
        return float(self.items.loc[position, "t_start"])

    def _file_under(self, root: str, position: int, column: str, what: str) -> str:
        if position not in self.items.index:
            raise QueryError(f"no item {position}")
        name = self.items.loc[position, column]
        if not isinstance(name, str) or not name:
            raise QueryError(f"item {position} names no {what} file")
        relative = posixpath.normpath(name)
        # Absolute names and URLs (a list of videos may hold them) stay unserved: only the root is.
        if relative.startswith(("../", "/")) or relative == ".." or "://" in name:
            raise QueryError(f"item {position} is outside the {what} folder")
        return join(root, relative)
