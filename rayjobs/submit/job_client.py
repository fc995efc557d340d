"""Jobs on a Ray cluster through Ray's job submission API, with rayjobs' own progress.

Ray knows a job's state (pending / running / succeeded / failed / stopped) and its logs; the job's
output folder knows its rows (`_progress.json`, `_run.json`). A JobHandle reads both. The composed
config travels in the job's metadata, so `rayjobs status` in another shell finds the output folder.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rayjobs.config.compose import CPU_JOBS, EDIT_JOBS, MODEL_JOBS
from rayjobs.config.config_error import ConfigError
from rayjobs.io.storage import filesystem
from rayjobs.pipeline import run_record
from rayjobs.pipeline.run_stats import duration

log = logging.getLogger("rayjobs")

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
CONFIG_ENV = "RAYJOBS_CONFIG"  # a composed config sent by rayjobs.submit(cfg): YAML
JOB_KEY, CONFIG_KEY = "rayjobs_job", "rayjobs_config"  # the job metadata rayjobs sets
# Never uploaded with the working directory: environments, VCS data, caches, outputs of the demo.
EXCLUDES = [
    ".venv",
    "venv",
    ".git",
    "**/__pycache__",
    ".pytest_cache",
    ".gpu_bundle",
    "demo_output",
    "*.ipynb_checkpoints",
]
STATES = {
    "PENDING": "pending",
    "RUNNING": "running",
    "SUCCEEDED": "succeeded",
    "FAILED": "failed",
    "STOPPED": "stopped",
}
FINAL = ("succeeded", "failed", "stopped")


class ClusterError(RuntimeError):
    """The cluster cannot be reached, or refused the job."""


class UnknownJob(ClusterError):
    """The cluster does not know this job id."""


def job_client(address: str | None = None):
    """Ray's JobSubmissionClient for `address`, RAY_ADDRESS, or the local head's dashboard."""
    from ray.job_submission import JobSubmissionClient

    url = address or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS
    try:
        return JobSubmissionClient(url)
    except Exception as error:  # connection refused, wrong port, auth: one line, not a traceback
        raise ClusterError(f"cannot reach the Ray job server at {url} ({first_line(error)})") from None


def submit(
    job: str,
    overrides: Sequence[str] = (),
    *,
    cfg: DictConfig | None = None,
    address: str | None = None,
    working_dir: str = ".",
    check: bool = True,
) -> JobHandle:
    """Submit `python -m rayjobs.<job> overrides...` (or the composed `cfg`) to a cluster.

    The config is composed and checked here first (ConfigError, nothing submitted); runtime=cluster
    unless the overrides pick a runtime, so the job joins the cluster and logs plain lines."""
    import rayjobs
    from rayjobs.pipeline.job_run import check_job

    here = os.path.abspath(working_dir)
    if here not in sys.path:  # the job imports from its working dir there: so does the check here
        sys.path.insert(0, here)
    if cfg is None:
        overrides = list(overrides)
        if not any(item.split("=", 1)[0].lstrip("+~") == "runtime" for item in overrides):
            overrides.insert(0, "runtime=cluster")
        cfg = rayjobs.compose(job, overrides)
        entrypoint = shlex.join(["python", "-m", f"rayjobs.{job}", *overrides])
        env = {}
    else:
        job = str(cfg.job.name)
        entrypoint = shlex.join(["python", "-m", f"rayjobs.{job}", "--config-from-env"])
        env = {CONFIG_ENV: OmegaConf.to_yaml(cfg)}
    if check and job in (*MODEL_JOBS, *CPU_JOBS, *EDIT_JOBS):  # the jobs that go through start_job
        check_job(rayjobs.run, cfg)
    path = str(cfg.output.path) if "output" in cfg and cfg.output.get("path") else None
    if path and "://" not in path and not os.path.isabs(path):
        log.warning(
            "output.path %r is relative: it is written inside the job's copy of the working dir", path
        )
    runtime_env: dict[str, Any] = {"working_dir": working_dir, "excludes": EXCLUDES}
    if env:
        runtime_env["env_vars"] = env
    client = job_client(address)
    metadata = {JOB_KEY: job, CONFIG_KEY: OmegaConf.to_yaml(cfg)}
    try:
        job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env, metadata=metadata)
    except Exception as error:
        raise ClusterError(f"submit failed: {first_line(error)}") from None
    return JobHandle(job_id, client)


@dataclass
class JobHandle:
    """One submitted job: .status(), .logs(), .follow(), .wait(), .cancel()."""

    id: str
    client: Any

    def info(self):
        try:
            return self.client.get_job_info(self.id)
        except Exception as error:
            raise UnknownJob(f"no job {self.id!r} on this cluster ({first_line(error)})") from None

    def status(self) -> dict[str, Any]:
        """State from Ray, rows / errors / rows/s / ETA / usage from the job's output folder."""
        return describe(self.info())

    def logs(self) -> str:
        return self.client.get_job_logs(self.id)

    def follow(self) -> Iterator[str]:
        """Log text as the job writes it, until it ends."""
        stream = self.client.tail_job_logs(self.id)
        loop = asyncio.new_event_loop()
        try:
            while True:
                try:
                    yield loop.run_until_complete(stream.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            loop.close()

    def wait(self, timeout: float | None = None, poll: float = 2.0) -> dict[str, Any]:
        """Block until the job ends (TimeoutError after `timeout` seconds); its final status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status()
            if status["state"] in FINAL:
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} still {status['state']} after {timeout:.0f} s")
            time.sleep(poll)

    def cancel(self) -> bool:
        """Stop the job (SIGTERM, then SIGKILL); its output stays resumable: submit it again."""
        return bool(self.client.stop_job(self.id))


def job_handle(job_id: str, address: str | None = None) -> JobHandle:
    handle = JobHandle(job_id, job_client(address))
    handle.info()  # a job the cluster does not know: ClusterError now
    return handle


def list_jobs(address: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The most recent jobs, newest first, described as `rayjobs status` describes one."""
    jobs = sorted(job_client(address).list_jobs(), key=lambda j: j.start_time or 0, reverse=True)
    return [describe(job) for job in jobs[:limit]]


def describe(info) -> dict[str, Any]:
    """One job: Ray's state and times, and what its output folder says about its rows."""
    state = STATES.get(str(getattr(info.status, "value", info.status)), str(info.status).lower())
    metadata = info.metadata or {}
    found: dict[str, Any] = {
        "id": info.submission_id or info.job_id,
        "job": metadata.get(JOB_KEY) or "-",
        "state": state,
        "started_at": (info.start_time or 0) / 1000 or None,
        "ended_at": (info.end_time or 0) / 1000 or None,
        "message": info.message,
        "entrypoint": info.entrypoint,
    }
    if CONFIG_KEY in metadata:
        cfg = OmegaConf.create(metadata[CONFIG_KEY])
        output = cfg.get("output") or {}
        if output.get("path"):
            found["output_path"] = str(output.path)
            found.update(output_progress(str(output.path), dict(output.get("storage_options") or {})))
    return found


def output_progress(path: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a job's output folder says: the record's status and usage, the live counts; {} when
    the folder cannot be read from here (a path local to the cluster's nodes)."""
    try:
        fs, root = filesystem(path, storage_options or {})
        record = run_record.read_record(fs, root) or {}
        counts = run_record.read_counts(fs, root)
    except Exception:
        return {}
    stats = record.get("stats") or {}
    found = {key: value for key, value in counts.items() if key != "run_id"}
    if record.get("status") and record["status"] != "running":  # finished: the record's totals
        found.update(
            rows_done=stats.get("rows_in", found.get("rows_done")),
            rows_total=stats.get("rows_in", found.get("rows_total")),
            errors=stats.get("rows_errored", found.get("errors")),
            filtered=stats.get("rows_filtered", found.get("filtered")),
            eta_s=0,
        )
    elif "rows_in" in stats:
        found.setdefault("rows_done", 0)
        found.setdefault("rows_total", stats["rows_in"])
    if stats.get("usage"):
        found["usage"] = stats["usage"]
    if record.get("status"):
        found["record"] = record["status"]
    return found


def status_line(status: dict[str, Any]) -> str:
    """One line: id, job, state, rows done / total, errors, rows/s, ETA, usage, output."""
    parts = [status["id"], status["job"], status["state"]]
    if status.get("rows_total") is not None:
        done, total = status.get("rows_done") or 0, status["rows_total"]
        parts.append(f"{done}/{total} rows ({100 * done / max(1, total):.0f}%)")
        parts.append(f"{status.get('errors') or 0} errors")
        if status.get("rows_per_s"):
            parts.append(f"{status['rows_per_s']:.1f} rows/s")
        if status["state"] == "running" and status.get("eta_s") is not None:
            parts.append(f"ETA {duration(status['eta_s'])}")
    usage = status.get("usage") or {}
    if usage:
        shown = ", ".join(f"{key} {value}" for key, value in usage.items())
        parts.append(f"usage: {shown}")
    if status.get("output_path"):
        parts.append(f"-> {status['output_path']}")
    if status["state"] == "failed" and status.get("message"):
        parts.append(f"({first_line(status['message'])})")
    return "  ".join(str(part) for part in parts)


def first_line(error: Any) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def config_from_env() -> DictConfig:
    """The config rayjobs.submit(cfg) sent (the --config-from-env entry point)."""
    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise ConfigError("--config-from-env", f"{CONFIG_ENV} is not set")
    return OmegaConf.create(text)
