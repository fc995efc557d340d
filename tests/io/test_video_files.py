"""Planning video inputs: ranges of input.split_seconds as rows, shards that pack short videos and
split long ones, and lists of videos (.txt, .parquet)."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayjobs.config.config_error import ConfigError
from rayjobs.config.run_spec import InputSpec
from rayjobs.io.read_input import plan_input
from tests.integration.videos import COLOURS, write_video


def plan(path, **options):
    return plan_input(InputSpec.parse({"path": str(path), "format": "videos", **options}))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    write_video(folder / "long.mp4", [(7, COLOURS[0])], fps=5)
    for i in range(3):
        write_video(folder / "clips" / f"c{i}.webm", [(1, COLOURS[i])], fps=5, codec="libvpx-vp9")
    (folder / "notes.txt").write_text("not a video")
    (folder / "_hidden.mp4").write_bytes(b"")
    return folder


def test_long_videos_are_split_and_short_ones_share_a_shard(folder):
    found = plan(folder, split_seconds=3, shard_seconds=3, shard_rows=8)
    spans = [[(name, start, end) for name, _, start, end in shard.spans] for shard in found.shards]
    assert spans == [
        [("clips/c0.webm", 0, None), ("clips/c1.webm", 0, None), ("clips/c2.webm", 0, None)],
        [("long.mp4", 0, 3.0)],
        [("long.mp4", 3.0, 6.0)],
        [("long.mp4", 6.0, None)],  # the last range runs to the stream's end
    ]
    assert (found.rows, found.files) == (6, 4)
    assert [len(s.spans) for s in plan(folder, split_seconds=3, shard_seconds=3, shard_rows=2).shards] == [
        2,
        1,
        1,
        1,
        1,
    ]
    # Up to shard_seconds of video per task: 10 s of video all in one shard by default.
    assert [len(s.spans) for s in plan(folder, split_seconds=3).shards] == [6]


def test_lists_of_videos_in_text_and_parquet(folder):
    (folder / "list.txt").write_text("# picked\nlong.mp4\n\nclips/c1.webm\nlong.mp4\n")
    listed = plan(folder / "list.txt", split_seconds=300)
    assert [span[0] for shard in listed.shards for span in shard.spans] == ["long.mp4", "clips/c1.webm"]
    pq.write_table(pa.table({"file": ["clips/c2.webm", None, "long.mp4"]}), folder / "list.parquet")
    table = plan(folder / "list.parquet", video_column="file")
    assert [span[0] for shard in table.shards for span in shard.spans] == ["clips/c2.webm", "long.mp4"]
    with pytest.raises(ConfigError) as caught:
        plan(folder / "list.parquet")  # video_column defaults to "path"
    assert caught.value.key == "input.video_column"


def test_a_folder_without_videos_is_a_config_error(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ConfigError) as caught:
        plan(tmp_path)
    assert caught.value.key == "input.path" and "no videos" in str(caught.value)
