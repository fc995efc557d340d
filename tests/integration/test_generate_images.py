"""generate_images end to end on a real local Ray: prompts x variations x n, files and rows."""

import io
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import rayjobs
from rayjobs.config.config_error import ConfigError
from tests.integration.conftest import storage_overrides
from tests.integration.test_resume import files, kill_then_rerun
from tests.operators.image.test_image_generator import direct

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
    ],
)
def test_bad_settings_fail_before_ray_with_their_key(tmp_path, tiny_stable_diffusion, override, key):
    write_prompts(tmp_path / "prompts.csv")
    cfg = rayjobs.compose("generate_images", settings(tmp_path, tiny_stable_diffusion, override))
    with pytest.raises(ConfigError) as caught:
        rayjobs.run(cfg)
    assert caught.value.key == key
    assert not (tmp_path / "out").exists()


def test_sigkill_then_rerun_makes_every_image_exactly_once(tmp_path, tiny_stable_diffusion):
    """Killed while writing, run again: each (prompt, index) once in data/ or errors/, one file each."""
    prompts = [f"p{i},a {'red' if i % 2 else 'blue'} shoe number {i}" for i in range(24)]
    (tmp_path / "prompts.csv").write_text("id,prompt\n" + "\n".join([*prompts, "empty,"]) + "\n")
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "rayjobs.generate_images",
        *settings(
            tmp_path, tiny_stable_diffusion, "model.n=2", "runtime.num_cpus=2", "job.progress_interval_s=0.5"
        ),
    ]
    kill_then_rerun(command, out, lambda: files(out) >= 3, "while_writing")

    data = pq.read_table(out / "data").to_pylist()
    pairs = [(r["parent_id"], r["index"]) for r in data]
    assert len(pairs) == len(set(pairs)) == 24 * 2
    assert set(pairs) == {(f"p{i}", k) for i in range(24) for k in range(2)}
    assert [r["id"] for r in pq.read_table(out / "errors").to_pylist()] == ["empty"]
    assert sorted(p.name for p in (out / "files").iterdir()) == sorted(f"{r['id']}.png" for r in data)


def test_images_and_rows_land_on_s3(local_ray, s3, tmp_path, tiny_stable_diffusion):
    fs, options = s3
    write_prompts(tmp_path / "prompts.csv")
    fs.put(str(tmp_path / "prompts.csv"), "rayjobs-test/prompts/prompts.csv")
    overrides = settings(tmp_path, tiny_stable_diffusion, *storage_overrides(options))
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
    assert fs.exists("rayjobs-test/generated/_SUCCESS")
