"""WebDataset tars as output, no Ray: keys, packing by size and count, the bytes a tar takes,
names the output folder's cleanup finds, a retry that cuts differently, and write_results with
output.format=webdataset read back by the `webdataset` library and by our own reader."""

import datetime
import io
import json
import math
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from operators.fan_out import fan_out
from operators.file_outputs import FILE_BYTES, FILE_EXT
from operators.row_errors import ERROR, ERROR_STAGE
from rayjobs.io.shards import ROW, SHARD
from rayjobs.io.storage import filesystem
from rayjobs.io.webdataset_input import read_samples
from rayjobs.io.webdataset_output import (
    TAR_KEY,
    Sample,
    id_of_key,
    json_safe,
    pack,
    sample_json_columns,
    sample_key,
    tar_bytes,
    write_tars,
)
from rayjobs.pipeline.output_folder import remove_shard_files
from rayjobs.pipeline.write_results import parse_part_name, part_name, write_results
from tests.integration.inputs import jpeg

pytestmark = pytest.mark.timeout(60)
TRICKY_IDS = ["a.jpg", "a_jpg", "a/jpg", "sub/img0.jpg", "a~2Ejpg", "~", "", ".", "..", "é.png", "x@1", "a b"]


def samples(count: int, size: int = 1000) -> list[Sample]:
    return [Sample(f"k{i}", "jpg", bytes([i % 256]) * size, b'{"n":%d}' % i) for i in range(count)]


def test_keys_have_no_dot_or_slash_are_injective_and_decode_back():
    keys = [sample_key(row_id) for row_id in TRICKY_IDS]
    assert len(set(keys)) == len(keys)
    assert not any("." in key or "/" in key or not key for key in keys)
    assert [id_of_key(key) for key in keys] == TRICKY_IDS
    assert sample_key("sub/img000.jpg") == "sub~2Fimg000~2Ejpg"
    assert sample_key("prompt-3@0") == "prompt-3@0"  # ids that are already safe keep their look


def test_json_is_plain_and_leaves_out_images_and_tensors():
    assert json_safe({"a": math.nan, "b": [1.5, math.inf], "t": datetime.date(2026, 1, 2)}) == {
        "a": None,
        "b": [1.5, None],
        "t": "2026-01-02",
    }
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("image", pa.binary()),
            ("pixels", pa.list_(pa.uint8(), 3)),
            ("labels", pa.list_(pa.string())),
            ("score", pa.float32()),
        ]
    )
    assert sample_json_columns(schema, ["id", "image", "pixels", "labels", "score", "absent"]) == [
        "id",
        "labels",
        "score",
    ]


def test_pack_by_count_and_by_size_never_splits_a_sample():
    assert [len(tar) for tar in pack(samples(7), None, 3)] == [3, 3, 1]
    # each sample: 512 + 1024 (image) + 512 + 512 (json) = 2,560 bytes; a tar pads to 10,240
    assert [len(tar) for tar in pack(samples(9), 20480, None)] == [7, 2]
    big = [Sample("big", "png", b"x" * 50_000, b"{}"), *samples(2)]
    assert [len(tar) for tar in pack(big, 20480, None)] == [1, 2]  # too big for any tar: alone
    for tar in pack(samples(30), 20480, None):
        assert len(tar_bytes(tar)) <= 20480


def test_tars_are_deterministic_and_read_back_in_order():
    data = tar_bytes(samples(3))
    assert data == tar_bytes(samples(3))  # a retried write makes the same bytes
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == ["k0.jpg", "k0.json", "k1.jpg", "k1.json", "k2.jpg", "k2.json"]


def test_a_retry_that_cuts_into_fewer_tars_removes_the_extra_ones(tmp_path):
    prefix = part_name(2, 0, "run1").removesuffix(".parquet")
    first = write_tars(filesystem(str(tmp_path))[0], str(tmp_path), prefix, samples(5), None, 1)
    assert sorted(set(first)) == [f"tars/{prefix}-{n:04d}.tar" for n in range(5)]
    again = write_tars(filesystem(str(tmp_path))[0], str(tmp_path), prefix, samples(5), None, 2)
    assert sorted(p.name for p in (tmp_path / "tars").iterdir()) == [
        f"{prefix}-{n:04d}.tar" for n in range(3)
    ]
    assert again == [f"tars/{prefix}-{n // 2:04d}.tar" for n in range(5)]
    assert not list(tmp_path.rglob("*.tmp"))


def test_tar_names_parse_to_their_shard_and_run_so_cleanup_finds_them(tmp_path):
    fs, root = filesystem(str(tmp_path))
    for shard, run in ((1, "killed"), (1, "this"), (2, "killed")):
        write_tars(fs, root, part_name(shard, 0, run).removesuffix(".parquet"), samples(2), None, 1)
    assert parse_part_name(f"tars/{part_name(1, 0, 'r9').removesuffix('.parquet')}-0003.tar") == (1, "r9")
    assert parse_part_name("tars/part-000001-00000000-0-r9-x.tar") is None
    temp = tmp_path / "tars" / f"{part_name(1, 0, 'this').removesuffix('.parquet')}-0000.tar.0a1b.tmp"
    temp.write_bytes(b"a write killed half-way")
    assert parse_part_name(temp.name)[1] != "this"  # a temp file belongs to no run: cleanup takes it
    remove_shard_files(fs, root, {1}, keep_run="this")  # shard 1 done by this run: the killed run's go
    left = sorted(p.name for p in (tmp_path / "tars").iterdir())
    assert [parse_part_name(name) for name in left] == [(1, "this")] * 2 + [(2, "killed")] * 2
    remove_shard_files(fs, root, {1, 2})  # a resume redoes unfinished shards whole
    assert not list((tmp_path / "tars").iterdir())


def image_batch() -> pa.Table:
    """Shard 0: three good images (ids with dots and slashes) and a broken one; shard 1: one image."""
    ids = ["sub/a.jpg", "b.jpg", "broken.jpg", "c.png", "d.jpg"]
    blobs = [jpeg(1), jpeg(2), None, jpeg(3), jpeg(4)]
    return pa.table(
        {
            SHARD: pa.array([0, 0, 0, 0, 1], pa.int32()),
            ROW: pa.array([0, 1, 2, 3, 0], pa.int64()),
            "id": ids,
            "caption": ["one", "two", None, "three", "four"],
            "image": pa.array(blobs, pa.binary()),
            ERROR: pa.array([None, None, "not an image", None, None], pa.string()),
            ERROR_STAGE: pa.array([None, None, "transform", None, None], pa.string()),
            FILE_BYTES: pa.array(blobs, pa.binary()),
            FILE_EXT: pa.array(["jpg", "jpg", None, "jpg", "jpg"], pa.string()),
            "width": pa.array([48, 48, None, 48, 48], pa.int32()),
            "score": pa.array([0.5, math.nan, None, 1.0, 2.0], pa.float32()),
        }
    )


def tar_output(path, **options) -> dict:
    return {
        "path": str(path),
        "results": ["width", "score"],
        "columns": ["caption", "image"],
        "error_columns": [],
        "run_id": "r1",
        "format": "webdataset",
        "tar_size_mb": 256,
        "tar_samples": None,
        **options,
    }


def test_write_results_puts_kept_images_in_tars_and_lists_them_in_data(tmp_path):
    import webdataset

    manifest = write_results(image_batch(), output=tar_output(tmp_path, tar_samples=2))
    assert [(m["shard"], m["rows"], m["errors"]) for m in manifest.to_pylist()] == [(0, 4, 1), (1, 1, 0)]
    assert not (tmp_path / "files").exists()
    tars = sorted(str(p) for p in (tmp_path / "tars").iterdir())
    assert [parse_part_name(p) for p in tars] == [(0, "r1"), (0, "r1"), (1, "r1")]  # 3 + 1 kept, 2 a tar
    read = list(webdataset.WebDataset(tars, shardshuffle=False).decode("pil"))
    assert [s["__key__"] for s in read] == ["sub~2Fa~2Ejpg", "b~2Ejpg", "c~2Epng", "d~2Ejpg"]
    by_id = {s["json"]["id"]: s for s in read}
    assert by_id["sub/a.jpg"]["json"] == {
        "id": "sub/a.jpg",
        "width": 48,
        "score": 0.5,
        "bytes": len(jpeg(1)),
        "caption": "one",
    }
    assert by_id["b.jpg"]["json"]["score"] is None  # NaN: JSON has none
    assert by_id["d.jpg"]["jpg"].size == Image.open(io.BytesIO(jpeg(4))).size
    data = pq.read_table(tmp_path / "data").to_pylist()
    assert {row["id"]: (row["path"], row[TAR_KEY]) for row in data}["c.png"] == (
        f"tars/{part_name(0, 0, 'r1').removesuffix('.parquet')}-0001.tar",
        "c~2Epng",
    )
    assert pq.read_table(tmp_path / "errors")["id"].to_pylist() == ["broken.jpg"]


def test_tars_read_back_as_input_give_the_ids_and_images(tmp_path):
    write_results(image_batch(), output=tar_output(tmp_path))
    fs, root = filesystem(str(tmp_path))
    read = []
    for tar in sorted((tmp_path / "tars").iterdir()):
        got, failure = read_samples(fs, str(tar))
        assert failure is None
        read.extend(got)
    assert [id_of_key(s["__key__"]) for s in read] == ["sub/a.jpg", "b.jpg", "c.png", "d.jpg"]
    assert [json.loads(s["json"])["id"] for s in read] == ["sub/a.jpg", "b.jpg", "c.png", "d.jpg"]
    assert read[3]["jpg"] == jpeg(4)


def test_fanned_out_children_get_keys_of_their_own(tmp_path):
    table = fan_out(image_batch().slice(0, 2), [2, 2])
    write_results(table, output=tar_output(tmp_path))
    data = pq.read_table(tmp_path / "data").to_pylist()
    assert sorted(row[TAR_KEY] for row in data) == [
        "b~2Ejpg@0",
        "b~2Ejpg@1",
        "sub~2Fa~2Ejpg@0",
        "sub~2Fa~2Ejpg@1",
    ]
