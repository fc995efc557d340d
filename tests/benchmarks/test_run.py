"""Smoke test of the benchmark harness: the JSON's shape and rows out = rows in, never timings."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]


def harness(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_ADDRESS": ""}
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.run", *args], capture_output=True, text=True, timeout=380, env=env
    )


def test_text_harness_measures_every_figure(tmp_path):
    out = tmp_path / "texts.json"
    done = harness("embed_texts", "--rows", "60", "--batch-size", "16", "--no-table", "--json", str(out))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert (result["job"], result["rows"], result["batch_size"]) == ("embed_texts", 60, 16)
    assert result["figures"]["rows_out"] == 60
    for name in ("model_ceiling", "encode", "textbook_ray", "rayjobs_e2e", "rayjobs_e2e_with_ray_start"):
        assert result["figures"][name] > 0, name
    assert set(result["ratios"]) == {"e2e/model_ceiling", "e2e/encode", "e2e/textbook_ray"}
    assert result["figures"]["peak_driver_mib"] > 0 and "CPU" in result["device"]


def test_image_harness_measures_every_figure(tmp_path, tiny_clip):
    out = tmp_path / "images.json"
    done = harness(
        "embed_images",
        "--rows",
        "12",
        "--batch-size",
        "4",
        "--model",
        tiny_clip,
        "--no-table",
        "--json",
        str(out),
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["figures"]["rows_out"] == 12
    for name in ("model_ceiling", "decode_ceiling", "device_decode_ceiling", "textbook_ray", "rayjobs_e2e"):
        assert result["figures"][name] > 0, name
    assert "e2e/min_ceiling" in result["ratios"]


def test_generation_harness_counts_generated_tokens(tmp_path, tiny_gpt2):
    out = tmp_path / "generation.json"
    done = harness(
        "generate_text",
        "--rows",
        "6",
        "--batch-size",
        "2",
        "--model",
        tiny_gpt2,
        "--schema",
        "--no-table",
        "--json",
        str(out),
        "model.max_new_tokens=70",  # room for the schema's document in the toy's byte-level tokens
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    figures = result["figures"]
    assert (result["unit"], figures["rows_out"]) == ("generated tokens/s", 6)
    assert figures["model_ceiling"] > 0 and figures["rayjobs_e2e"] > 0
    assert figures["rayjobs_e2e_json_schema"] > 0 and figures["json_schema_valid_fraction"] == 1.0


def test_grammar_masks_times_each_installed_library():
    from benchmarks.grammar_masks import measure

    figures = measure(vocab=400, files=40)
    assert figures["vocab"] == 400 and figures["document_tokens"] > 20
    llguidance = figures["libraries"]["llguidance"]
    assert llguidance["compile_ms"] > 0 and 0 < llguidance["mask_us_mean"] <= llguidance["mask_us_p99"]
    assert set(figures["libraries"]) == {"llguidance", "xgrammar", "outlines_core"}


def test_caption_harness_counts_captions(tmp_path, tiny_blip):
    out = tmp_path / "captions.json"
    done = harness(
        "caption_images",
        "--rows",
        "6",
        "--batch-size",
        "3",
        "--model",
        tiny_blip,
        "--no-table",
        "--json",
        str(out),
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert (result["job"], result["unit"], result["figures"]["rows_out"]) == (
        "caption_images",
        "captions/s",
        6,
    )
    for name in ("model_ceiling", "model_ceiling_tokens_per_s", "rayjobs_e2e", "rayjobs_e2e_tokens_per_s"):
        assert result["figures"][name] > 0, name
    assert set(result["ratios"]) == {"e2e/model_ceiling"}


def test_transform_harness_measures_the_ceiling_and_the_job(tmp_path):
    out = tmp_path / "transform.json"
    done = harness(
        "transform_images", "--rows", "12", "--no-table", "--json", str(out), "transform.format=webp"
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert (result["job"], result["unit"], result["rows"]) == ("transform_images", "images/s", 12)
    assert result["figures"]["rows_out"] == 12
    for name in ("decode_ceiling", "decode_ceiling_per_core", "rayjobs_e2e", "rayjobs_e2e_with_ray_start"):
        assert result["figures"][name] > 0, name
    assert set(result["ratios"]) == {"e2e/decode_ceiling"}


def test_generation_and_scoring_harnesses_measure_every_figure(tmp_path, tiny_stable_diffusion, tiny_clip):
    runs = {
        "generate_images": [
            "--model",
            tiny_stable_diffusion,
            "--rows",
            "6",
            "--batch-size",
            "3",
            "model.height=16",
        ],
        "score_images": ["--model", tiny_clip, "--rows", "24", "--batch-size", "8"],
    }
    for job, args in runs.items():
        out = tmp_path / f"{job}.json"
        done = harness(job, *args, "--no-table", "--json", str(out))
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        result = json.loads(out.read_text())
        assert (result["job"], result["unit"]) == (job, "images/s")
        assert result["figures"]["rows_out"] == int(args[args.index("--rows") + 1])
        assert result["figures"]["model_ceiling"] > 0 and result["figures"]["rayjobs_e2e"] > 0
        assert "e2e/model_ceiling" in result["ratios"]
    assert result["figures"]["decode_ceiling"] > 0  # score_images: decoding bounds it too
