"""SearchIndex on a small hand-made index folder (no Ray): collapse keeps the best row per value and
still returns k rows, and indexed files are only ever located under the recorded root."""

import json

import numpy as np
import pyarrow as pa
import pytest

from rayjobs.index.index_files import ITEMS_DIR, POSITION, RECORD, empty_index, prepare_vectors, save_index
from rayjobs.index.index_spec import IndexSpec
from rayjobs.index.query_encoder import QueryError
from rayjobs.index.search_index import SearchIndex
from rayjobs.io.storage import filesystem, write_bytes, write_parquet
from rayjobs.pipeline import run_record

DIM = 8


def write_index(folder, vectors: np.ndarray, items: dict[str, list], source: dict | None = None) -> str:
    """An index folder as build_index writes it: flat index, items table, index.json, _SUCCESS."""
    spec = IndexSpec("flat", DIM, True)
    index = empty_index(spec)
    index.add_with_ids(prepare_vectors(vectors, spec), np.arange(len(vectors), dtype=np.int64))
    fs, root = filesystem(str(folder))
    save_index(fs, root, index)
    table = pa.table({POSITION: np.arange(len(vectors)), **items})
    write_parquet(fs, f"{root}/{ITEMS_DIR}/part-000000.parquet", table)
    columns = [name for name in items if name != "id"]
    info = {"spec": spec.as_dict(), "columns": columns, "model": {"job": "embed_videos"}}
    info["source"] = source or {}
    write_bytes(fs, f"{root}/{RECORD}", json.dumps(info).encode())
    run_record.write_success(fs, root)
    return str(folder)


@pytest.fixture
def frames(tmp_path) -> tuple[SearchIndex, np.ndarray]:
    """60 frames of video a (all near the query), then 5 of b and 5 of c (further away)."""
    rng = np.random.default_rng(0)
    query = np.eye(DIM, dtype=np.float32)[0]
    noise = {"a": 0.05, "b": 0.5, "c": 0.8}
    videos = ["a"] * 60 + ["b"] * 5 + ["c"] * 5
    vectors = np.stack([query + noise[v] * rng.normal(size=DIM) for v in videos]).astype(np.float32)
    items = {
        "id": [f"{v}.mp4@{i:.3f}" for i, v in enumerate(videos)],
        "video": [f"{v}.mp4" for v in videos],
        "t_start": [float(i) for i in range(len(videos))],
        "lang": ["en" if i % 2 else "fr" for i in range(len(videos))],
    }
    path = write_index(tmp_path / "index", vectors, items, {"video_root": str(tmp_path / "videos")})
    return SearchIndex(path), query


def test_collapse_keeps_each_videos_best_row_and_fetches_past_one_videos_frames(frames):
    index, query = frames
    found = index.search_vector(query, k=3, collapse="video")
    assert found["video"].tolist() == ["a.mp4", "b.mp4", "c.mp4"]  # past the first 30 candidates (all a)
    assert found["rank"].tolist() == [1, 2, 3] and found["score"].is_monotonic_decreasing
    every = index.search_vector(query, k=index.rows)
    assert found["score"].tolist() == pytest.approx(every.groupby("video")["score"].max().sort_values()[::-1])
    best = [every[every["video"] == video]["position"].iloc[0] for video in found["video"]]
    assert found["position"].tolist() == best


def test_collapse_returns_fewer_rows_only_when_the_index_has_fewer_values(frames):
    index, query = frames
    assert len(index.search_vector(query, k=10, collapse="video")) == 3
    both = index.search_vector(query, k=10, filters={"lang": "en"}, collapse="video")
    assert both["video"].tolist() == ["a.mp4", "b.mp4", "c.mp4"] and set(both["lang"]) == {"en"}
    assert len(index.search_vector(query, k=2, collapse="lang")) == 2
    assert len(index.search_vector(query, k=5, collapse="id")) == 5  # ids are distinct: no change


@pytest.mark.parametrize("column", ["nosuch", "score", "position", ""])
def test_collapse_on_an_unknown_column_is_one_clear_line(frames, column):
    index, query = frames
    with pytest.raises(QueryError, match=f"no metadata column {column!r} to collapse on") as raised:
        index.search_vector(query, k=3, collapse=column)
    assert "\n" not in str(raised.value) and "video" in str(raised.value)  # it lists the columns


def test_video_files_come_from_the_items_table_under_the_recorded_root(tmp_path):
    names = ["a.mp4", "sub/../b.webm", "../outside.mp4", "/etc/passwd", "s3://bucket/x.mp4", ""]
    items = {
        "id": [f"{n}@0.000" for n in names],
        "video": names,
        "t_start": [0.5] * len(names),
    }
    root = str(tmp_path / "videos")
    index = SearchIndex(write_index(tmp_path / "index", np.eye(len(names), DIM), items, {"video_root": root}))
    assert index.videos and index.video_path(0) == f"{root}/a.mp4" and index.video_path(1) == f"{root}/b.webm"
    assert index.start_time(0) == 0.5
    for position in (2, 3, 4):
        with pytest.raises(QueryError, match="outside the video folder"):
            index.video_path(position)
    with pytest.raises(QueryError, match="names no video file"):
        index.video_path(5)
    with pytest.raises(QueryError, match="no item 99"):
        index.video_path(99)
    with pytest.raises(QueryError, match="not image files"):
        index.image_path(0)


def test_an_index_without_a_video_root_serves_no_videos(tmp_path):
    items = {"id": ["a.mp4@0.000"], "video": ["a.mp4"], "t_start": [0.0]}
    index = SearchIndex(write_index(tmp_path / "index", np.eye(1, DIM), items))
    assert not index.videos
    with pytest.raises(QueryError, match="not video frames"):
        index.video_path(0)
