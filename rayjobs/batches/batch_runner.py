"""Runs each batch as a rayjobs job: validating -> in_progress -> finalizing -> completed.

A batch's job is `python -m rayjobs.<generate_text | embed_texts> --config-from-env` in its own
process session, on the Ray cluster the service is attached to (runtime.address / RAY_ADDRESS),
else on a local Ray of its own; at most `max_running` at once, the rest wait in line. The job
writes its output under the batch's folder and journals finished shards, so a job that dies (or a
service restarted under it) is simply run again and resumes. A job still alive when the service
restarts is adopted: watched by pid until it ends.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rayjobs.batches.batch_lines import check_lines
from rayjobs.batches.batch_store import BatchStore
from rayjobs.config.config_error import ConfigError
from rayjobs.io.openai_output import openai_lines
from rayjobs.io.storage import join, read_text, write_bytes
from rayjobs.pipeline import run_record
from rayjobs.submit.job_client import CONFIG_ENV

log = logging.getLogger("rayjobs")

JOB_OF = {"/v1/chat/completions": "generate_text", "/v1/embeddings": "embed_texts"}
MAX_ATTEMPTS = 3  # runs of a batch's job before the batch fails
STOP_GRACE_S = 10


class BatchRunner:
    def __init__(
        self,
        store: BatchStore,
        models: Mapping[str, Mapping[str, Any]],
        *,
        max_lines: int,
        max_running: int = 1,
        shard_rows: int = 100,
        job_overrides: Sequence[str] = (),
        address: str | None = None,
        poll_s: float = 0.5,
    ) -> None:
        self.store, self.models = store, models
        self.max_lines, self.max_running, self.shard_rows = max_lines, max_running, shard_rows
        self.job_overrides, self.address, self.poll_s = list(job_overrides), address, poll_s
        self.procs: dict[str, subprocess.Popen] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="batch-runner", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Stop watching; running jobs keep running (a restarted service adopts them)."""
        self.stopped.set()
        self.thread.join(timeout=30)

    def _loop(self) -> None:
        while not self.stopped.is_set():
            for batch in self.store.open_batches():
                try:
                    self.step(batch)
                except Exception as error:  # one bad batch never stops the others
                    log.exception("batch %s: %s", batch["id"], error)
                    try:
                        self._fail(batch, "internal_error", f"{type(error).__name__}: {error}")
                    except Exception:  # storage itself is failing: try again next round
                        log.exception("batch %s: cannot record the failure", batch["id"])
            self.stopped.wait(self.poll_s)

    def step(self, batch: dict[str, Any]) -> None:
        status = batch["status"]
        if status == "validating":
            self._validate(batch)
        elif status == "in_progress":
            self._advance(batch)
        elif status == "finalizing":
            self._finalize(batch)
        elif status == "cancelling":
            self._stop_job(batch)
            self._finalize(batch, cancelled=True)

    # validating
    def _validate(self, batch: dict[str, Any]) -> None:
        lines = b"".join(self.store.read_content(batch["input_file_id"])).splitlines()
        checked = check_lines(lines, batch["endpoint"], self.models, self.max_lines)
        batch["request_counts"] = {"total": checked.total, "completed": 0, "failed": 0}
        if checked.errors:
            batch["errors"] = {"object": "list", "data": checked.errors}
            return self._set(batch, "failed")
        folder = ("batches", batch["id"])
        write_bytes(
            self.store.fs, join(self.store.root, *folder, "input.jsonl"), "\n".join(checked.accepted).encode()
        )
        rejected = "\n".join(json.dumps(line) for line in checked.rejected)
        write_bytes(self.store.fs, join(self.store.root, *folder, "rejected.jsonl"), rejected.encode())
        batch["model"] = checked.model
        batch["_job"] = {"accepted": len(checked.accepted), "rejected": len(checked.rejected), "attempts": 0}
        batch["request_counts"]["failed"] = len(checked.rejected)
        self._set(batch, "in_progress" if checked.accepted else "finalizing")

    # in_progress
    def _advance(self, batch: dict[str, Any]) -> None:
        job = batch["_job"]
        root = self._job_root(batch)
        if self._running(batch):
            self._count(batch, root)
            return
        proc = self.procs.pop(batch["id"], None)
        if run_record.has_success(self.store.fs, root):
            return self._set(batch, "finalizing")
        if proc is not None and proc.returncode == 2:  # a config error: running it again cannot help
            return self._fail(batch, "invalid_config", self._log_tail(batch))
        if job["attempts"] >= MAX_ATTEMPTS:
            return self._fail(
                batch, "job_failed", f"the job failed {job['attempts']} times: {self._log_tail(batch)}"
            )
        if self._slots() > 0:
            self._launch(batch)

    def _launch(self, batch: dict[str, Any]) -> None:
        import rayjobs
        from rayjobs.pipeline.job_run import check_job

        try:
            cfg = self.job_config(batch)
            check_job(rayjobs.run, cfg)
        except ConfigError as error:
            return self._fail(batch, "invalid_config", f"model {batch['model']!r}: {error}")
        env = {**os.environ, CONFIG_ENV: OmegaConf.to_yaml(cfg)}
        if self.address:
            env["RAY_ADDRESS"] = self.address
        job = JOB_OF[batch["endpoint"]]
        with open(self._log_path(batch), "ab") as logs:
            proc = subprocess.Popen(
                [sys.executable, "-m", f"rayjobs.{job}", "--config-from-env"],
                stdout=logs,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: cancel stops the job and its Ray
            )
        self.procs[batch["id"]] = proc
        batch["_job"].update(
            attempts=batch["_job"]["attempts"] + 1, pid=proc.pid, token=process_token(proc.pid)
        )
        self.store.save_batch(batch)
        log.info(
            "batch %s: %s started (pid %d, attempt %d)", batch["id"], job, proc.pid, batch["_job"]["attempts"]
        )

    def job_config(self, batch: dict[str, Any]):
        """The job's config: the model's preset and overrides, the batch's input and output."""
        import rayjobs

        entry = self.models[batch["model"]]
        overrides = [f"model={entry['preset']}"] if entry.get("preset") else []
        overrides += [*(entry.get("overrides") or []), *self.job_overrides]
        cfg = rayjobs.compose(JOB_OF[batch["endpoint"]], overrides)
        options = self.store.storage_options
        settings = {
            "input.path": self.store.url("batches", batch["id"], "input.jsonl"),
            "input.format": "openai_batch",
            "input.shard_rows": self.shard_rows,
            "input.storage_options": options,
            "output.path": self.store.url("batches", batch["id"], "job"),
            "output.storage_options": options,
            "job.max_error_fraction": 1.0,  # a batch reports failed lines; it never fails for them
            "job.progress_interval_s": 2,
            "runtime.progress_bars": False,
        }
        if entry.get("path"):
            settings["model.path"] = str(entry["path"])
        if self.address:
            settings["runtime.address"] = self.address
        for key, value in settings.items():
            OmegaConf.update(cfg, key, value, merge=False)
        return cfg

    def _running(self, batch: dict[str, Any]) -> bool:
        proc = self.procs.get(batch["id"])
        if proc is not None:
            return proc.poll() is None
        job = batch.get("_job") or {}  # started by an earlier service process: adopt it while alive
        if not job.get("pid") or job.get("token") is None:
            return False
        return process_token(job["pid"]) == job["token"]

    def _slots(self) -> int:
        running = sum(
            1 for b in self.store.open_batches() if b["status"] != "validating" and self._running(b)
        )
        return self.max_running - running

    def _count(self, batch: dict[str, Any], root: str) -> None:
        counts = run_record.read_counts(self.store.fs, root)
        if not counts:
            return
        failed = counts.get("errors", 0) + batch["_job"]["rejected"]
        done = {"completed": counts.get("rows_done", 0) - counts.get("errors", 0), "failed": failed}
        if {k: batch["request_counts"][k] for k in done} != done:
            batch["request_counts"].update(done)
            self.store.save_batch(batch)

    # cancelling
    def _stop_job(self, batch: dict[str, Any]) -> None:
        job = batch.get("_job") or {}
        if not self._running(batch):
            return
        pid = job["pid"]
        try:
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_S
            while self._running(batch) and time.monotonic() < deadline:
                time.sleep(0.2)
            if self._running(batch):
                os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc = self.procs.pop(batch["id"], None)
        if proc is not None:
            proc.wait(timeout=30)

    # finalizing
    def _finalize(self, batch: dict[str, Any], cancelled: bool = False) -> None:
        """The output and error files from the job's folder (a stopped job's finished shards)."""
        fs, root = self.store.fs, self._job_root(batch)
        job = batch.get("_job") or {}
        good: list[dict[str, Any]] = []
        bad: list[dict[str, Any]] = []
        if job.get("accepted") and fs.exists(root):
            shards = None if run_record.has_success(fs, root) else run_record.read_progress(fs, root)
            good, bad = openai_lines(fs, root, batch.get("model") or "", batch["endpoint"], shards)
        rejected = read_text(fs, join(self.store.root, "batches", batch["id"], "rejected.jsonl")) or ""
        bad += [json.loads(line) for line in rejected.splitlines() if line.strip()]
        owner = batch["_owner"]
        for key, lines, name in (("output_file_id", good, "output"), ("error_file_id", bad, "errors")):
            if lines:
                data = ("\n".join(json.dumps(line) for line in lines) + "\n").encode()
                made = self.store.add_file_bytes(owner, f"{batch['id']}_{name}.jsonl", "batch_output", data)
                batch[key] = made["id"]
        batch["request_counts"].update(completed=len(good), failed=len(bad))
        batch["usage"] = batch_usage(
            good, (run_record.read_record(fs, root) or {}).get("stats", {}).get("usage")
        )
        self._set(batch, "cancelled" if cancelled else "completed")

    # helpers
    def _set(self, batch: dict[str, Any], status: str) -> None:
        batch["status"] = status
        batch[f"{status}_at"] = int(time.time())
        self.store.save_batch(batch)
        log.info("batch %s: %s", batch["id"], status)

    def _fail(self, batch: dict[str, Any], code: str, message: str) -> None:
        batch["errors"] = {
            "object": "list",
            "data": [{"code": code, "message": message, "param": None, "line": None}],
        }
        self._set(batch, "failed")

    def _job_root(self, batch: dict[str, Any]) -> str:
        return join(self.store.root, "batches", batch["id"], "job")

    def _log_path(self, batch: dict[str, Any]) -> Path:
        """The job's stdout and stderr: next to the batch on local storage, else in a temp folder."""
        local = self.store.url("batches", batch["id"]) == join(self.store.root, "batches", batch["id"])
        folder = Path(self.store.root if local else tempfile.gettempdir()) / "batches" / batch["id"]
        folder.mkdir(parents=True, exist_ok=True)
        return folder / "job.log"

    def _log_tail(self, batch: dict[str, Any]) -> str:
        try:
            lines = self._log_path(batch).read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-3:])[-1000:] or "(empty log)"


def batch_usage(lines: list[dict[str, Any]], job_usage: Mapping[str, Any] | None) -> dict[str, Any]:
    """OpenAI's usage object over the served lines, plus the job's GPU/CPU-seconds and cost."""
    tokens_in = tokens_out = 0
    for line in lines:
        usage = line["response"]["body"].get("usage") or {}
        tokens_in += int(usage.get("prompt_tokens") or 0)
        tokens_out += int(usage.get("completion_tokens") or 0)
    usage: dict[str, Any] = {
        "input_tokens": tokens_in,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": tokens_out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": tokens_in + tokens_out,
    }
    for key in ("gpu_s", "cpu_s", "cost"):
        if job_usage and key in job_usage:
            usage[key] = job_usage[key]
    return usage


def process_token(pid: int) -> str | None:
    """Identifies a live process across a service restart (pid + its start time), else None."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return str(pid)  # no /proc: the pid alone
    fields = stat.rsplit(")", 1)[-1].split()
    if fields and fields[0] == "Z":  # a zombie has ended
        return None
    return f"{pid}:{fields[19]}" if len(fields) > 19 else str(pid)
