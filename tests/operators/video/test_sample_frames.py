"""sample_frames on real video files, no Ray: ranges fan out into frame rows with the run
contract's columns, and a stream that breaks mid-range keeps the frames before the break."""

import av
import pyarrow as pa
import pytest

import operators.video.sample_frames as sample_frames_module
from operators.fan_out import PARTS
from operators.row_errors import ERROR
from operators.video.sample_frames import sample_frames
from rayjobs.config.run_spec import InputSpec
from rayjobs.io import video_files
from rayjobs.io.shards import ReadOptions
from rayjobs.io.storage import filesystem
from tests.integration.videos import COLOURS, write_video


def range_rows(folder, split: float = 2.0) -> pa.Table:
    """What the read tasks hand sample_frames: one row per (video, range)."""
    spec = InputSpec.parse({"path": str(folder), "format": "videos", "split_seconds": split})
    fs, root = filesystem(str(folder))
    plan = video_files.plan(fs, root, spec)
    return pa.concat_tables(video_files.read(s, ReadOptions(spec, plan.root, ())) for s in plan.shards)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    write_video(folder / "a.mp4", [(2, COLOURS[0]), (3, COLOURS[1])])
    (folder / "bad.mp4").write_bytes(b"not a video at all")
    return folder


def test_ranges_fan_out_into_frames_that_count_back_to_their_range(folder):
    out = sample_frames(range_rows(folder), fps=1.0, max_side=32)
    rows = out.select(["id", "parent_id", "index", "t_start", "video", PARTS, ERROR]).to_pylist()
    frames = [r for r in rows if r[ERROR] is None]
    assert [r["id"] for r in frames] == [f"a.mp4@{t}.000" for t in range(5)]
    assert [r["parent_id"] for r in frames] == ["a.mp4@0s-2s"] * 2 + ["a.mp4@2s-4s"] * 2 + ["a.mp4@4s-end"]
    assert [r[PARTS] for r in frames] == [2, 2, 2, 2, 1]  # each child counts 1/k of its range
    [bad] = [r for r in rows if r[ERROR] is not None]
    assert (bad["id"], bad["video"], bad[PARTS]) == ("bad.mp4@0s-end", "bad.mp4", 1)
    # No model: whole frames, bounded by max_side.
    assert out["image_shape"].to_pylist()[0] == [24, 32, 3]


def test_a_stream_broken_mid_range_keeps_the_frames_before_it(folder, monkeypatch):
    real = sample_frames_module.decode_frames

    def breaks_after_one_second(container, start=0.0, threads=0):
        for frame in real(container, start, threads):
            if frame.time > 1.05:
                raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")
            yield frame

    monkeypatch.setattr(sample_frames_module, "decode_frames", breaks_after_one_second)
    table = range_rows(folder, split=60).filter(pa.compute.equal(pa.compute.field("video"), "a.mp4"))
    out = sample_frames(table, fps=2.0, max_side=32)

    rows = out.select(["id", "parent_id", "t_start", PARTS, ERROR]).to_pylist()
    assert [r["id"] for r in rows] == ["a.mp4@0.000", "a.mp4@0.500", "a.mp4@1.000", "a.mp4@0s-end"]
    assert all(r[PARTS] == 4 for r in rows)  # three frames and the failure: one input row
    assert [r[ERROR] for r in rows[:3]] == [None] * 3
    assert rows[3][ERROR].startswith("decoding stopped after 1.000 s: InvalidDataError")
