"""transform_images end to end on local Ray: a folder, a Parquet column of bytes, S3 (moto)."""

import io
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import rayjobs
from operators.image.transform_images import transform_images
from rayjobs.io.shards import ROW, SHARD
from rayjobs.pipeline.write_results import write_results
from tests.integration.conftest import storage_overrides
from tests.integration.inputs import jpeg, write_image_table, write_images
from tests.report.test_contact_sheet import report_rows

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def run_job(*overrides: str):
    return rayjobs.run(rayjobs.compose("transform_images", ["runtime.progress_bars=false", *overrides]))


def test_cli_defaults_make_one_jpeg_thumbnail_of_256_px_per_image(tmp_path):
    made = write_images(tmp_path / "in", count=6)
    big = Image.new("RGB", (640, 480), "navy")
    big.save(tmp_path / "in" / "big.png")
    out = tmp_path / "out"
    args = [
        f"input.path={tmp_path / 'in'}",
        f"output.path={out}",
        "runtime.num_cpus=2",
        "job.max_error_fraction=0.5",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "rayjobs.transform_images", *args], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "7 rows written, 2 errors" in done.stdout
    data = {row["id"]: row for row in pq.read_table(out / "data").to_pylist()}
    assert sorted(data) == sorted([*(name for name, blob in made.items() if blob), "big.png"])
    for row in data.values():
        image = Image.open(out / row["path"])
        assert image.format == "JPEG" and row["format"] == "jpeg" and row["size"] == "256"
        assert (
            image.size == (row["width"], row["height"]) and row["bytes"] == (out / row["path"]).stat().st_size
        )
    assert (data["big.png"]["width"], data["big.png"]["height"]) == (256, 192)
    assert data["sub/img000.jpg"]["path"] == "files/sub/img000.jpg.jpg"
    errors = pq.read_table(out / "errors").to_pylist()
    assert {row["id"] for row in errors} == {"broken.jpg", "sub/empty.png"}
    assert {row["stage"] for row in errors} == {"transform"}
    record = json.loads((out / "_run.json").read_text())
    assert record["stats"]["cluster"]["gpus"] == 0 and not record["stats"]["model_batch_size"]
    stages = [stage["name"] for stage in record["stats"]["stages"]]
    assert not any("ModelStage" in name for name in stages)
    # read, transform and write fused into one task per shard: file bytes never cross the object store
    assert any(
        "ReadShards" in name and "transform_images" in name and "write_results" in name for name in stages
    )


def test_several_sizes_fan_out_from_a_parquet_column_of_bytes(local_ray, tmp_path):
    images = write_image_table(tmp_path / "in" / "images.parquet", count=7)
    out = tmp_path / "out"
    common = [
        "input=parquet",
        f"input.path={tmp_path / 'in'}",
        "input.image_column=jpeg",
        "input.id_column=key",
        "input.shard_rows=3",
        "output.columns=[caption]",
        "transform.sizes=[16,'24x12']",
        "transform.mode=fill",
        "transform.format=webp",
    ]
    result = run_job(*common, f"output.path={out}", "transform.quality=70")
    assert (result.rows, result.rows_written, result.rows_errored, result.ok) == (7, 14, 0, True)
    rows = pq.read_table(out / "data").to_pylist()
    assert sorted((row["parent_id"], row["index"]) for row in rows) == sorted(
        (key, index) for key in images for index in (0, 1)
    )
    for row in rows:
        image = Image.open(out / row["path"])
        assert image.format == "WEBP" and image.size == ((16, 16) if row["index"] == 0 else (24, 12))
        assert row["caption"].startswith("caption ")
    report = report_rows(out / "report.html")  # a card per output file, linking to it
    assert sorted((r["id"], r["path"]) for r in report) == sorted((r["id"], r["path"]) for r in rows)
    with pytest.raises(rayjobs.ConfigError) as caught:  # a result-deciding key changed: refused
        run_job(*common, f"output.path={out}", "transform.quality=80")
    assert caught.value.key == "transform.quality" and "70" in str(caught.value)


def test_file_outputs_on_s3_are_deterministic_and_a_rerun_adds_no_file(local_ray, tmp_path, s3):
    fs, options = s3
    made = write_images(tmp_path / "in", count=5)
    fs.put(str(tmp_path / "in"), "rayjobs-test/thumbs-in", recursive=True)
    common = [
        "input.path=s3://rayjobs-test/thumbs-in",
        "input.shard_rows=2",
        "transform.sizes=[20,40]",
        "transform.format=png",
        "job.max_error_fraction=0.5",
        *storage_overrides(options),
    ]
    first = run_job(*common, "output.path=s3://rayjobs-test/thumbs-out")
    good = [name for name, blob in made.items() if blob]
    assert (first.rows_written, first.rows_errored) == (2 * len(good), 2)
    names = sorted(fs.find("rayjobs-test/thumbs-out/files"))
    assert names == sorted(f"rayjobs-test/thumbs-out/files/{name}@{i}.png" for name in good for i in (0, 1))
    second = run_job(*common, "output.path=s3://rayjobs-test/thumbs-out", "job.overwrite=true")
    assert second.rows_written == first.rows_written
    assert sorted(fs.find("rayjobs-test/thumbs-out/files")) == names
    with fs.open(names[1], "rb") as handle:
        assert max(Image.open(io.BytesIO(handle.read())).size) == 40  # index 1: the 40 px box

    # a retried write task (same rows, same run) on S3 replaces its files and Parquet part
    rows = {
        SHARD: pa.array([0, 0], pa.int32()),
        ROW: [0, 1],
        "id": ["x.jpg", "y.jpg"],
        "image": [jpeg(1), jpeg(2)],
    }
    batch = transform_images(pa.table(rows), image_column="image", sizes=[8, 16])
    output = {"path": "s3://rayjobs-test/retried", "storage_options": options, "results": [], "run_id": "r"}
    for _ in range(2):
        write_results(batch, output=output)
    assert sorted(fs.find("rayjobs-test/retried/files")) == [
        f"rayjobs-test/retried/files/{name}@{i}.jpg" for name in ("x.jpg", "y.jpg") for i in (0, 1)
    ]
    assert len(fs.find("rayjobs-test/retried/data")) == 1


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("transform.sizes=[]", "transform.sizes"),
        ("transform.sizes=[big]", "transform.sizes"),
        ("transform.mode=stretch", "transform.mode"),
        ("transform.format=gif", "transform.format"),
        ("transform.quality=0", "transform.quality"),
        ("transform.background=notacolour", "transform.background"),
        ("transform.num_cpus=-1", "transform.num_cpus"),
    ],
)
def test_bad_transform_configs_fail_before_ray_naming_the_key(tmp_path, override, key):
    write_images(tmp_path / "in", count=1)
    with pytest.raises(rayjobs.ConfigError) as caught:
        run_job(f"input.path={tmp_path / 'in'}", f"output.path={tmp_path / 'out'}", override)
    assert caught.value.key == key
    assert not (tmp_path / "out").exists()
