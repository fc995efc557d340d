"""output=webdataset end to end on a real local Ray: transform_images, generate_images and
score_images' kept set as tars read back by the `webdataset` library and by input=webdataset,
on local disk and S3 (moto), and a resume that finds a killed run's tars."""

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import rayjobs
from rayjobs.io.storage import filesystem
from rayjobs.io.webdataset_input import read_samples
from rayjobs.io.webdataset_output import TAR_KEY, id_of_key, sample_key
from rayjobs.pipeline.run_record import write_progress
from rayjobs.pipeline.write_results import parse_part_name
from tests.integration.conftest import storage_overrides
from tests.integration.inputs import write_images

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
TRANSFORM = ["runtime.progress_bars=false", "job.max_error_fraction=0.5", "input.shard_rows=8"]


def transform(*overrides: str):
    return rayjobs.run(rayjobs.compose("transform_images", [*TRANSFORM, *overrides]))


def read_tars(folder) -> list[dict]:
    """Every sample of every tar under `folder`, decoded by the webdataset library."""
    import webdataset

    tars = sorted(str(p) for p in folder.rglob("*.tar"))
    return list(webdataset.WebDataset(tars, shardshuffle=False, empty_check=False).decode("pil"))


def test_transform_images_to_tars_matches_the_files_output_and_reads_back_as_input(local_ray, tmp_path):
    made = write_images(tmp_path / "in", count=30)
    good = sorted(name for name, blob in made.items() if blob)
    common = [f"input.path={tmp_path / 'in'}", "transform.sizes=[24]"]
    files = transform(*common, f"output.path={tmp_path / 'files'}")
    tars = transform(
        *common, f"output.path={tmp_path / 'wds'}", "output=webdataset", "output.tar_size_mb=0.015"
    )

    assert (tars.rows_written, tars.rows_errored) == (files.rows_written, files.rows_errored) == (30, 2)
    assert not (tmp_path / "wds" / "files").exists()
    names = sorted(p.name for p in (tmp_path / "wds" / "tars").iterdir())
    shards = {parse_part_name(name)[0] for name in names}
    assert shards == {0, 1, 2, 3} and len(names) > len(shards)  # 15 KiB tars: several per shard
    samples = read_tars(tmp_path / "wds" / "tars")
    assert sorted(s["json"]["id"] for s in samples) == good  # each good image once, nothing else
    assert sorted(s["__key__"] for s in samples) == sorted(sample_key(name) for name in good)
    rows = {row["id"]: row for row in pq.read_table(tmp_path / "files" / "data").to_pylist()}
    for sample in samples:
        row = rows[sample["json"]["id"]]
        expected = (tmp_path / "files" / row["path"]).read_bytes()
        assert sample["jpg"].size == (row["width"], row["height"])
        assert np.array_equal(np.asarray(sample["jpg"]), np.asarray(Image.open(io.BytesIO(expected))))
        meta = {k: row[k] for k in ("id", "width", "height", "format", "size", "bytes")}
        assert sample["json"] == meta  # the data/ row less its path
    listed = pq.read_table(tmp_path / "wds" / "data").to_pylist()
    assert all((tmp_path / "wds" / row["path"]).exists() and row[TAR_KEY] for row in listed)
    errors = pq.read_table(tmp_path / "wds" / "errors").to_pylist()
    assert sorted(row["id"] for row in errors) == ["broken.jpg", "sub/empty.png"]

    # the output folder as input (its tars; Parquet and the record are no tars): same ids, same images
    again = transform(
        "input=webdataset",
        f"input.path={tmp_path / 'wds'}",
        f"output.path={tmp_path / 'again'}",
        "output.columns=[json]",
        "transform.sizes=[24]",
        "transform.format=png",
    )
    assert (again.rows_written, again.rows_errored) == (30, 0)
    back = pq.read_table(tmp_path / "again" / "data").to_pylist()
    assert sorted(id_of_key(row["id"]) for row in back) == good
    assert sorted(json.loads(row["json"])["id"] for row in back) == good
    for row in back:  # lossless PNG of the tar's JPEG: the same pixels as the first job's file
        first = Image.open(tmp_path / "files" / rows[id_of_key(row["id"])]["path"])
        assert np.array_equal(np.asarray(Image.open(tmp_path / "again" / row["path"])), np.asarray(first))


def test_a_resume_replaces_the_tars_of_unfinished_shards_and_a_killed_runs_tars(local_ray, tmp_path):
    """What a SIGKILL leaves (a journal short of some shards, no _SUCCESS, a killed run's tar of
    an unfinished shard) made by hand: the re-run redoes those shards whole, once each."""
    made = write_images(tmp_path / "in", count=30)
    common = [f"input.path={tmp_path / 'in'}", f"output.path={tmp_path / 'out'}", "output=webdataset"]
    transform(*common, "output.tar_samples=3")
    out = tmp_path / "out"
    (out / "_SUCCESS").unlink()
    write_progress(*filesystem(str(out)), {0, 2})  # shards 1 and 3 unfinished
    stale = out / "tars" / "part-000001-00000000-0-deadbeef-0000.tar"  # the killed run's, cut short
    stale.write_bytes(next((out / "tars").iterdir()).read_bytes()[:900])
    before = {p.name for p in (out / "tars").iterdir() if parse_part_name(p.name)[0] in (0, 2)}

    result = transform(*common, "output.tar_samples=3")
    assert (result.rows_written, result.rows_errored, result.ok) == (30, 2, True)
    assert not stale.exists()
    after = {p.name for p in (out / "tars").iterdir()}
    assert before <= after  # done shards kept as they were
    runs = {parse_part_name(name)[1] for name in before}
    assert {parse_part_name(name)[0] for name in after - before} == {1, 3}  # redone by the new run
    assert not runs & {parse_part_name(name)[1] for name in after - before}
    samples = read_tars(out / "tars")
    assert sorted(s["json"]["id"] for s in samples) == sorted(n for n, blob in made.items() if blob)


def test_tars_on_s3(local_ray, tmp_path, s3):
    fs, options = s3
    write_images(tmp_path / "in", count=6)
    fs.put(str(tmp_path / "in"), "rayjobs-test/wds-in", recursive=True)
    result = transform(
        "input.path=s3://rayjobs-test/wds-in",
        "output.path=s3://rayjobs-test/wds-out",
        "output=webdataset",
        "output.tar_samples=2",
        "input.shard_rows=4",
        *storage_overrides(options),
    )
    assert (result.rows_written, result.rows_errored) == (6, 2)
    tars = sorted(fs.find("rayjobs-test/wds-out/tars"))
    assert len(tars) == 4  # shards of 4 and 4 files: 3 + 3 images, at most 2 a tar
    ids = [json.loads(s["json"])["id"] for tar in tars for s in read_samples(fs, tar)[0]]
    expected = sorted(f"{'sub/' if i % 4 == 0 else ''}img{i:03d}.jpg" for i in range(6))
    assert sorted(ids) == expected
    # the tars on S3 as input (a brace pattern over two of them, then the whole folder)
    names = [tar.rsplit("/", 1)[1] for tar in tars]
    pattern = f"s3://rayjobs-test/wds-out/tars/{{{names[0].removesuffix('.tar')},{names[1].removesuffix('.tar')}}}.tar"
    in_two = sum(len(read_samples(fs, tar)[0]) for tar in tars[:2])
    for source, count in ((pattern, in_two), ("s3://rayjobs-test/wds-out", 6)):
        again = transform(
            "input=webdataset",
            f'input.path="{source}"',
            f"output.path={tmp_path / 'again' / str(count)}",
            "output.columns=[json]",
            *storage_overrides(options),
        )
        assert (again.rows_written, again.rows_errored) == (count, 0)
        back = pq.read_table(tmp_path / "again" / str(count) / "data").to_pylist()
        assert {json.loads(row["json"])["id"] for row in back} <= set(expected) and len(back) == count


def test_generate_images_to_tars(local_ray, tmp_path, tiny_stable_diffusion):
    from tests.integration.test_generate_images import settings, write_prompts

    write_prompts(tmp_path / "prompts.csv")
    overrides = ["output=webdataset", "model.n=2", "output.image_format=png", "output.tar_samples=4"]
    cfg = rayjobs.compose("generate_images", settings(tmp_path, tiny_stable_diffusion, *overrides))
    result = rayjobs.run(cfg)
    assert (result.rows_written, result.rows_errored) == (6, 1)
    samples = read_tars(tmp_path / "out" / "tars")
    assert sorted(s["__key__"] for s in samples) == sorted(
        f"{p}@{i}" for p in ("shoe", "cat", "sea") for i in (0, 1)
    )
    data = {row["id"]: row for row in pq.read_table(tmp_path / "out" / "data").to_pylist()}
    for sample in samples:
        meta = sample["json"]
        assert sample["png"].size == (16, 16) and meta["id"] == sample["__key__"]
        assert {k: meta[k] for k in ("prompt", "seed", "parent_id", "index")} == {
            k: data[meta["id"]][k] for k in ("prompt", "seed", "parent_id", "index")
        }


def test_score_images_kept_set_to_tars_as_the_images_came(local_ray, tmp_path, tiny_clip):
    from tests.integration.test_score_images import settings, write_table
    from tests.operators.image.test_image_scorer import direct

    rows = write_table(tmp_path / "in" / "images.parquet")
    good = sorted(k for k in rows if k.startswith("k"))
    image, text, _ = direct(tiny_clip, [rows[k][0] for k in good], [rows[k][1] for k in good], padding=True)
    ranked = sorted((image * text).sum(dim=-1).tolist())
    threshold = round((ranked[5] + ranked[6]) / 2, 6)  # half kept, half filtered
    overrides = ["output=webdataset", "score.text_column=prompt", f"filter=['clip_cosine >= {threshold}']"]
    result = rayjobs.run(rayjobs.compose("score_images", settings(tmp_path, tiny_clip, *overrides)))

    kept = {row["id"] for row in pq.read_table(tmp_path / "out" / "data").to_pylist()}
    filtered = {row["id"] for row in pq.read_table(tmp_path / "out" / "filtered").to_pylist()}
    assert len(kept) == result.rows_written == 6 and kept | filtered == set(good)
    samples = read_tars(tmp_path / "out" / "tars")
    assert sorted(s["__key__"] for s in samples) == sorted(kept)
    for sample in samples:
        assert sample["json"]["prompt"] == rows[sample["__key__"]][1]
        assert "image" not in sample["json"] and sample["json"]["clip_cosine"] >= threshold
    fs, _ = filesystem(str(tmp_path))
    raw = [s for tar in (tmp_path / "out" / "tars").iterdir() for s in read_samples(fs, str(tar))[0]]
    assert all(s["jpg"] == rows[s["__key__"]][0] for s in raw)  # the input bytes, not re-encoded
