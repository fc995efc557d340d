"""`ray job submit --working-dir . -- python -m rayjobs.embed_texts ...` against a real head node
that this test starts on 127.0.0.1 and stops (only its own processes: other tests' Ray survives)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.integration.inputs import write_texts

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise TimeoutError(f"{what} not ready after {seconds:.0f} s")


@pytest.fixture
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
