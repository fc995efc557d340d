"""edit_images end to end on a real local Ray: background removal then upscaling, each on its own
actor pool, equal to the operators called one after the other; bad inputs and configs."""

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import rayjobs
from operators.arrow_tensors import arrow_to_tensor
from operators.image.background_remover import BackgroundRemover
from operators.image.decode_images import decode_rgb, raw_pixels
from operators.image.image_upscaler import ImageUpscaler
from tests.integration.inputs import write_images

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def direct_edits(blob: bytes, segformer: str, swin2sr: str) -> tuple[np.ndarray, float]:
    """The photo decoded as the job decodes it, then each operator called by hand."""
    table = decode_rgb(pa.table({"image": [blob]}), image_column="image", max_side=4096)
    batch = {"image_rgb": table["image_rgb"].to_numpy(), "image_shape": arrow_to_tensor(table["image_shape"])}
    cut = BackgroundRemover(segformer)(batch)
    big = ImageUpscaler(swin2sr)({"image_rgb": cut["image_rgb"], "image_shape": cut["image_shape"]})
    return raw_pixels(big["image_rgb"][0], big["image_shape"][0]), float(cut["mask_coverage"][0])


def edit(tmp_path, *overrides: str):
    cfg = rayjobs.compose(
        "edit_images",
        [
            f"input.path={tmp_path / 'photos'}",
            "runtime.progress_bars=false",
            "job.max_error_fraction=0.5",
            "input.shard_rows=4",
            *overrides,
        ],
    )
    return rayjobs.run(cfg)


def test_background_then_upscale_equals_the_operators_by_hand(
    local_ray, tmp_path, tiny_segformer, tiny_swin2sr
):
    made = write_images(tmp_path / "photos", count=6)
    result = edit(
        tmp_path,
        f"output.path={tmp_path / 'out'}",
        f"remove_background.path={tiny_segformer}",
        f"upscale.path={tiny_swin2sr}",
        "remove_background.batch_size=2",
        "thumbnails.sizes=[16]",
    )
    good = sorted(name for name, blob in made.items() if blob is not None)
    assert (result.rows_written, result.rows_errored) == (len(good), 2)
    rows = {row["id"]: row for row in pq.read_table(tmp_path / "out" / "data").to_pylist()}
    assert sorted(rows) == good
    for name in good:
        expected, coverage = direct_edits(made[name], tiny_segformer, tiny_swin2sr)
        row = rows[name]
        written = np.asarray(Image.open(tmp_path / "out" / row["path"]))
        assert np.array_equal(written, expected)  # PNG is lossless: the very pixels
        source = Image.open(io.BytesIO(made[name]))
        assert (row["width"], row["height"]) == (2 * source.width, 2 * source.height)
        assert (
            row["upscale"] == 2 and row["mask_coverage"] == pytest.approx(coverage) and row["format"] == "png"
        )
        assert (tmp_path / "out" / row["before_256"]).exists() and (
            tmp_path / "out" / row["thumbnail_16"]
        ).exists()
    errors = pq.read_table(tmp_path / "out" / "errors")["id"].to_pylist()
    assert sorted(errors) == ["broken.jpg", "sub/empty.png"]
    page = (tmp_path / "out" / "report.html").read_text()
    assert '"before":["before_256"]' in page
    # Each pool of the chain reports its own rate (Ray Data keys stage stats by name).
    rates = {stage["name"]: stage["rows_per_s"] for stage in result.stats["stages"]}
    for stage in ("remove_background", "upscale"):
        assert rates[f"MapBatches(ModelStage[{stage}])"] > 0


def test_cutouts_and_a_coverage_filter(local_ray, tmp_path, tiny_segformer):
    made = write_images(tmp_path / "photos", count=4)
    result = edit(
        tmp_path,
        f"output.path={tmp_path / 'out'}",
        "edits=[remove_background]",
        f"remove_background.path={tiny_segformer}",
        "remove_background.output=rgba",
        "filter=['mask_coverage >= 0.5']",
        "report.before=null",
    )
    data = pq.read_table(tmp_path / "out" / "data").to_pylist()
    filtered = pq.read_table(tmp_path / "out" / "filtered").to_pylist()
    # the toy segmenter finds 13 %, 95 %, 67 % and 49 % of these four photos
    assert sorted(row["id"] for row in data) == ["img001.jpg", "img002.jpg"] and result.rows_errored == 2
    assert sorted(row["id"] for row in filtered) == ["img003.jpg", "sub/img000.jpg"]
    for row in data:
        image = Image.open(tmp_path / "out" / row["path"])
        source = Image.open(io.BytesIO(made[row["id"]]))
        assert image.mode == "RGBA" and image.size == source.size and row["mask_coverage"] >= 0.5
        assert "upscale" not in row and "before_256" not in row
    assert all("mask_coverage" in row["reason"] for row in filtered)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["edits=[sharpen]"], "edits"),
        (["edits=[]"], "edits"),
        (["edits=[upscale,upscale]"], "edits"),
        (["filter=['aesthetic > 5']"], "filter"),
        (["output.image_format=gif"], "output.image_format"),
        (["output=webdataset", "output.tar_size_mb=0"], "output.tar_size_mb"),  # tars are allowed
    ],
)
def test_bad_edit_configs_fail_before_ray(tmp_path, overrides, key):
    from rayjobs.config.config_error import ConfigError

    (tmp_path / "photos").mkdir()
    paths = [f"input.path={tmp_path / 'photos'}", f"output.path={tmp_path / 'out'}"]
    with pytest.raises(ConfigError) as raised:
        rayjobs.run(rayjobs.compose("edit_images", [*paths, *overrides]))
    assert raised.value.key == key


def preset(tmp_path, segformer: str, swin2sr: str, smolvlm: str) -> list[str]:
    """+experiment=product_photos on the tiny models, with a schema the toy VLM can fill in its tokens."""
    import json

    from tests.operators.image.test_chat_captioner import SEO_SCHEMA

    (tmp_path / "seo.json").write_text(json.dumps(SEO_SCHEMA))
    return [
        "+experiment=product_photos",
        f"remove_background.path={segformer}",
        f"upscale.path={swin2sr}",
        f"describe.path={smolvlm}",
        "describe.max_new_tokens=240",
        "describe.batch_size=2",
        f"prompt.json_schema={tmp_path / 'seo.json'}",
        "upscale.only_below=40",  # the test photos are 30-60 px: some are upscaled, some pass
        "thumbnails.sizes=[16]",
        "runtime.progress_bars=false",
        "job.max_error_fraction=0.5",
    ]


def test_the_product_photos_preset_reads_s3_and_writes_every_photo_with_its_seo_columns(
    local_ray, s3, tmp_path, tiny_segformer, tiny_swin2sr, tiny_smolvlm
):
    import csv
    import json

    import jsonschema

    from tests.integration.conftest import storage_overrides
    from tests.operators.image.test_chat_captioner import SEO_SCHEMA

    fs, options = s3
    made = write_images(tmp_path / "photos", count=6)
    fs.put(str(tmp_path / "photos"), "rayjobs-test/photos", recursive=True)
    overrides = [
        *preset(tmp_path, tiny_segformer, tiny_swin2sr, tiny_smolvlm),
        *storage_overrides(options),
        "input.path=s3://rayjobs-test/photos",
        "output.path=s3://rayjobs-test/catalogue",
        "filter=['mask_coverage > 0.2']",
    ]
    result = rayjobs.run(rayjobs.compose("edit_images", overrides))
    good = sorted(name for name, blob in made.items() if blob is not None)
    data = pq.read_table("rayjobs-test/catalogue/data", filesystem=fs).to_pylist()
    filtered = pq.read_table("rayjobs-test/catalogue/filtered", filesystem=fs).to_pylist()
    assert sorted(row["id"] for row in data + filtered) == good and result.rows_errored == 2
    assert data and filtered  # the toy segmenter finds under 20 % of sub/img000.jpg
    for row in data:
        metadata = {name: row[name] for name in SEO_SCHEMA["properties"]}
        jsonschema.validate(metadata, SEO_SCHEMA)
        image = Image.open(io.BytesIO(fs.cat(f"rayjobs-test/catalogue/{row['path']}")))
        source = Image.open(io.BytesIO(made[row["id"]]))
        scale = 2 if max(source.size) < 40 else 1
        assert image.format == "JPEG" and image.size == (scale * source.width, scale * source.height)
        assert row["upscale"] == scale and (row["width"], row["height"]) == image.size
        assert fs.exists(f"rayjobs-test/catalogue/{row['thumbnail_16']}")
    catalogue = list(csv.DictReader(io.StringIO(fs.cat("rayjobs-test/catalogue/data.csv").decode())))
    assert {row["id"]: row["title"] for row in catalogue} == {row["id"]: row["title"] for row in data}
    tags = {row["id"]: row["tags"] for row in data}
    assert all(json.loads(row["tags"]) == tags[row["id"]] for row in catalogue)
    errors = pq.read_table("rayjobs-test/catalogue/errors", filesystem=fs)["id"].to_pylist()
    assert sorted(errors) == ["broken.jpg", "sub/empty.png"]


def test_the_preset_killed_mid_run_then_rerun_writes_each_photo_once(
    tmp_path, tiny_segformer, tiny_swin2sr, tiny_smolvlm
):
    import sys

    from tests.integration.test_resume import kill_then_rerun

    made = write_images(tmp_path / "photos", count=12)
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "rayjobs.edit_images",
        *preset(tmp_path, tiny_segformer, tiny_swin2sr, tiny_smolvlm),
        f"input.path={tmp_path / 'photos'}",
        f"output.path={out}",
        "input.shard_rows=2",
        "runtime.num_cpus=2",
        "job.progress_interval_s=0.5",
    ]
    written = lambda: len(list(out.glob("data/*.parquet")) + list(out.glob("filtered/*.parquet")))  # noqa: E731
    kill_then_rerun(command, out, lambda: written() >= 2, "while_writing")
    rows = pq.read_table(out / "data").to_pylist()
    if (out / "filtered").exists():
        rows += pq.read_table(out / "filtered").to_pylist()
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(n for n, blob in made.items() if blob)
    files = sorted(str(p.relative_to(out)) for p in (out / "files").rglob("*.jpg"))
    assert files == sorted(row["path"] for row in rows if row.get("path"))
    assert sorted(pq.read_table(out / "errors")["id"].to_pylist()) == ["broken.jpg", "sub/empty.png"]
