import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from operators.row_errors import ERROR, ERROR_STAGE
from rayjobs.config.config_error import ConfigError
from rayjobs.config.run_spec import InputSpec
from rayjobs.io.input_formats import FORMATS
from rayjobs.io.parquet_input import rows_of
from rayjobs.io.read_input import plan_input, read_options, read_shard
from rayjobs.io.shards import ROW, SHARD


def parquet_cfg(path, **extra):
    return InputSpec.parse({"format": "parquet", "path": str(path), "shard_rows": 10, **extra})


def images_cfg(path, **extra):
    return InputSpec.parse(
        {"format": "images", "path": str(path), "shard_rows": 3, "extensions": [".jpg", ".png"], **extra}
    )


def read(plan, cfg, columns, shards=None):
    options = read_options(plan, cfg, columns)
    return pa.concat_tables(read_shard(shard, options) for shard in shards or plan.shards)


def test_every_format_has_a_plan_and_a_read_and_the_config_check_knows_it():
    assert set(FORMATS) == {"parquet", "images", "videos", "webdataset", "csv", "jsonl", "openai_batch"}
    with pytest.raises(ConfigError) as caught:
        InputSpec.parse({"path": "x", "format": "xlsx"})
    assert caught.value.key == "input.format" and "openai_batch" in caught.value.problem


@pytest.fixture
def two_files(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    pq.write_table(
        pa.table({"key": range(25), "text": [f"t{i}" for i in range(25)]}),
        folder / "a.parquet",
        row_group_size=7,
    )
    pq.write_table(pa.table({"key": range(100, 104), "text": ["x"] * 4}), folder / "b.parquet")
    (folder / "_ignored.parquet").write_bytes(b"junk")
    return folder


def test_parquet_shards_cover_every_row_once(two_files):
    cfg = parquet_cfg(two_files, id_column="key")
    plan = plan_input(cfg)
    assert [(s.path.rsplit("/", 1)[-1], s.start, s.rows) for s in plan.shards] == [
        ("a.parquet", 0, 10),
        ("a.parquet", 10, 10),
        ("a.parquet", 20, 5),
        ("b.parquet", 0, 4),
    ]
    table = read(plan, cfg, ["text"])
    assert table["id"].to_pylist() == [*range(25), *range(100, 104)]
    assert table[SHARD].to_pylist() == [0] * 10 + [1] * 10 + [2] * 5 + [3] * 4
    assert table[ROW].to_pylist()[:12] == [*range(10), 0, 1]
    assert table[ERROR].null_count == table.num_rows


def test_default_ids_name_file_and_row(two_files):
    cfg = parquet_cfg(two_files)
    plan = plan_input(cfg)
    table = read(plan, cfg, ["text"], plan.shards[2:4])
    assert table["id"].to_pylist()[:2] == ["a.parquet:20", "a.parquet:21"]
    assert table["id"].to_pylist()[-1] == "b.parquet:3"


def test_row_ranges_read_only_what_they_need(two_files):
    file = pq.ParquetFile(two_files / "a.parquet")
    assert rows_of(file, 6, 9, ["key"])["key"].to_pylist() == list(range(6, 15))


def test_limit_cuts_shards(two_files):
    plan = plan_input(parquet_cfg(two_files), limit=12)
    assert [s.rows for s in plan.shards] == [10, 2] and plan.rows == 12


def test_images_listed_recursively_with_relative_ids(tmp_path):
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    for name in ["b.jpg", "a.png", "sub/c.JPG", "notes.txt", "sub/d.jpg", ".hidden/e.jpg"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / name, format="PNG") if name.endswith(
            ("jpg", "png", "JPG")
        ) else (root / name).write_text("x")
    cfg = images_cfg(root)
    plan = plan_input(cfg)
    assert [s.files for s in plan.shards] == [("a.png", "b.jpg", "sub/c.JPG"), ("sub/d.jpg",)]
    (root / "b.jpg").unlink()  # vanished between listing and reading
    table = read(plan, cfg, [])
    assert table["id"].to_pylist() == ["a.png", "b.jpg", "sub/c.JPG", "sub/d.jpg"]
    assert table[ERROR_STAGE].to_pylist() == [None, "read", None, None]
    assert "b.jpg" in table[ERROR][1].as_py()
    assert table["image"][0].as_py()[:4] == b"\x89PNG"


def test_missing_and_empty_inputs_are_config_errors(tmp_path):
    with pytest.raises(ConfigError) as caught:
        plan_input(parquet_cfg(tmp_path / "nope"))
    assert caught.value.key == "input.path"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no .parquet"):
        plan_input(parquet_cfg(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="no image files"):
        plan_input(images_cfg(tmp_path / "empty"))
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / "zero.parquet")
    with pytest.raises(ConfigError, match="no rows"):
        plan_input(parquet_cfg(tmp_path / "zero.parquet"))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ConfigError, match="footers"):
        plan_input(parquet_cfg(tmp_path / "bad.parquet"))
