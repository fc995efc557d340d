"""The CLI: every bad config exits 2 with one line naming the key, before Ray starts."""

import json
import os
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("texts")
    pq.write_table(pa.table({"doc_id": [1, 2], "text": ["a red car", "a dog"]}), folder / "t.parquet")
    (folder / "empty").mkdir()
    return folder


def run(*args: str):
    env = {**os.environ, "RAY_ADDRESS": "", "CUDA_VISIBLE_DEVICES": ""}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "rayjobs.embed_texts", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )
    return done, time.monotonic() - started


def other_runs_output(tmp_path):
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "_run.json").write_text(json.dumps({"job": "embed_images", "fingerprint": "0123456789abcdef"}))
    return out


def foreign_folder(tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"\xff\xd8")
    return out


CASES = {
    "missing input": (lambda t, tmp: [f"input.path={t}/nope"], "input.path: ", "does not exist"),
    "empty input": (lambda t, tmp: [f"input.path={t}/empty"], "input.path: ", "no .parquet files"),
    "unknown column": (lambda t, tmp: ["input.text_column=body"], "input.text_column: ", "no column 'body'"),
    "unknown id column": (lambda t, tmp: ["input.id_column=key"], "input.id_column: ", "no column 'key'"),
    "unknown model name": (lambda t, tmp: ["model=gpt17"], "", "gpt17"),
    "unreadable model path": (
        lambda t, tmp: ["model.path=/nonexistent/model"],
        "model.path: ",
        "does not exist",
    ),
    "model folder that is no checkpoint": (
        lambda t, tmp: [f"model.path={tmp}"],
        "model.path: ",
        "config.json",
    ),
    "zero batch size": (lambda t, tmp: ["model.batch_size=0"], "model.batch_size: ", "positive integer"),
    "negative preprocess batch": (lambda t, tmp: ["preprocess.batch_size=-5"], "preprocess.batch_size: ", ""),
    "gpus where there are none": (lambda t, tmp: ["model.num_gpus=1"], "model.num_gpus: ", "has none"),
    "output of another run": (
        lambda t, tmp: [f"output.path={other_runs_output(tmp)}"],
        "output.path: ",
        "different run",
    ),
    "output that is not ours": (
        lambda t, tmp: [f"output.path={foreign_folder(tmp)}", "job.overwrite=true"],
        "output.path: ",
        "refusing",
    ),
    "unknown key": (lambda t, tmp: ["model.temprature=0.1"], "", "temprature"),
    "missing output": (lambda t, tmp: ["output.path=null"], "output.path: ", "required"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_exits_2_with_one_line_before_ray_starts(case, texts, tmp_path, minilm_path):
    make, key, problem = CASES[case]
    base = [
        f"input.path={texts}/t.parquet",
        "input.id_column=doc_id",
        f"output.path={tmp_path}/out",
        "model=minilm_offline",
    ]
    done, _ = run(*base, *make(texts, tmp_path))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stdout[-1000:] + done.stderr[-2000:]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"rayjobs embed_texts: config error: {key}") and problem in lines[0], lines[0]
    assert "Ray instance" not in done.stdout + done.stderr


def test_help_and_cfg_print_without_running(tmp_path):
    done, _ = run("--help")
    assert done.returncode == 0 and "usage: python -m rayjobs.embed_texts" in done.stdout
    done, _ = run("--cfg", "input.path=x", f"output.path={tmp_path}", "model.batch_size=7")
    assert done.returncode == 0 and "batch_size: 7" in done.stdout and not any(tmp_path.iterdir())


@pytest.mark.parametrize("module", ["search", "serve_index", "build_index"])
def test_index_tools_print_their_usage(module):
    done = subprocess.run(
        [sys.executable, "-m", f"rayjobs.{module}", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and f"rayjobs.{module}" in done.stdout


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_ADDRESS": "", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", f"rayjobs.{module}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("module", ["search", "serve_index"])
def test_index_tools_go_through_the_jobs_cli(module, tmp_path):
    """--help, --cfg and the one-line exit 2 come from the same run_cli as the jobs'."""
    done = run_module(module, "--help")
    assert (
        done.returncode == 0 and f"usage: python -m rayjobs.{module} [key=value ...] [--cfg]" in done.stdout
    )
    done = run_module(module, "--cfg", f"index.path={tmp_path}", "+index.storage_options.anon=true")
    assert done.returncode == 0 and f"path: {tmp_path}" in done.stdout and "anon: true" in done.stdout
    query = ["query=x"] if module == "search" else []
    cases = {
        (f"index.path={tmp_path}/nothing",): "index.path: ",
        (): "index.path: is required",
        (f"index.path={tmp_path}", "nosuchkey=1"): "nosuchkey",
    }
    for args, problem in cases.items():
        done = run_module(module, *args, *query)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, (args, done.stdout[-500:], done.stderr[-2000:])
        assert lines[0].startswith(f"rayjobs {module}: config error: ") and problem in lines[0], lines[0]
        assert "Ray instance" not in done.stdout + done.stderr
