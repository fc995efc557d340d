"""embed_videos end to end on a real local Ray: frames sampled at the expected times, embeddings
equal to a direct model call on the decoded frame, scenes, every broken kind in errors/, and a
SIGKILL mid-run followed by a re-run giving each (video, index) exactly once."""

import io
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import rayjobs
from operators.video.decode_video import decode_frames, open_video
from tests.integration.reference import image_vectors, min_cosine
from tests.integration.test_resume import kill_then_rerun
from tests.integration.videos import COLOURS, broken_videos, write_video

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
SEGMENTS = [(2, COLOURS[0]), (1.5, COLOURS[1]), (2.5, COLOURS[2])]  # cuts at 2.0 and 3.5 s


def settings(videos, out, model, *extra: str) -> list[str]:
    return [
        f"input.path={videos}",
        f"output.path={out}",
        f"model.path={model}",
        "model.batch_size=8",
        "runtime.progress_bars=false",
        *extra,
    ]


def frame_png(path, number: int) -> bytes:
    """Frame `number` of a video decoded directly with PyAV, upright, as a lossless PNG."""
    with open_video(str(path)) as container:
        for frame in decode_frames(container):
            if frame.number == number:
                out = io.BytesIO()
                Image.fromarray(frame.pixels()).save(out, format="PNG")
                return out.getvalue()
    raise AssertionError(f"{path} has no frame {number}")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    write_video(folder / "a.mp4", SEGMENTS, gop=7)
    write_video(folder / "sub" / "b.webm", [(3, COLOURS[3]), (2, COLOURS[4])], codec="libvpx-vp9")
    write_video(folder / "rot.mp4", [(1, COLOURS[5])], rotation=-90)
    write_video(folder / "long.mp4", [(4, COLOURS[0]), (4, COLOURS[1])], gop=12)  # 3 ranges of 3 s
    broken = broken_videos(folder / "bad", folder / "a.mp4")
    return folder, broken


def test_frames_at_the_expected_times_embedded_as_a_direct_model_call(local_ray, videos, tmp_path, tiny_clip):
    folder, broken = videos
    out = tmp_path / "out"
    cfg = rayjobs.compose(
        "embed_videos",
        settings(
            folder,
            out,
            tiny_clip,
            "video.fps=2",
            "input.split_seconds=3",
            "input.shard_seconds=3",  # long.mp4's three ranges in three tasks
            "job.max_error_fraction=0.5",
        ),
    )
    result = rayjobs.run(cfg)

    rows = pq.read_table(out / "data").to_pylist()
    by_video: dict[str, list[dict]] = {}
    for row in rows:
        by_video.setdefault(row["video"], []).append(row)
    lengths = {"a.mp4": 6, "sub/b.webm": 5, "rot.mp4": 1, "long.mp4": 8, "bad/lying.mp4": None}
    assert set(by_video) == set(lengths)
    for video, seconds in lengths.items():
        found = sorted(by_video[video], key=lambda r: r["t_start"])
        if seconds is None:  # the truncated file: the frames it holds, from 0 s on
            assert 8 <= len(found) <= 12 and found[0]["t_start"] == 0.0
            continue
        assert [r["index"] for r in found] == list(range(seconds * 2)), video
        # The first frame at or after each half second: 10 fps, so within one frame (0.1 s).
        assert [r["t_start"] for r in found] == pytest.approx([i / 2 for i in range(seconds * 2)], abs=0.1)
        assert all(r["t_end"] == pytest.approx(r["t_start"] + 0.5) for r in found)
        assert all(r["id"] == f"{video}@{r['t_start']:.3f}" for r in found)
    assert {(r["width"], r["height"]) for r in by_video["rot.mp4"]} == {(48, 64)}
    assert {(r["width"], r["height"]) for r in by_video["a.mp4"]} == {(64, 48)}

    # Each sampled frame's vector equals the model's on that frame decoded here (rotated one too).
    picked = [
        by_video["a.mp4"][3],
        by_video["sub/b.webm"][7],
        by_video["rot.mp4"][0],
        by_video["long.mp4"][13],
    ]
    direct = image_vectors(tiny_clip, [frame_png(folder / r["video"], r["frame"]) for r in picked])
    assert min_cosine(np.stack([r["embedding"] for r in picked]), direct) >= 0.9999

    errors = pq.read_table(out / "errors").to_pylist()
    reasons = {e["video"]: e["reason"] for e in errors}
    assert set(reasons) == {f"bad/{name}" for name in broken}
    assert reasons["bad/empty.mp4"] == "ValueError: empty file (0 bytes)"
    assert reasons["bad/audio.mp4"] == "ValueError: no video stream (the file holds audio)"
    assert "unsupported codec" in reasons["bad/codec.mkv"]
    assert (
        "InvalidDataError" in reasons["bad/random.mp4"] and "InvalidDataError" in reasons["bad/truncated.mp4"]
    )
    lying = sorted(e["id"] for e in errors if e["video"] == "bad/lying.mp4")
    assert lying == ["bad/lying.mp4@6s-9s", "bad/lying.mp4@9s-end"]  # past the frames it holds
    assert all("the video ends before it" in e["reason"] for e in errors if e["video"] == "bad/lying.mp4")
    assert {e["stage"] for e in errors} == {"decode"}
    assert (result.rows_written, result.rows_errored) == (len(rows), len(errors))
    assert result.stats["usage"]["frames"] == len(rows) + len(errors)


def test_scene_mode_finds_the_known_cuts(local_ray, videos, tmp_path, tiny_clip):
    folder, _ = videos
    out = tmp_path / "out"
    cfg = rayjobs.compose(
        "embed_videos",
        settings(folder / "a.mp4", out, tiny_clip, "video.scenes=true", "input.split_seconds=60"),
    )
    result = rayjobs.run(cfg)

    rows = sorted(pq.read_table(out / "data").to_pylist(), key=lambda r: r["t_start"])
    assert result.rows_written == 3
    assert [r["t_start"] for r in rows] == pytest.approx([0.0, 2.0, 3.5], abs=0.1)
    assert [r["t_end"] for r in rows] == pytest.approx([2.0, 3.5, 6.0], abs=0.1)
    assert all(r["t_start"] <= r["frame"] / 10 < r["t_end"] for r in rows)
    direct = image_vectors(tiny_clip, [frame_png(folder / "a.mp4", r["frame"]) for r in rows])
    assert min_cosine(np.stack([r["embedding"] for r in rows]), direct) >= 0.9999


def test_bad_video_settings_fail_before_ray(videos, tmp_path, tiny_clip):
    from rayjobs.config.config_error import ConfigError

    folder, _ = videos
    for override, key in [
        ("video.fps=0", "video.fps"),
        ("video.scene_threshold=2", "video.scene_threshold"),
        ("video.max_frames=-1", "video.max_frames"),
        ("input.split_seconds=0", "input.split_seconds"),
        ("input.shard_seconds=-1", "input.shard_seconds"),
        ("video.clip_seconds=7", "input.split_seconds"),  # 300 s ranges: windows would span two
        ("video.fsp=2", "video.fsp"),
        ("video.fps=60", "input.split_seconds"),  # 18,000 samples a 300 s range: over max_frames
        ("model.decode=device", "model.decode"),
    ]:
        with pytest.raises(ConfigError) as caught:
            rayjobs.run(
                rayjobs.compose("embed_videos", settings(folder, tmp_path / "out", tiny_clip, override))
            )
        assert caught.value.key == key
    assert not (tmp_path / "out").exists()


def test_sigkill_then_rerun_gives_each_video_index_exactly_once(videos, tmp_path, tiny_clip):
    folder = tmp_path / "many"
    for i in range(6):
        write_video(folder / f"v{i}.mp4", [(3, COLOURS[i]), (3, COLOURS[(i + 1) % 6])], gop=5)
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "rayjobs.embed_videos",
        *settings(
            folder,
            out,
            tiny_clip,
            "video.fps=4",
            "input.split_seconds=1",
            "input.shard_rows=1",
            "runtime.num_cpus=2",
            "job.progress_interval_s=0.5",
        ),
    ]
    kill_then_rerun(command, out, lambda: len(list(out.glob("data/*.parquet"))) >= 3, "while_writing")

    rows = pq.read_table(out / "data").to_pylist()
    pairs = [(r["video"], r["index"]) for r in rows]
    assert len(pairs) == len(set(pairs)) == 6 * 24
    assert set(pairs) == {(f"v{i}.mp4", k) for i in range(6) for k in range(24)}
    assert not (out / "errors").exists() or pq.read_table(out / "errors").num_rows == 0


def test_videos_read_from_s3_and_listed_in_a_text_file(local_ray, videos, s3, tmp_path, tiny_clip):
    """Videos on S3 (moto on 127.0.0.1), named by a .txt list: seeks go through fsspec files."""
    from tests.integration.conftest import storage_overrides

    folder, _ = videos
    fs, options = s3
    fs.put(str(folder / "a.mp4"), "rayjobs-test/videos/a.mp4")
    fs.put(str(folder / "long.mp4"), "rayjobs-test/videos/clips/long.mp4")
    with fs.open("rayjobs-test/videos/list.txt", "w") as handle:
        handle.write("# two videos\na.mp4\nclips/long.mp4\n")
    cfg = rayjobs.compose(
        "embed_videos",
        settings(
            "s3://rayjobs-test/videos/list.txt",
            "s3://rayjobs-test/out/videos",
            tiny_clip,
            "input.split_seconds=3",
            *storage_overrides(options),
        ),
    )
    result = rayjobs.run(cfg)

    table = pq.read_table("rayjobs-test/out/videos/data", filesystem=fs)
    ids = sorted(table["id"].to_pylist())
    assert (result.rows_written, result.rows_errored) == (14, 0)
    assert ids == sorted([f"a.mp4@{t}.000" for t in range(6)] + [f"clips/long.mp4@{t}.000" for t in range(8)])


def test_clip_windows_average_their_frames(local_ray, videos, tmp_path, tiny_clip):
    """video.clip_seconds=2 at 2 fps: one row per 2 s window, the unit mean of its 4 frames' vectors."""
    folder, _ = videos
    out = tmp_path / "out"
    extra = ("video.fps=2", "video.clip_seconds=2", "input.split_seconds=4", "model.batch_size=2")
    result = rayjobs.run(rayjobs.compose("embed_videos", settings(folder / "a.mp4", out, tiny_clip, *extra)))

    rows = sorted(pq.read_table(out / "data").to_pylist(), key=lambda r: r["t_start"])
    assert result.rows_written == 3
    assert [(r["index"], r["t_start"], r["t_end"], r["frame_count"]) for r in rows] == [
        (0, 0.0, 2.0, 4),
        (1, 2.0, 4.0, 4),
        (2, 4.0, 6.0, 4),
    ]
    for row in rows:
        frames = [round(10 * (row["t_start"] + k / 2)) for k in range(4)]
        direct = image_vectors(tiny_clip, [frame_png(folder / "a.mp4", number) for number in frames])
        mean = direct.mean(axis=0)
        assert min_cosine(np.asarray([row["embedding"]]), (mean / np.linalg.norm(mean))[None]) >= 0.9999
