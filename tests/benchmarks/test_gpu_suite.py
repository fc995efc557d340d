"""The one-shot GPU suite on a CPU: its repeated-JPEG input, its step runner and suite.json at tiny
size, never timings."""

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from benchmarks import gpu_suite, synthetic


def test_distinct_images_cycle_through_few_decodable_jpegs(tmp_path):
    files = synthetic.write_images(tmp_path / "images", 20, distinct=6)
    paths = sorted(files.glob("*.jpg"))
    blobs = [path.read_bytes() for path in paths]
    assert [path.name for path in paths] == [f"{i:07d}.jpg" for i in range(20)]
    assert len(set(blobs)) == 6
    assert all(blobs[i] == blobs[i % 6] for i in range(20))
    for blob in blobs[:6]:
        with Image.open(io.BytesIO(blob)) as image:
            image.load()
            assert image.format == "JPEG" and min(image.size) >= 256


def test_minilm_is_built_from_the_bundled_files_where_its_package_is_missing(
    tmp_path, monkeypatch, minilm_path
):
    from transformers import AutoConfig

    shutil.copytree(
        minilm_path, tmp_path / "bundle" / "minilm", ignore=shutil.ignore_patterns("*.safetensors")
    )
    monkeypatch.setattr(gpu_suite, "BUNDLE", tmp_path / "bundle")
    monkeypatch.setattr(gpu_suite, "MINILM_PACKAGE", "not_installed_anywhere")
    monkeypatch.setattr(gpu_suite.models, "CACHE", tmp_path / "cache")
    folder = Path(gpu_suite.minilm_random())
    assert folder == tmp_path / "cache" / "minilm-random" and (folder / "model.safetensors").exists()
    assert (folder / "tokenizer.json").exists() and AutoConfig.from_pretrained(folder).hidden_size == 384


def test_a_failed_step_leaves_its_output_and_the_suite_goes_on(tmp_path):
    with open(tmp_path / "steps.log", "w") as log:
        broken = gpu_suite.run_command(
            "broken", [sys.executable, "-c", "print('half done'); raise SystemExit(3)"], tmp_path, 30, log
        )
        slow = gpu_suite.run_command(
            "slow", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path, 1, log
        )
    assert (broken["rc"], broken["json"]) == (3, None) and "half done" in broken["error"]
    assert (tmp_path / "broken.error.txt").read_text() == broken["error"]
    assert slow["rc"] == gpu_suite.TIMED_OUT and slow["error"].startswith("timed out after 1 s")
    assert slow["wall_s"] < 30
    assert "===== broken (rc 3" in (tmp_path / "steps.log").read_text()


def test_full_scale_fits_the_device_limits():
    steps, budget_s = gpu_suite.SCALES["full"]
    assert [step.name for step in steps] == [step.name for step in gpu_suite.TINY]
    assert sum(step.timeout_s for step in steps) < budget_s <= 480  # 8 minutes, inside a 540 s call
    assert len(steps) + 2 <= 8  # the device tool brings back at most 8 files from $OUT


@pytest.mark.integration
@pytest.mark.timeout(400)
def test_tiny_suite_records_each_step(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_suite", "--scale", "tiny", "--steps", "embed_texts"]
        + ["--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=380,
        env={**os.environ, "RAY_ADDRESS": ""},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    suite = json.loads((tmp_path / "suite.json").read_text())
    assert (suite["scale"], "CPU" in suite["device"], suite["bundle"]) == ("tiny", True, None)
    assert suite["wall_s"] > 0 and suite["versions"]["ray"]
    [step] = suite["steps"]
    assert (step["name"], step["rc"], step["error"], step["rows"]) == ("embed_texts", 0, None, 64)
    assert "benchmarks.run embed_texts --rows 64 --batch-size 16" in step["command"]
    assert "--feed" in step["command"] and step["timeout_s"] > 0
    assert step["json"] == json.loads((tmp_path / "embed_texts.json").read_text())
    figures = step["json"]["figures"]
    assert figures["rows_out"] == 64 and figures["rayjobs_e2e"] > 0 and figures["feed_ceiling"] > 0
    assert figures["feed_ceiling_per_core"] > 0  # --feed: the no-op model run, and ModelStage's overhead
    assert figures["host_overhead_at_10ms"] >= -0.01  # a share of the 10 ms sleep, never shorter
    assert figures["model_ceiling"] > 0 and "encode" not in figures  # --no-baselines keeps the ceilings
    assert not list(tmp_path.glob("*.error.txt"))
    assert "embed_texts" in done.stdout and "rayjobs_e2e" in done.stdout  # the summary line
