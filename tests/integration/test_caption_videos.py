"""caption_videos end to end on a real local Ray: one caption per scene of synthetic videos whose
cuts are known, each equal to a direct generate() on the frame the row names; a chat VLM per
sampled frame; a file that is not a video is an error row that keeps its `video`."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import rayjobs
from tests.integration.videos import COLOURS, write_video

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FPS = 10  # of the synthetic videos: one frame is 0.1 s
SCENES = {  # video (its path under input.path) -> (seconds, colour) segments
    "cuts.mp4": [(1.0, COLOURS[0]), (0.7, COLOURS[1]), (1.3, COLOURS[2])],
    "sub/two.mp4": [(0.8, COLOURS[3]), (1.2, COLOURS[4])],
}
RUN = ["runtime.progress_bars=false", "model.concurrency=1", "model.batch_size=2"]


def decoded_frames(path: Path) -> list[np.ndarray]:
    """Every frame of the video in stream order, as RGB: what the row's `frame` indexes."""
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def png(pixels: np.ndarray) -> bytes:
    """Lossless, so the direct call sees exactly the decoded frame."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def blip_scenes(local_ray, tmp_path_factory, tiny_blip):
    """One caption_videos run in scenes mode over two videos and a file of random bytes."""
    root = tmp_path_factory.mktemp("caption_videos")
    cuts = {name: write_video(root / "videos" / name, segments, fps=FPS) for name, segments in SCENES.items()}
    (root / "videos" / "random.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    cfg = rayjobs.compose(
        "caption_videos",
        [
            f"input.path={root / 'videos'}",
            f"output.path={root / 'out'}",
            f"model.path={tiny_blip}",
            "model.max_new_tokens=5",
            "job.max_error_fraction=0.5",
            *RUN,
        ],
    )
    return root, cuts, rayjobs.run(cfg)


def test_scenes_mode_captions_each_scene_like_a_direct_generate(blip_scenes, tiny_blip):
    from tests.operators.image.test_image_captioner import direct_captions

    root, cuts, result = blip_scenes
    assert (result.rows_written, result.rows_errored, result.ok) == (5, 1, True)
    data = pq.read_table(root / "out" / "data")
    lineage = ["id", "parent_id", "index"]  # the writer's fan-out columns: parent_id is the range
    frame = ["video", "t_start", "t_end", "frame", "width", "height"]
    assert data.column_names == [*lineage, *frame, "caption", "generated_tokens"]
    for name, segments in SCENES.items():
        rows = sorted((r for r in data.to_pylist() if r["video"] == name), key=lambda r: r["t_start"])
        starts = [0.0, *cuts[name]]
        assert len(rows) == len(segments) == len(starts)  # one row per scene
        assert [row["id"] for row in rows] == [f"{name}@{row['t_start']:.3f}" for row in rows]
        assert np.allclose([row["t_start"] for row in rows], starts, atol=1.0 / FPS + 1e-6)
        assert [(row["width"], row["height"]) for row in rows] == [(64, 48)] * len(rows)
        frames = decoded_frames(root / "videos" / name)
        # The tiny model captions every image alike: the frame's colour shows it is its scene's.
        centres = [frames[row["frame"]][24, 32].astype(int) for row in rows]
        assert all(np.abs(got - want).max() < 16 for got, (_, want) in zip(centres, segments, strict=True))
        assert all(row["t_start"] <= row["frame"] / FPS < row["t_end"] for row in rows)
        shown = [png(frames[row["frame"]]) for row in rows]
        assert [row["caption"] for row in rows] == direct_captions(tiny_blip, shown, None, 5)
        assert all(0 < row["generated_tokens"] <= 5 for row in rows)


def test_a_file_of_random_bytes_is_an_error_row_with_its_video(blip_scenes):
    root, _, _ = blip_scenes
    errors = pq.read_table(root / "out" / "errors").to_pylist()
    assert [(error["video"], error["stage"]) for error in errors] == [("random.mp4", "decode")]
    assert errors[0]["reason"] and errors[0]["id"].startswith("random.mp4")


def test_a_chat_vlm_captions_every_sampled_frame_in_fps_mode(local_ray, tmp_path, tiny_smolvlm):
    from tests.operators.image.test_chat_captioner import direct_caption

    write_video(tmp_path / "videos" / "clip.mp4", [(1.0, COLOURS[0]), (1.0, COLOURS[2])], fps=FPS)
    cfg = rayjobs.compose(
        "caption_videos",
        [
            "model=smolvlm_256m",
            f"input.path={tmp_path / 'videos'}",
            f"output.path={tmp_path / 'out'}",
            f"model.path={tiny_smolvlm}",
            "model.max_new_tokens=4",
            "model.prompt='what is shown?'",
            "video.scenes=false",
            "video.fps=2",
            "preprocess.max_side=32",
            *RUN,
        ],
    )
    result = rayjobs.run(cfg)
    assert (result.rows_written, result.rows_errored, result.ok) == (4, 0, True)
    rows = sorted(pq.read_table(tmp_path / "out" / "data").to_pylist(), key=lambda r: r["t_start"])
    assert [row["id"] for row in rows] == [f"clip.mp4@{t:.3f}" for t in (0.0, 0.5, 1.0, 1.5)]
    assert [row["index"] for row in rows] == [0, 1, 2, 3]
    frames = decoded_frames(tmp_path / "videos" / "clip.mp4")
    for row in rows:
        image = Image.fromarray(frames[row["frame"]])
        image.thumbnail((32, 32), Image.Resampling.BICUBIC)  # preprocess.max_side, as the job shrinks
        assert row["caption"] == direct_caption(tiny_smolvlm, image, "what is shown?", 4)
        assert 0 < row["generated_tokens"] <= 4


def test_frame_windows_of_embed_videos_are_refused_before_ray(tmp_path):
    paths = [f"input.path={tmp_path}", f"output.path={tmp_path / 'out'}"]
    cfg = rayjobs.compose("caption_videos", [*paths, "video.scenes=false", "+video.clip_seconds=10"])
    with pytest.raises(rayjobs.ConfigError) as caught:
        rayjobs.run(cfg)
    assert caught.value.key == "video.clip_seconds"
