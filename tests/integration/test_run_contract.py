"""The run contract on real local Ray, for a job of every shape at once (tests.integration.
contract_job: fan-out, two model pools, a filter): every (parent, index) ends exactly once in
data/, errors/ or filtered/, also after the driver is SIGKILLed at several points and re-run."""

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.integration.contract_job import children, overrides
from tests.integration.inputs import BAD_TEXTS, write_texts
from tests.integration.test_resume import done_shards, files, kill_then_rerun

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
ROWS = 400


def expected(source: dict) -> dict[str, set]:
    """(parent, index) per outcome: bad texts fail before the fan-out, index 2 is filtered."""
    bad = {1000 + row for row in BAD_TEXTS}
    outcomes: dict[str, set] = {"data": set(), "errors": {(str(i), None) for i in bad}, "filtered": set()}
    for doc in source:
        if doc in bad:
            continue
        for index in range(children(doc)):
            outcomes["filtered" if index >= 2 else "data"].add((str(doc), index))
    return outcomes


def outcomes(out: Path) -> dict[str, list]:
    found = {}
    for folder in ("data", "errors", "filtered"):
        rows = pq.read_table(out / folder).to_pylist() if (out / folder).exists() else []
        found[folder] = [(r["parent_id"] or r["id"], r["index"]) for r in rows]
    return found


def command(source: Path, out: Path, model: str) -> list[str]:
    return [sys.executable, "-m", "tests.integration.contract_job", *overrides(source, out, model)]


def assert_exactly_once(out: Path, source: dict) -> None:
    found = outcomes(out)
    for folder, pairs in found.items():
        assert len(pairs) == len(set(pairs)), f"a row was written twice in {folder}/"
    want = expected(source)
    assert {folder: {(str(p), i) for p, i in pairs} for folder, pairs in found.items()} == want
    record = json.loads((out / "_run.json").read_text())["stats"]
    assert (record["rows_written"], record["rows_errored"], record["rows_filtered"]) == tuple(
        len(want[folder]) for folder in ("data", "errors", "filtered")
    )
    data = pq.read_table(out / "data")
    assert data.column_names[:3] == ["id", "parent_id", "index"] and "norm" in data.column_names
    assert all(abs(norm - 1.0) < 1e-3 or norm > 0 for norm in data["norm"].to_pylist())
    filtered = pq.read_table(out / "filtered").to_pylist()
    assert {(row["stage"], row["reason"]) for row in filtered} == {("judge", "index 2 >= 2")}
    assert (out / "_SUCCESS").exists()


KILL_POINTS = {
    "while_writing": lambda out: files(out) >= 3,
    "after_shards_journalled": lambda out: done_shards(out) >= 2,
}


@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_sigkill_then_rerun_settles_every_parent_and_index_exactly_once(tmp_path, tiny_bert, point):
    source = write_texts(tmp_path / "in", rows=ROWS, files=2)
    out = tmp_path / "out"
    kill_then_rerun(
        command(tmp_path / "in", out, tiny_bert), out, lambda: KILL_POINTS[point](out), point, 400
    )
    assert_exactly_once(out, source)
