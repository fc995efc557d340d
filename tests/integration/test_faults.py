"""Faults during a run cost a retry, not rows: a killed model actor, a lost worker node, a flaky S3."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import rayjobs
from tests.integration.conftest import storage_overrides
from tests.integration.faulty_operators import slow_job_overrides
from tests.integration.flaky_proxy import FlakyProxy
from tests.integration.inputs import BAD_TEXTS, write_texts

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]


def assert_exactly_once(out: Path, source: dict) -> None:
    written = pq.read_table(out / "data")["id"].to_pylist()
    errored = pq.read_table(out / "errors")["id"].to_pylist()
    assert len(written) == len(set(written)) and len(errored) == len(set(errored)), "a row was written twice"
    assert sorted(written + errored) == sorted(source)
    assert sorted(errored) == sorted(1000 + row for row in BAD_TEXTS)
    assert (out / "_SUCCESS").exists()


def model_actor_pids() -> list[int]:
    found = subprocess.run(
        ["pgrep", "-f", r"MapWorker\(MapBatches\(.*ModelStage"], capture_output=True, text=True
    )
    return [int(pid) for pid in found.stdout.split()]


def test_a_model_actor_killed_mid_batch_costs_only_a_retry(local_ray, tmp_path, tiny_bert):
    source = write_texts(tmp_path / "in", rows=900, files=1)
    out = tmp_path / "out"
    killed: list[int] = []

    def kill_the_actor() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            pids = model_actor_pids()
            if pids and len(list((out / "data").glob("*.parquet"))) >= 2:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_actor, daemon=True)
    killer.start()
    result = rayjobs.run(rayjobs.compose("embed_texts", slow_job_overrides(tmp_path / "in", out, tiny_bert)))
    killer.join(timeout=5)
    assert killed, "the model actor was never killed"
    assert (result.rows_written, result.rows_errored, result.ok) == (897, 3, True)
    assert_exactly_once(out, source)


def test_a_worker_node_removed_mid_job(tmp_path, tiny_bert):
    source = write_texts(tmp_path / "in", rows=900, files=2)
    out = tmp_path / "out"
    job = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.node_loss_job", str(tmp_path / "in"), str(out), tiny_bert],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "RAY_ADDRESS": ""},
    )
    try:
        stdout, stderr = job.communicate(timeout=330)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)  # the cluster's processes are in the job's session too
        stdout, stderr = job.communicate()
    assert job.returncode == 0, stdout[-2000:] + stderr[-4000:]
    assert "worker node removed" in stdout
    assert "897 rows written, 3 errors" in stdout
    assert_exactly_once(out, source)
    assert json.loads((out / "_run.json").read_text())["stats"]["cluster"]["nodes"] == 2


def test_transient_s3_errors_are_retried(local_ray, s3, tmp_path, tiny_bert):
    from urllib.parse import urlparse

    fs, options = s3
    source = write_texts(tmp_path / "in", rows=300, files=3)
    fs.put(str(tmp_path / "in") + "/", "rayjobs-test/flaky-in/", recursive=True)
    target = urlparse(options["endpoint_url"])
    with FlakyProxy(target.hostname, target.port, failure_rate=0.3) as proxy:
        flaky = {**options, "endpoint_url": proxy.url}
        cfg = rayjobs.compose(
            "embed_texts",
            [
                "input.path=s3://rayjobs-test/flaky-in",
                "input.id_column=doc_id",
                "output.path=s3://rayjobs-test/flaky-out",
                f"model.path={tiny_bert}",
                "input.shard_rows=50",
                "runtime.progress_bars=false",
                "job.max_error_fraction=0.1",
                *storage_overrides(flaky),
            ],
        )
        result = rayjobs.run(cfg)
    assert proxy.failures >= 10, (proxy.failures, proxy.requests)
    assert (result.rows_written, result.rows_errored) == (297, 3)
    written = pq.read_table("rayjobs-test/flaky-out/data", filesystem=fs)["id"].to_pylist()
    errored = pq.read_table("rayjobs-test/flaky-out/errors", filesystem=fs)["id"].to_pylist()
    assert sorted(written + errored) == sorted(source) and len(written) == len(set(written))
