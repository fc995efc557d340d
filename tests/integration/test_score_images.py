"""score_images end to end on a real local Ray: scores against each row's prompt, labels, filters."""

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

import rayjobs
from rayjobs.config.config_error import ConfigError
from tests.integration.inputs import jpeg
from tests.operators.image.test_image_scorer import LABELS, direct, laion_head
from tests.report.test_contact_sheet import report_rows

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def write_table(path, count: int = 12) -> dict[str, tuple[bytes | None, str | None]]:
    rows = {
        f"k{i}": (jpeg(200 + i), f"a {'red' if i % 2 else 'blue'} thing number {i}") for i in range(count)
    }
    rows["broken"] = (b"not an image", "a cat")
    rows["no_prompt"] = (jpeg(999), None)
    path.parent.mkdir(parents=True)
    table = pa.table(
        {
            "key": list(rows),
            "image": pa.array([image for image, _ in rows.values()], pa.binary()),
            "prompt": [prompt for _, prompt in rows.values()],
        }
    )
    pq.write_table(table, path)
    return rows


def settings(tmp_path, model: str, *extra: str) -> list[str]:
    return [
        "input=parquet",
        f"input.path={tmp_path / 'in'}",
        "input.id_column=key",
        f"output.path={tmp_path / 'out'}",
        f"model.path={model}",
        "output.columns=[prompt]",
        "input.shard_rows=5",
        "model.batch_size=4",
        "runtime.progress_bars=false",
        "job.max_error_fraction=0.5",
        *extra,
    ]


def test_rows_scored_against_their_prompts_are_kept_or_filtered_by_the_rule(local_ray, tmp_path, tiny_clip):
    rows = write_table(tmp_path / "in" / "images.parquet")
    good = sorted(k for k in rows if k.startswith("k"))
    image, text, _ = direct(tiny_clip, [rows[k][0] for k in good], [rows[k][1] for k in good], padding=True)
    cosine = dict(zip(good, (image * text).sum(dim=-1).tolist(), strict=True))
    ranked = sorted(cosine.values())
    threshold = round((ranked[5] + ranked[6]) / 2, 6)  # between two scores: half kept, half filtered
    kept = {k for k, c in cosine.items() if c >= threshold}

    overrides = [
        "score.text_column=prompt",
        f"score.labels={LABELS}",
        f"filter=['clip_cosine >= {threshold}']",
    ]
    result = rayjobs.run(rayjobs.compose("score_images", settings(tmp_path, tiny_clip, *overrides)))

    data = {r["id"]: r for r in pq.read_table(tmp_path / "out" / "data").to_pylist()}
    filtered = {r["id"]: r for r in pq.read_table(tmp_path / "out" / "filtered").to_pylist()}
    errors = {r["id"]: r for r in pq.read_table(tmp_path / "out" / "errors").to_pylist()}
    assert set(data) == kept and set(filtered) == set(good) - kept
    assert (result.rows_written, result.rows_filtered, result.rows_errored) == (len(kept), len(filtered), 2)
    for key, row in data.items():
        assert row["clip_cosine"] == pytest.approx(cosine[key], abs=1e-4)
        assert row["clip_score"] == pytest.approx(100 * max(cosine[key], 0), abs=1e-2)
        assert row["top_label"] in LABELS and sum(row["label_probs"]) == pytest.approx(1, abs=1e-4)
        assert row["prompt"] == rows[key][1]
    for key, row in filtered.items():
        assert (row["stage"], row["reason"]) == (
            "filter",
            f"clip_cosine {row['clip_cosine']:.4g} < {threshold:g}",
        )
        assert row["clip_cosine"] == pytest.approx(cosine[key], abs=1e-4)  # the scores stay with the row
    assert {k: e["stage"] for k, e in errors.items()} == {"broken": "decode", "no_prompt": "tokenize"}
    for key, row in {**data, **filtered}.items():  # thumbnails of kept and filtered images
        assert row["thumbnail_128"] == f"thumbnail_128/{key}.jpg"
        assert Image.open(tmp_path / "out" / row["thumbnail_128"]).size == (48, 40)  # never enlarged
    assert len(list((tmp_path / "out" / "thumbnail_128").iterdir())) == len(good)
    report = {r["id"]: r for r in report_rows(tmp_path / "out" / "report.html")}
    assert {k: r["outcome"] for k, r in report.items()} == {
        **dict.fromkeys(data, "kept"),
        **dict.fromkeys(filtered, "filtered"),
        **dict.fromkeys(errors, "errored"),
    }
    assert report["k3"]["prompt"] == rows["k3"][1] and report["broken"]["reason"]


def test_a_classifier_and_an_aesthetic_head_score_and_filter_each_image(
    local_ray, tmp_path, tiny_clip, tiny_vit_classifier
):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    rows = write_table(tmp_path / "in" / "images.parquet")
    good = sorted(k for k in rows if rows[k][0] != b"not an image")
    model = AutoModelForImageClassification.from_pretrained(tiny_vit_classifier).eval()
    pil = [Image.open(io.BytesIO(rows[k][0])).convert("RGB") for k in good]
    with torch.inference_mode():
        inputs = AutoImageProcessor.from_pretrained(tiny_vit_classifier)(images=pil, return_tensors="pt")
        nsfw = dict(zip(good, model(**inputs).logits.softmax(dim=-1)[:, 1].tolist(), strict=True))
    ranked = sorted(nsfw.values())
    threshold = round((ranked[6] + ranked[7]) / 2, 6)
    head, aesthetic = laion_head(tmp_path, "mlp")
    image, _, _ = direct(tiny_clip, [rows[k][0] for k in good], ["x"], padding=True)
    with torch.inference_mode():
        expected = dict(zip(good, aesthetic(image)[:, 0].tolist(), strict=True))

    overrides = [
        f"score.classifier={tiny_vit_classifier}",
        f"score.aesthetic={head}",
        f"filter=['nsfw < {threshold}']",
    ]
    result = rayjobs.run(rayjobs.compose("score_images", settings(tmp_path, tiny_clip, *overrides)))

    data = {r["id"]: r for r in pq.read_table(tmp_path / "out" / "data").to_pylist()}
    filtered = {r["id"]: r for r in pq.read_table(tmp_path / "out" / "filtered").to_pylist()}
    assert set(data) == {k for k in good if nsfw[k] < threshold} and set(filtered) == set(good) - set(data)
    assert (result.rows_written, result.rows_filtered, result.rows_errored) == (7, len(good) - 7, 1)
    for key, row in {**data, **filtered}.items():
        assert row["nsfw"] == pytest.approx(nsfw[key], abs=1e-5) and row["safe"] + row[
            "nsfw"
        ] == pytest.approx(1)
        assert row["aesthetic"] == pytest.approx(expected[key], abs=1e-4)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ([], "score"),
        (["score.text=cat", "filter=['nsfw < 0.5']"], "filter"),
        (["score.text=cat", "filter=['clip_score => 3']"], "filter"),
        (["score.text=cat", "score.text_column=prompt"], "score.text"),
        (["score.text_column=caption"], "score.text_column"),
        (["score.aesthetic=/nowhere/head.pth"], "score.aesthetic"),
        (["score.classifier=/nowhere/classifier"], "score.classifier"),
        (["score.classifier={classifier}", "output.columns=[nsfw]"], "score.classifier"),
    ],
)
def test_bad_settings_fail_before_ray_with_their_key(
    tmp_path, tiny_clip, tiny_vit_classifier, overrides, key
):
    write_table(tmp_path / "in" / "images.parquet")
    overrides = [o.format(classifier=tiny_vit_classifier) for o in overrides]
    with pytest.raises(ConfigError) as caught:
        rayjobs.run(rayjobs.compose("score_images", settings(tmp_path, tiny_clip, *overrides)))
    assert caught.value.key == key
    assert not (tmp_path / "out").exists()
