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
        assert row["upscale"] == 2 and row["mask_coverage"] == pytest.approx(coverage)
        assert (tmp_path / "out" / row["before_256"]).exists() and (
            tmp_path / "out" / row["thumbnail_16"]
        ).exists()
    errors = pq.read_table(tmp_path / "out" / "errors")["id"].to_pylist()
    assert sorted(errors) == ["broken.jpg", "sub/empty.png"]
    page = (tmp_path / "out" / "report.html").read_text()
    assert '"before":["before_256"]' in page


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
