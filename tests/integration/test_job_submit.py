"""Jobs on a real head node that this module starts on 127.0.0.1 and stops (only its own
processes: other tests' Ray survives): `ray job submit --working-dir . -- python -m rayjobs...`,
and the `rayjobs` command (submit, status with progress, logs, cancel, resubmit resumes)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest

from rayjobs.pipeline import run_record
from tests.integration.faulty_operators import slow_job_overrides
from tests.integration.inputs import write_texts
from tests.integration.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def wait_for(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise TimeoutError(f"{what} not ready after {seconds:.0f} s")


@pytest.fixture(scope="module")
def head_node():
    """A Ray head on loopback with the job server; yields (dashboard address, environment)."""
    temp_dir = tempfile.mkdtemp(prefix="rjhead", dir="/tmp")  # short: Ray's socket paths are length-limited
    dashboard = free_port()
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "RAY_AUTH_MODE": "disabled",
        "RAY_ADDRESS": "",
        "HF_HUB_OFFLINE": "1",
    }
    head = subprocess.Popen(
        [
            str(BIN / "ray"),
            "start",
            "--head",
            "--block",
            "--num-cpus=2",
            "--node-ip-address=127.0.0.1",
            f"--port={free_port()}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--temp-dir={temp_dir}",
            "--include-dashboard=true",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{dashboard}"
    try:
        wait_for(lambda: _job_server_up(address, env), 90, "ray head job server")
        yield address, env
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops its own processes
        try:
            head.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        subprocess.run(["pkill", "-9", "-f", temp_dir], check=False)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _job_server_up(address: str, env: dict) -> bool:
    done = subprocess.run(
        [str(BIN / "ray"), "job", "list", "--address", address], env=env, capture_output=True, timeout=30
    )
    return done.returncode == 0


def test_job_submit_with_working_dir(head_node, tmp_path, tiny_bert):
    address, env = head_node
    write_texts(tmp_path / "in", rows=40, files=2)
    out = tmp_path / "out"
    command = [
        str(BIN / "ray"),
        "job",
        "submit",
        "--address",
        address,
        "--working-dir",
        ".",
        "--",
        "python",
        "-m",
        "rayjobs.embed_texts",
        "runtime=cluster",
        f"input.path={tmp_path / 'in'}",
        "input.id_column=doc_id",
        f"output.path={out}",
        f"model.path={tiny_bert}",
        "job.max_error_fraction=0.1",
    ]
    for _ in range(6):  # the head's job agent can come up after its dashboard does
        submit = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        if "No available agent" not in submit.stdout + submit.stderr:
            break
        time.sleep(5)
    logs = submit.stdout + submit.stderr
    assert submit.returncode == 0, logs[-4000:]
    assert "succeeded" in logs and "embed_texts: done: 37 rows written, 3 errors" in logs
    assert pq.read_table(out / "data").num_rows == 37
    assert (out / "_SUCCESS").exists()


def rayjobs_cli(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "rayjobs"), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_rayjobs_submit_refuses_a_bad_config_before_submitting(head_node, tmp_path):
    address, env = head_node
    before = rayjobs_cli(env, "list", "--address", address).stdout
    bad = rayjobs_cli(
        env,
        "submit",
        "embed_texts",
        f"input.path={tmp_path}",
        "output.path=/tmp/x",
        "model.batch_size=-3",
        "--address",
        address,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()]  # one line
    assert "model.batch_size" in bad.stderr
    assert rayjobs_cli(env, "list", "--address", address).stdout == before
    unknown = rayjobs_cli(env, "status", "raysubmit_nosuchjob", "--address", address)
    assert unknown.returncode == 2 and "no job 'raysubmit_nosuchjob'" in unknown.stderr


def journalled(out: Path) -> set[int]:
    """The shards a run has marked done in its output's journal."""
    try:
        return run_record.read_progress(fsspec.filesystem("file"), str(out))
    except ValueError:  # caught mid-write
        return set()


def test_rayjobs_submit_status_logs_cancel_and_resubmit_resumes(head_node, tmp_path, tiny_bert):
    address, env = head_node
    texts = write_texts(tmp_path / "in", rows=240, files=2)
    out = tmp_path / "out"
    overrides = [
        *slow_job_overrides(tmp_path / "in", out, tiny_bert),
        "input.shard_rows=24",
        "job.progress_interval_s=1",
    ]

    def submit(*extra: str) -> str:
        for _ in range(6):  # the head's job agent can come up after its dashboard does
            done = rayjobs_cli(
                env, "submit", "embed_texts", *overrides, *extra, "--address", address, timeout=300
            )
            if "No available agent" not in done.stderr:
                break
            time.sleep(5)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout.strip()

    def status(job_id: str) -> dict:
        done = rayjobs_cli(env, "status", job_id, "--json", "--address", address)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    first = submit("+runtime.env_vars.SLOW_EMBEDDER_SECONDS=3")  # 8 rows per 3 s: time to look
    assert first.startswith("raysubmit_")
    # rows settle across the shards in flight: wait for a whole shard in the journal, what resume keeps
    wait_for(lambda: journalled(out), 240, "first shard journalled")
    running = status(first)
    assert running["state"] == "running" and running["job"] == "embed_texts"
    assert running["rows_total"] == 240 and 24 <= running["rows_done"] < 240
    assert running["rows_per_s"] > 0 and running["eta_s"] > 0 and running["output_path"] == str(out)
    line = rayjobs_cli(env, "status", first, "--address", address).stdout
    assert f"{first}  embed_texts  running  " in line and "/240 rows" in line and "ETA" in line
    logs = rayjobs_cli(env, "logs", first, "--address", address).stdout
    assert "embed_texts: " in logs and "rows/s" in logs

    cancel = rayjobs_cli(env, "cancel", first, "--address", address)
    assert cancel.returncode == 0 and "stopping" in cancel.stdout
    wait_for(lambda: status(first)["state"] == "stopped", 60, "stopped job")
    stopped = status(first)
    assert stopped["rows_done"] < 240 and not (out / "_SUCCESS").exists()

    second = submit("runtime.cpu_hour_cost=3.6")  # runtime is not fingerprinted: this resumes
    wait_for(lambda: status(second)["state"] in ("succeeded", "failed"), 300, "resubmitted job")
    final = status(second)
    assert final["state"] == "succeeded", rayjobs_cli(env, "logs", second, "--address", address).stdout[
        -3000:
    ]
    assert final["rows_done"] == final["rows_total"] == 240 and final["errors"] == 3
    usage = final["usage"]
    assert usage["tokens_in"] > 0 and usage["cpu_s"] > 0 and usage["gpu_s"] == 0
    assert usage["cost"] == pytest.approx(usage["cpu_s"] / 1000, abs=1e-3)  # 3.6 per CPU-hour
    assert "resuming: " in rayjobs_cli(env, "logs", second, "--address", address).stdout
    followed = rayjobs_cli(env, "logs", second, "--follow", "--address", address)
    assert "embed_texts: done: 237 rows written, 3 errors" in followed.stdout
    ids = pq.read_table(out / "data", columns=["id"])["id"].to_pylist()
    assert sorted(ids) == sorted(k for k, text in texts.items() if text and text.strip())
    listed = rayjobs_cli({**env, "RAY_ADDRESS": address}, "list").stdout  # the cluster from RAY_ADDRESS
    assert (
        f"{second}  embed_texts  succeeded  240/240 rows" in listed
        and f"{first}  embed_texts  stopped" in listed
    )


def test_the_example_notebook_runs_on_a_real_kernel(head_node, tmp_path, monkeypatch):
    """docs/notebook.ipynb, every cell, on a Jupyter kernel: embed -> index -> search locally,
    then rayjobs.submit to this module's head node."""
    nbclient = pytest.importorskip("nbclient")
    import nbformat

    address, env = head_node
    monkeypatch.setenv("RAYJOBS_NOTEBOOK_DIR", str(tmp_path))
    monkeypatch.setenv("RAYJOBS_CLUSTER", address)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    notebook = nbformat.read(REPO / "docs" / "notebook.ipynb", as_version=4)
    nbclient.NotebookClient(
        notebook, timeout=400, kernel_name="python3", resources={"metadata": {"path": str(REPO / "docs")}}
    ).execute()
    printed = [
        "".join(
            output.get("text", "") for output in cell.get("outputs", []) if output.get("name") == "stdout"
        )
        for cell in notebook.cells
        if cell.cell_type == "code"
    ]
    assert "embed_texts: done: 6 rows written, 0 errors" in printed[1]
    bar = "".join(
        output.get("text", "") for output in notebook.cells[3].outputs if output.get("name") == "stderr"
    )
    assert "embed_texts: 100%" in bar and "6/6" in bar  # the notebook's progress bar, not log lines
    assert printed[2].startswith("3 ['id', 'embedding', 'truncated', 'text'] 384")
    assert "errors: 0 rows in the dataset: 6" in printed[2]
    assert "best match: sku-0 - a red running shoe with a thick sole" in printed[3]
    assert printed[4].strip().endswith("succeeded 6/6 rows") and printed[4].startswith("raysubmit_")
    assert pq.read_table(tmp_path / "submitted" / "data").num_rows == 6
