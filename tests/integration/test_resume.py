"""Kill the driver with SIGKILL part-way through, run the same command again: every input row
ends up exactly once in data/ or errors/."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rayjobs.pipeline.run_record import decode_ranges
from tests.integration.faulty_operators import slow_job_overrides
from tests.integration.inputs import BAD_TEXTS, write_texts

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]
ROWS = 1200


def done_shards(out: Path) -> int:
    try:
        return len(decode_ranges(json.loads((out / "_progress.json").read_text())["done"]))
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def files(out: Path) -> int:
    return len(list((out / "data").glob("*.parquet"))) if (out / "data").exists() else 0


KILL_POINTS = {
    "after_ray_started": lambda out: (out / "_run.json").exists(),
    "while_writing": lambda out: files(out) >= 4,
    "after_shards_journalled": lambda out: done_shards(out) >= 3,
}


def command(source: Path, out: Path, model: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "rayjobs.embed_texts",
        *slow_job_overrides(source, out, model),
        "runtime.num_cpus=2",
        "job.progress_interval_s=0.5",
    ]


def read_ids(folder: Path) -> list:
    return pq.read_table(folder)["id"].to_pylist() if folder.exists() else []


def local_ray_env() -> dict:
    """The driver starts a Ray of its own, whatever RAY_ADDRESS the test run has."""
    return {**os.environ, "RAY_ADDRESS": ""}


def kill_then_rerun(
    command: list[str], out: Path, reached, name: str, timeout: float = 300
) -> subprocess.CompletedProcess:
    """SIGKILL the driver at a kill point (nothing finished yet), then run the same command to the end."""
    env = local_ray_env()
    kill_when(command, env, reached, name)
    assert not (out / "_SUCCESS").exists()
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    return second


def kill_when(command: list[str], env: dict, reached, name: str, seconds: float = 240) -> None:
    """Start the driver, SIGKILL it once `reached()` holds (its Ray processes die or linger on their own)."""
    first = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + seconds
    while not reached():
        assert first.poll() is None, "the first run ended before the kill point"
        assert time.monotonic() < deadline, f"kill point {name} never reached"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)


@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_sigkill_then_rerun_writes_every_row_exactly_once(tmp_path, tiny_bert, point):
    source = write_texts(tmp_path / "in", rows=ROWS, files=2)
    out = tmp_path / "out"
    run = command(tmp_path / "in", out, tiny_bert)
    second = kill_then_rerun(run, out, lambda: KILL_POINTS[point](out), point)
    written, errored = read_ids(out / "data"), read_ids(out / "errors")
    assert len(written) == len(set(written)) and len(errored) == len(set(errored)), "a row was written twice"
    assert sorted(written + errored) == sorted(source)
    assert sorted(errored) == sorted(1000 + row for row in BAD_TEXTS)
    record = json.loads((out / "_run.json").read_text())
    assert record["status"] == "done"
    assert (record["stats"]["rows_written"], record["stats"]["rows_errored"]) == (ROWS - 3, 3)
    if point == "after_shards_journalled":
        assert record["stats"]["rows_resumed"] >= 3 * 60
        assert "resuming" in second.stdout

    third = subprocess.run(run, env=local_ray_env(), capture_output=True, text=True, timeout=120)
    assert third.returncode == 0 and "already finished" in third.stdout
