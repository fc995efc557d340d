"""WebDataset tar shards as input, no Ray: brace patterns, samples grouped by key, a tar cut short
keeps the samples before the cut and records the cut."""

import io
import json
import tarfile

import pytest

from operators.fan_out import PARTS
from operators.row_errors import ERROR
from rayjobs.config.config_error import ConfigError
from rayjobs.config.run_spec import InputSpec
from rayjobs.io.read_input import plan_input, read_options
from rayjobs.io.webdataset_input import expand_braces, read
from tests.integration.inputs import jpeg


def write_tar(path, samples: dict[str, dict[str, bytes]]) -> None:
    """A tar of `key.ext` members, in order, as webdataset's TarWriter lays them out."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, fields in samples.items():
            for extension, data in fields.items():
                info = tarfile.TarInfo(f"{key}.{extension}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def sample(i: int) -> dict[str, bytes]:
    return {"jpg": jpeg(i), "txt": f"caption {i}".encode(), "json": json.dumps({"n": i}).encode()}


def test_expand_braces():
    assert expand_braces("s/d-{000..002}.tar") == ["s/d-000.tar", "s/d-001.tar", "s/d-002.tar"]
    assert expand_braces("{a,b}/x-{1..2}.tar") == ["a/x-1.tar", "a/x-2.tar", "b/x-1.tar", "b/x-2.tar"]
    assert expand_braces("plain.tar") == ["plain.tar"]


def test_tars_are_rows_and_their_samples_fan_out(tmp_path):
    write_tar(tmp_path / "d-000.tar", {f"k{i:03d}": sample(i) for i in range(3)})
    write_tar(tmp_path / "d-001.tar", {f"k{i:03d}": sample(i) for i in range(3, 5)})
    spec = InputSpec.parse({"path": str(tmp_path / "d-{000..002}.tar"), "format": "webdataset"})
    plan = plan_input(spec)  # d-002.tar is missing: skipped with a warning
    assert [shard.files for shard in plan.shards] == [("d-000.tar",), ("d-001.tar",)]
    assert plan.rows == 2  # a tar is one input row
    rows = read(plan.shards[0], read_options(plan, spec, [])).to_pylist()
    assert [row["id"] for row in rows] == ["k000", "k001", "k002"]
    assert [row["parent_id"] for row in rows] == ["d-000.tar"] * 3 and {row[PARTS] for row in rows} == {3}
    assert (
        rows[1]["image"] == jpeg(1)
        and rows[1]["text"] == "caption 1"
        and json.loads(rows[1]["json"]) == {"n": 1}
    )


@pytest.mark.parametrize("where", ["between members", "inside a member"])
def test_a_tar_cut_short_keeps_the_samples_before_the_cut(tmp_path, where):
    write_tar(tmp_path / "whole.tar", {f"k{i}": sample(i) for i in range(6)})
    data = (tmp_path / "whole.tar").read_bytes()
    with tarfile.open(tmp_path / "whole.tar") as tar:
        member = tar.getmember("k4.jpg")
    cut = member.offset if where == "between members" else member.offset_data + 100
    (tmp_path / "cut.tar").write_bytes(data[:cut])
    (tmp_path / "whole.tar").unlink()
    (tmp_path / "junk.tar").write_bytes(b"\x00garbage" * 10)
    spec = InputSpec.parse({"path": str(tmp_path), "format": "webdataset"})
    plan = plan_input(spec)
    cut = read(plan.shards[0], read_options(plan, spec, [])).to_pylist()
    good = [row for row in cut if row[ERROR] is None]
    assert [row["id"] for row in good] == ["k0", "k1", "k2", "k3"] and all(row["image"] for row in good)
    assert cut[-1]["id"] == "cut.tar" and cut[-1][ERROR].startswith(
        f"tar cut short after {len(good)} samples"
    )
    assert {row[PARTS] for row in cut} == {len(good) + 1}
    [junk] = read(plan.shards[1], read_options(plan, spec, [])).to_pylist()
    assert junk["id"] == "junk.tar" and junk[ERROR]


def test_no_tars_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        plan_input(InputSpec.parse({"path": str(tmp_path / "x-{0..3}.tar"), "format": "webdataset"}))
    assert caught.value.key == "input.path"
