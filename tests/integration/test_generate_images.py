"""generate_images end to end on a real local Ray: prompts x variations x n, files and rows."""

import io
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification

import rayjobs
from operators.image.image_prompts import image_seed
from rayjobs.config.config_error import ConfigError
from tests.integration.conftest import storage_overrides
from tests.integration.test_resume import kill_then_rerun
from tests.operators.image.test_image_generator import direct
from tests.operators.image.test_image_scorer import LABELS
from tests.operators.image.test_image_scorer import direct as direct_scores
from tests.report.test_contact_sheet import report_rows

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def write_prompts(path) -> None:
    path.write_text('id,prompt\nshoe,a red shoe\ncat,a small cat\nblank,"   "\nsea,the blue sea\n')


def settings(tmp_path, model: str, *extra: str) -> list[str]:
    return [
        f"input.path={tmp_path / 'prompts.csv'}",
        "input.format=csv",
        "input.id_column=id",
        f"output.path={tmp_path / 'out'}",
        f"model.path={model}",
        "model.num_inference_steps=2",
        "model.height=16",
        "model.width=16",
        "model.batch_size=3",
        "input.shard_rows=2",
        "runtime.progress_bars=false",
        "job.max_error_fraction=0.5",
        *extra,
    ]


def test_every_prompt_variation_and_image_once_each_matching_a_direct_call(
    local_ray, tmp_path, tiny_stable_diffusion
):
    write_prompts(tmp_path / "prompts.csv")
    cfg = rayjobs.compose(
        "generate_images",
        settings(
            tmp_path, tiny_stable_diffusion, "model.n=2", "prompt.variations=[', watercolor', ', photo']"
        ),
    )
    result = rayjobs.run(cfg)

    assert (result.rows_written, result.rows_errored) == (3 * 2 * 2, 1)
    data = pq.read_table(tmp_path / "out" / "data").to_pylist()
    assert sorted(r["id"] for r in data) == sorted(
        f"{p}@{i}" for p in ("shoe", "cat", "sea") for i in range(4)
    )
    row = next(r for r in data if r["id"] == "cat@3")
    assert (row["parent_id"], row["index"], row["prompt"], row["variation"]) == (
        "cat",
        3,
        "a small cat, photo",
        ", photo",
    )
    assert (row["num_inference_steps"], row["height"], row["width"], row["guidance_scale"]) == (
        2,
        16,
        16,
        7.5,
    )
    assert (
        row["path"] == "files/cat@3.png" and row["bytes"] == (tmp_path / "out" / row["path"]).stat().st_size
    )
    image = np.asarray(Image.open(io.BytesIO((tmp_path / "out" / row["path"]).read_bytes())))
    expected = direct(tiny_stable_diffusion, row["prompt"], row["seed"], guidance_scale=7.5)
    assert np.abs(image.astype(int) - expected).max() <= 2
    assert len(list((tmp_path / "out" / "files").glob("*.png"))) == 12

    [error] = pq.read_table(tmp_path / "out" / "errors").to_pylist()
    assert (error["id"], error["stage"], error["reason"]) == ("blank", "prompt", "empty prompt")


def test_a_grid_records_each_parameter_and_jpeg_output(local_ray, tmp_path, tiny_stable_diffusion):
    write_prompts(tmp_path / "prompts.csv")
    cfg = rayjobs.compose(
        "generate_images",
        settings(
            tmp_path, tiny_stable_diffusion, "+grid.guidance_scale=[1.0,4.0]", "output.image_format=jpeg"
        ),
    )
    result = rayjobs.run(cfg)
    assert result.rows_written == 3 * 2
    data = pq.read_table(tmp_path / "out" / "data").to_pylist()
    assert sorted((r["parent_id"], r["guidance_scale"]) for r in data) == sorted(
        (p, g) for p in ("shoe", "cat", "sea") for g in (1.0, 4.0)
    )
    assert all(r["path"].endswith(".jpg") for r in data)
    assert Image.open(tmp_path / "out" / data[0]["path"]).format == "JPEG"


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def chain(clip: str, rule: str) -> list[str]:
    """The chained overrides: score each image against its prompt, filter by `rule`, thumbnails."""
    return [
        f"scorer.path={clip}",
        "score.text_column=prompt",
        f"score.labels={LABELS}",
        f"filter=['{rule}']",
        "thumbnails.sizes=[8]",
    ]


def test_the_chain_scores_filters_and_thumbnails_every_image_in_one_run(
    local_ray, tmp_path, tiny_stable_diffusion, tiny_clip, tiny_vit_classifier
):
    write_prompts(tmp_path / "prompts.csv")
    made = {  # what the chain should make and score, computed directly
        f"{p}@{i}": direct(tiny_stable_diffusion, text, image_seed(0, p, 0, i), guidance_scale=7.5)
        for p, text in (("shoe", "a red shoe"), ("cat", "a small cat"), ("sea", "the blue sea"))
        for i in range(2)
    }
    prompts = {
        key: {"shoe": "a red shoe", "cat": "a small cat", "sea": "the blue sea"}[key[:-2]] for key in made
    }
    image, text, _ = direct_scores(
        tiny_clip, [png(made[k]) for k in sorted(made)], [prompts[k] for k in sorted(made)], padding=True
    )
    cosine = dict(zip(sorted(made), (image * text).sum(dim=-1).tolist(), strict=True))
    ranked = sorted(cosine.values())
    threshold = round((ranked[2] + ranked[3]) / 2, 6)  # between two scores: half kept, half filtered
    kept = {k for k, c in cosine.items() if c >= threshold}
    classifier = AutoModelForImageClassification.from_pretrained(tiny_vit_classifier).eval()
    with torch.inference_mode():
        inputs = AutoImageProcessor.from_pretrained(tiny_vit_classifier)(
            images=[Image.fromarray(made[k]) for k in sorted(made)], return_tensors="pt"
        )
        probs = classifier(**inputs).logits.softmax(dim=-1)[:, 1].tolist()
    nsfw = dict(zip(sorted(made), probs, strict=True))

    cfg = rayjobs.compose(
        "generate_images",
        settings(
            tmp_path,
            tiny_stable_diffusion,
            "model.n=2",
            *chain(tiny_clip, f"clip_cosine >= {threshold}"),
            f"score.classifier={tiny_vit_classifier}",
        ),
    )
    result = rayjobs.run(cfg)

    out = tmp_path / "out"
    data = {r["id"]: r for r in pq.read_table(out / "data").to_pylist()}
    filtered = {r["id"]: r for r in pq.read_table(out / "filtered").to_pylist()}
    assert set(data) == kept and set(filtered) == set(made) - kept
    assert (result.rows_written, result.rows_filtered, result.rows_errored) == (3, 3, 1)
    rates = {stage["name"]: stage["rows_per_s"] for stage in result.stats["stages"]}
    assert rates["MapBatches(ModelStage)"] > 0 and rates["MapBatches(ModelStage[scorer])"] > 0
    for key, row in {**data, **filtered}.items():
        assert row["clip_cosine"] == pytest.approx(cosine[key], abs=1e-4)
        assert row["clip_score"] == pytest.approx(100 * max(cosine[key], 0), abs=1e-2)
        assert row["top_label"] in LABELS and row["prompt"] == prompts[key]
        assert row["nsfw"] == pytest.approx(nsfw[key], abs=1e-5)
        assert row["thumbnail_8"] == f"thumbnail_8/{key}.jpg"
        assert Image.open(out / row["thumbnail_8"]).size == (8, 8)
    for key, row in data.items():  # kept: the full-size image, equal to the direct call
        pixels = np.asarray(Image.open(out / row["path"]))
        assert row["path"] == f"files/{key}.png" and np.abs(pixels.astype(int) - made[key]).max() <= 2
    for row in filtered.values():
        assert (row["stage"], row["reason"]) == (
            "filter",
            f"clip_cosine {row['clip_cosine']:.4g} < {threshold:g}",
        )
    assert sorted(p.name for p in (out / "files").iterdir()) == sorted(f"{k}.png" for k in kept)
    assert sorted(p.name for p in (out / "thumbnail_8").iterdir()) == sorted(f"{k}.jpg" for k in made)
    report = report_rows(out / "report.html")
    assert sorted((r["id"], r["outcome"]) for r in report) == sorted(
        [*((k, "kept") for k in kept), *((k, "filtered") for k in set(made) - kept), ("blank", "errored")]
    )


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.height=20", "model.height"),
        ("model.n=-1", "model.n"),
        ("+grid.width=[16,30]", "grid.width"),
        ("+grid.strength=[0.5]", "grid.strength"),
        ("output.image_format=gif", "output.image_format"),
        ("prompt.column=text", "prompt.column"),
        ("prompt.column=null", "prompt.column"),
        ("prompt.negative_column=neg", "prompt.negative_column"),
        ("filter=['clip_score >= 20']", "filter"),
        ("score.text_column=caption", "score.text_column"),
        ("thumbnails.sizes=[0]", "thumbnails.sizes"),
        ("thumbnails.format=bmp", "thumbnails.format"),
    ],
)
def test_bad_settings_fail_before_ray_with_their_key(tmp_path, tiny_stable_diffusion, override, key):
    write_prompts(tmp_path / "prompts.csv")
    cfg = rayjobs.compose("generate_images", settings(tmp_path, tiny_stable_diffusion, override))
    with pytest.raises(ConfigError) as caught:
        rayjobs.run(cfg)
    assert caught.value.key == key
    assert not (tmp_path / "out").exists()


def test_sigkill_then_rerun_makes_every_image_exactly_once(tmp_path, tiny_stable_diffusion, tiny_clip):
    """The chain killed while writing, run again: each (prompt, index) once in data/, filtered/ or
    errors/; a full-size file for each kept image, a thumbnail for each kept or filtered one."""
    prompts = [f"p{i},a {'red' if i % 2 else 'blue'} shoe number {i}" for i in range(24)]
    (tmp_path / "prompts.csv").write_text("id,prompt\n" + "\n".join([*prompts, "empty,"]) + "\n")
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "rayjobs.generate_images",
        *settings(
            tmp_path,
            tiny_stable_diffusion,
            "model.n=2",
            "runtime.num_cpus=2",
            "job.progress_interval_s=0.5",
            *chain(tiny_clip, f"seed >= {2**31}"),  # seeds are uniform: about half kept
        ),
    ]
    written = lambda: len(list(out.glob("data/*.parquet")) + list(out.glob("filtered/*.parquet")))  # noqa: E731
    kill_then_rerun(command, out, lambda: written() >= 3, "while_writing")

    data = pq.read_table(out / "data").to_pylist()
    filtered = pq.read_table(out / "filtered").to_pylist() if (out / "filtered").exists() else []
    pairs = [(r["parent_id"], r["index"]) for r in data + filtered]
    assert len(pairs) == len(set(pairs)) == 24 * 2
    assert set(pairs) == {(f"p{i}", k) for i in range(24) for k in range(2)}
    assert all(r["seed"] >= 2**31 for r in data) and all(r["seed"] < 2**31 for r in filtered)
    assert data and filtered and all(r["top_label"] in LABELS for r in data + filtered)
    assert [r["id"] for r in pq.read_table(out / "errors").to_pylist()] == ["empty"]
    assert sorted(p.name for p in (out / "files").iterdir()) == sorted(f"{r['id']}.png" for r in data)
    thumbnails = sorted(p.name for p in (out / "thumbnail_8").iterdir())
    assert thumbnails == sorted(f"{r['id']}.jpg" for r in data + filtered)
    assert len(report_rows(out / "report.html")) == 24 * 2 + 1


def test_the_chain_lands_on_s3(local_ray, s3, tmp_path, tiny_stable_diffusion, tiny_clip):
    fs, options = s3
    write_prompts(tmp_path / "prompts.csv")
    fs.put(str(tmp_path / "prompts.csv"), "rayjobs-test/prompts/prompts.csv")
    overrides = settings(
        tmp_path, tiny_stable_diffusion, *storage_overrides(options), *chain(tiny_clip, "clip_score >= 0")
    )
    overrides = [o for o in overrides if not o.startswith(("input.path=", "output.path="))]
    cfg = rayjobs.compose(
        "generate_images",
        [*overrides, "input.path=s3://rayjobs-test/prompts", "output.path=s3://rayjobs-test/generated"],
    )
    result = rayjobs.run(cfg)
    assert (result.rows_written, result.rows_errored) == (3, 1)
    data = pq.read_table("rayjobs-test/generated/data", filesystem=fs).to_pylist()
    assert sorted(r["path"] for r in data) == ["files/cat@0.png", "files/sea@0.png", "files/shoe@0.png"]
    for row in data:
        image = Image.open(io.BytesIO(fs.cat(f"rayjobs-test/generated/{row['path']}")))
        assert image.size == (16, 16) and fs.size(f"rayjobs-test/generated/{row['path']}") == row["bytes"]
        thumbnail = Image.open(io.BytesIO(fs.cat(f"rayjobs-test/generated/{row['thumbnail_8']}")))
        assert thumbnail.size == (8, 8) and 0 <= row["clip_score"] <= 100
    report = tmp_path / "report.html"
    report.write_bytes(fs.cat("rayjobs-test/generated/report.html"))
    assert sorted(r["id"] for r in report_rows(report)) == ["blank", "cat@0", "sea@0", "shoe@0"]
    assert fs.exists("rayjobs-test/generated/_SUCCESS")
