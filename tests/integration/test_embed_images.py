"""embed_images end to end on a real local Ray: image folders and Parquet tables of bytes."""

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import rayjobs
from tests.integration.inputs import jpeg, write_image_table, write_images
from tests.integration.reference import image_vectors, min_cosine

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def vectors_by_id(folder) -> dict:
    table = pq.read_table(folder / "data")
    return dict(zip(table["id"].to_pylist(), table["embedding"].to_numpy(zero_copy_only=False), strict=True))


@pytest.mark.parametrize("model", ["tiny_clip", "tiny_siglip"])
def test_image_folder_end_to_end_matches_a_direct_model_call(local_ray, tmp_path, model, request):
    path = request.getfixturevalue(model)
    made = write_images(tmp_path / "images", count=30)
    cfg = rayjobs.compose(
        "embed_images",
        [
            f"input.path={tmp_path / 'images'}",
            f"output.path={tmp_path / 'out'}",
            f"model.path={path}",
            "input.shard_rows=8",
            "model.batch_size=5",
            "preprocess.batch_size=4",
            "runtime.progress_bars=false",
            "job.max_error_fraction=0.1",
        ],
    )
    result = rayjobs.run(cfg)

    good = {name: data for name, data in made.items() if data is not None}
    assert (result.rows, result.rows_written, result.rows_errored, result.ok) == (32, 30, 2, True)
    table = pq.read_table(tmp_path / "out" / "data")
    assert table.column_names == ["id", "embedding"]
    assert pa.types.is_fixed_size_list(table.schema.field("embedding").type)
    ours = vectors_by_id(tmp_path / "out")
    assert sorted(ours) == sorted(good)
    names = sorted(good)
    assert (
        min_cosine(np.stack([ours[n] for n in names]), image_vectors(path, [good[n] for n in names])) >= 0.999
    )

    errors = {e["id"]: e for e in pq.read_table(tmp_path / "out" / "errors").to_pylist()}
    assert set(errors) == {"broken.jpg", "sub/empty.png"}
    assert errors["sub/empty.png"]["reason"] == "ValueError: empty file (0 bytes)"
    assert {e["stage"] for e in errors.values()} == {"decode"}


def test_decode_on_the_device_matches_the_host_path(local_ray, tmp_path, tiny_clip):
    """model.decode=device: the CPU stage reads headers only, the actor decodes; a file that is
    corrupt past its header becomes the model stage's error row, its neighbours unharmed."""
    made = write_images(tmp_path / "images", count=12)
    whole = jpeg(99, (256, 192))
    (tmp_path / "images" / "cut.jpg").write_bytes(whole[: len(whole) * 3 // 4])
    cfg = rayjobs.compose(
        "embed_images",
        [
            f"input.path={tmp_path / 'images'}",
            f"output.path={tmp_path / 'out'}",
            f"model.path={tiny_clip}",
            "model.decode=device",
            "model.batch_size=4",
            "input.shard_rows=8",
            "runtime.progress_bars=false",
            "job.max_error_fraction=0.5",
        ],
    )
    result = rayjobs.run(cfg)

    good = {name: data for name, data in made.items() if data is not None}
    assert (result.rows, result.rows_written, result.rows_errored) == (15, 12, 3)
    ours = vectors_by_id(tmp_path / "out")
    names = sorted(good)
    assert sorted(ours) == names
    expected = image_vectors(tiny_clip, [good[n] for n in names])
    assert min_cosine(np.stack([ours[n] for n in names]), expected) >= 0.995
    errors = {e["id"]: e for e in pq.read_table(tmp_path / "out" / "errors").to_pylist()}
    assert {name: e["stage"] for name, e in errors.items()} == {
        "broken.jpg": "decode",
        "sub/empty.png": "decode",
        "cut.jpg": "model",
    }
    assert "truncated" in errors["cut.jpg"]["reason"]


def test_parquet_table_of_image_bytes_with_passthrough_columns(local_ray, tmp_path, tiny_clip):
    images = write_image_table(tmp_path / "table" / "images.parquet", count=12)
    cfg = rayjobs.compose(
        "embed_images",
        [
            "input=parquet",
            f"input.path={tmp_path / 'table'}",
            "input.image_column=jpeg",
            "input.id_column=key",
            f"output.path={tmp_path / 'out'}",
            "output.columns=[caption]",
            f"model.path={tiny_clip}",
            "output.embedding_dtype=float16",
            "input.shard_rows=5",
            "runtime.progress_bars=false",
        ],
    )
    result = rayjobs.run(cfg)
    assert (result.rows_written, result.rows_errored) == (12, 0)
    table = pq.read_table(tmp_path / "out" / "data")
    assert table.column_names == ["id", "embedding", "caption"]
    assert table.schema.field("embedding").type == pa.list_(pa.float16(), 16)
    assert dict(zip(table["id"].to_pylist(), table["caption"].to_pylist(), strict=True))["k3"] == "caption 3"
    ours = vectors_by_id(tmp_path / "out")
    keys = sorted(images)
    expected = image_vectors(tiny_clip, [images[k] for k in keys])
    assert min_cosine(np.stack([ours[k].astype(np.float32) for k in keys]), expected) >= 0.999


def test_cli_embeds_a_folder(tmp_path, tiny_clip):
    write_images(tmp_path / "images", count=6)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rayjobs.embed_images",
            f"input.path={tmp_path / 'images'}",
            f"output.path={tmp_path / 'out'}",
            f"model.path={tiny_clip}",
            "runtime.num_cpus=2",
            "runtime.progress_bars=false",
            "job.max_error_fraction=0.5",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "embed_images: done: 6 rows written, 2 errors" in done.stdout
    assert len(vectors_by_id(tmp_path / "out")) == 6


def test_webdataset_tars_embed_like_image_files(local_ray, tmp_path, tiny_clip):
    """WebDataset shards (a brace pattern): ids are the samples' keys, vectors equal a direct model
    call, a corrupt image member and a tar cut inside a member are error rows, nothing else lost."""
    import io
    import tarfile

    def write_tar(path, members: dict[str, bytes]) -> None:
        with tarfile.open(path, "w") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

    shards = tmp_path / "shards"
    shards.mkdir()
    images = {f"s{i:03d}": jpeg(i, (40 + i, 32)) for i in range(12)}
    write_tar(
        shards / "d-000.tar",
        {
            f"{k}.{ext}": v if ext == "jpg" else k.encode()
            for k, v in list(images.items())[:6]
            for ext in ("jpg", "txt")
        },
    )
    members = {f"{k}.jpg": v for k, v in list(images.items())[6:]}
    members["s009.jpg"] = b"\xff\xd8 not a jpeg"  # a corrupt member
    write_tar(shards / "d-001.tar", members)
    with tarfile.open(shards / "d-001.tar") as tar:
        cut = tar.getmember("s011.jpg").offset_data + 50
    (shards / "d-001.tar").write_bytes((shards / "d-001.tar").read_bytes()[:cut])
    cfg = rayjobs.compose(
        "embed_images",
        [
            "input=webdataset",
            f"input.path='{shards}/d-{{000..001}}.tar'",  # quoted: Hydra's grammar reads braces
            f"output.path={tmp_path / 'out'}",
            f"model.path={tiny_clip}",
            "model.batch_size=4",
            "runtime.progress_bars=false",
            "job.max_error_fraction=0.5",
        ],
    )
    result = rayjobs.run(cfg)

    ours = vectors_by_id(tmp_path / "out")
    good = [k for k in images if k not in ("s009", "s011")]
    assert sorted(ours) == good
    assert (
        min_cosine(np.stack([ours[k] for k in good]), image_vectors(tiny_clip, [images[k] for k in good]))
        >= 0.999
    )
    errors = {e["id"]: e for e in pq.read_table(tmp_path / "out" / "errors").to_pylist()}
    assert set(errors) == {"s009", "d-001.tar"}
    assert errors["s009"]["stage"] == "decode" and errors["d-001.tar"]["stage"] == "read"
    assert errors["d-001.tar"]["reason"].startswith("tar cut short after 5 samples")  # s006-s010
    assert (result.rows, result.rows_written, result.rows_errored) == (2, 10, 2)
