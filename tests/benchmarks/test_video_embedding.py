"""Smoke test of the embed_videos benchmark: tiny videos, the JSON's shape and frame counts, never
timings; and the synthetic videos' cache."""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import synthetic, video_embedding

SECONDS = 2.0  # two sampled frames a video at 1 fps (t = 0 and 1 s)


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_video_harness_measures_every_figure(tmp_path, tiny_clip):
    out = tmp_path / "videos.json"
    command = [sys.executable, "-m", "benchmarks.run", "embed_videos", "--rows", "2"]
    command += ["--video-seconds", f"{SECONDS:g}", "--video-size", "160x96", "--video-dir", str(tmp_path)]
    command += ["--batch-size", "2", "--model", tiny_clip, "--no-table", "--json", str(out)]
    env = {**os.environ, "RAY_ADDRESS": ""}
    done = subprocess.run(command, capture_output=True, text=True, timeout=280, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert (result["job"], result["unit"], result["rows"]) == ("embed_videos", "sampled frames/s", 4)
    figures = result["figures"]
    assert (figures["rows_out"], figures["sampled_frames"]) == (4, 4)
    assert figures["decoded_frames"] == 2 * SECONDS * synthetic.VIDEO_FPS
    for name in ("decode_ceiling", "decoded_frames_per_s", "model_ceiling", "rayjobs_e2e"):
        assert figures[name] > 0, name
    assert set(result["ratios"]) == {"e2e/model_ceiling", "e2e/decode_ceiling", "e2e/min_ceiling"}
    assert (result["inputs"]["videos"], result["inputs"]["size"]) == (2, "160x96")


def test_video_set_encodes_only_missing_videos(tmp_path):
    listing, videos = video_embedding.video_set(tmp_path, 1, 0.5, (64, 48))
    first = videos[0].stat().st_mtime_ns
    listing, videos = video_embedding.video_set(tmp_path, 2, 0.5, (64, 48))
    assert videos[0].stat().st_mtime_ns == first  # kept, not encoded again
    assert listing.read_text().split() == ["video-000.mp4", "video-001.mp4"]
    assert not list(tmp_path.rglob("*.partial"))
    counts = [
        video_embedding.decode_and_sample(str(path), 1.0, lambda pixels: pixels.shape) for path in videos
    ]
    assert counts == [(15, 1), (15, 1)]  # 0.5 s at 30 fps decoded, the frame at 0 s sampled
