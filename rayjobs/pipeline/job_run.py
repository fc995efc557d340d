"""The life of one job run, shared by every job: check, plan, claim the output, start Ray,
then stream the write manifest to count progress, resume state and the final record."""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rayjobs.config.check_config import check_columns, check_job, check_operator, operator_config
from rayjobs.config.config_error import ConfigError
from rayjobs.config.stage_spec import StageSpec
from rayjobs.io.read_input import InputPlan, Shard, plan_input
from rayjobs.io.storage import filesystem
from rayjobs.pipeline import run_record
from rayjobs.pipeline.output_folder import claim_output, error_rows, remove_shard_files
from rayjobs.pipeline.run_stats import pa_sum, stage_summaries, versions
from rayjobs.pipeline.runtime import Cluster, check_fits, local_gpus, model_threads, start_ray

log = logging.getLogger("rayjobs")


@dataclass
class RunResult:
    """What a run did; `ok` is False when errors went over job.max_error_fraction."""

    job: str
    output_path: str
    rows: int
    rows_written: int
    rows_errored: int
    seconds: float
    rows_per_second: float
    ok: bool = True
    already_done: bool = False
    stats: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        if self.already_done:
            done = f"{self.rows_written} rows"
            return f"{self.job}: already finished in {self.output_path} ({done}); nothing to do"
        state = "done" if self.ok else "FAILED (error budget exceeded)"
        return (
            f"{self.job}: {state}: {self.rows_written} rows written, {self.rows_errored} errors, "
            f"{self.seconds:.1f} s, {self.rows_per_second:.1f} rows/s -> {self.output_path}"
        )


@dataclass
class JobRun:
    cfg: DictConfig
    plan: InputPlan
    todo: list[Shard]
    done: set[int]
    cluster: Cluster
    preprocess: StageSpec
    model: StageSpec
    fingerprint: str
    fs: Any
    root: str
    started: float
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    result: RunResult | None = None

    def task_args(self) -> dict[str, Any]:
        """map_batches arguments of the CPU preprocess stage."""
        return {"batch_format": "pyarrow", **self.preprocess.ray_args(actor=False)}

    def model_args(self) -> dict[str, Any]:
        """map_batches arguments of the model stage, constructor included."""
        target, kwargs = operator_config(OmegaConf.to_container(self.cfg.model, resolve=True))
        threads = model_threads(self.model, self.cluster, self.cfg.model.get("num_threads"))
        return {
            "batch_format": "pyarrow",
            "fn_constructor_kwargs": {
                "target": target,
                "kwargs": kwargs,
                "num_threads": threads,
                "batch_size": self.model.batch_size,
                "max_batch_size": int(self.cfg.model.get("max_batch_size") or 1024),
            },
            **self.model.ray_args(actor=True, cluster_gpus=self.cluster.gpus),
        }

    def write_args(self, results: list[str], error_columns: list[str] | None = None) -> dict[str, Any]:
        """map_batches arguments of the write stage: `results` are the columns the model made,
        `error_columns` the ones errored rows keep too (next to id, stage and reason)."""
        output = OmegaConf.to_container(self.cfg.output, resolve=True)
        options = {
            **output,
            "results": results,
            "error_columns": list(error_columns or []),
            "columns": list(output.get("columns") or []),
            "run_id": self.run_id,
        }
        # Writing is light: a small CPU share keeps writers from waiting behind preprocessing.
        return {
            "fn_kwargs": {"output": options},
            "batch_size": int(self.cfg.input.shard_rows),
            "batch_format": "pyarrow",
            "num_cpus": 0.25,
        }

    def finish(self, manifest) -> RunResult:
        """Consume the write manifest: progress lines, the journal, the record, _SUCCESS last."""
        counts: dict[int, int] = {}
        sizes = {shard.index: shard.rows for shard in self.todo}
        finished: list[int] = []  # done in this run, not yet journalled
        errors = written = 0
        last_flush = time.monotonic()
        interval = float(self.cfg.job.get("progress_interval_s") or 10)
        first: tuple[float, int] | None = None  # (time, rows) of the first results: steady-state rate
        batch_sizes: set[int] = set()  # what the model actors ran at (probed when batch_size=auto)
        for batch in manifest.iter_batches(batch_size=None, batch_format="pyarrow"):
            if first is None:
                first = (time.monotonic(), int(pa_sum(batch["rows"])))
            batch_sizes.update(size for size in batch["batch_size"].to_pylist() if size)
            for shard, rows, errs in zip(
                *(batch[c].to_pylist() for c in ("shard", "rows", "errors")), strict=True
            ):
                counts[shard] = counts.get(shard, 0) + rows
                written += rows - errs
                errors += errs
                if counts[shard] == sizes[shard]:
                    finished.append(shard)
            if time.monotonic() - last_flush >= interval:
                self._journal(finished)
                self._log_progress(written + errors, errors)
                last_flush = time.monotonic()
        self._journal(finished)
        over = [s for s, n in counts.items() if n > sizes[s]]
        missing = [s.index for s in self.todo if counts.get(s.index, 0) < s.rows]
        if over or missing:
            raise RuntimeError(f"shard accounting failed: duplicated {over[:5]}, incomplete {missing[:5]}")
        timing = {}
        if first is not None:
            seconds = time.monotonic() - first[0]
            timing = {
                "first_results_s": round(first[0] - self.started, 3),
                "steady_rows_per_s": round((written + errors - first[1]) / seconds, 3)
                if seconds > 0
                else None,
            }
        timing["model_batch_size"] = sorted(batch_sizes)
        if self.model.batch_size == "auto":
            log.info("%s: model.batch_size=auto ran at %s", self.cfg.job.name, sorted(batch_sizes))
        return self._record(written, errors, stage_summaries(manifest), timing)

    def _journal(self, finished: list[int]) -> None:
        """Mark shards done, after removing any file of theirs that another run wrote."""
        for shard in finished:
            remove_shard_files(self.fs, self.root, {shard}, keep_run=self.run_id)
        self.done.update(finished)
        finished.clear()
        run_record.write_progress(self.fs, self.root, self.done)

    def _log_progress(self, processed: int, errors: int) -> None:
        total = sum(shard.rows for shard in self.todo)
        seconds = time.monotonic() - self.started
        rate = processed / seconds if seconds else 0.0
        left = (total - processed) / rate if rate else float("inf")
        log.info(
            "%s: %d/%d rows (%.0f%%), %.1f rows/s, %d errors, ~%s left",
            self.cfg.job.name,
            processed,
            total,
            100 * processed / max(1, total),
            rate,
            errors,
            _duration(left),
        )

    def _record(self, written: int, errors: int, stages: list[dict[str, str]], timing: dict) -> RunResult:
        seconds = time.monotonic() - self.started
        resumed = {shard.index for shard in self.plan.shards} - {shard.index for shard in self.todo}
        resumed_rows = sum(shard.rows for shard in self.plan.shards if shard.index in resumed)
        resumed_errors = error_rows(self.fs, self.root, resumed)
        total_written = written + resumed_rows - resumed_errors
        total_errors = errors + resumed_errors
        rows = self.plan.rows
        ok = total_errors <= float(self.cfg.job.max_error_fraction) * rows
        stats = {
            "fingerprint": self.fingerprint,
            "rows_in": rows,
            "rows_written": total_written,
            "rows_errored": total_errors,
            "rows_this_run": written + errors,
            "rows_resumed": resumed_rows,
            "shards": len(self.plan.shards),
            "wall_s": round(seconds, 3),
            "rows_per_s": round((written + errors) / seconds, 3) if seconds else None,
            **timing,
            "cluster": asdict(self.cluster),
            "stages": stages,
        }
        self._write_record("done" if ok else "failed: error budget exceeded", stats)
        if ok:
            run_record.write_success(self.fs, self.root)
        return RunResult(
            self.cfg.job.name,
            str(self.cfg.output.path),
            rows,
            total_written,
            total_errors,
            seconds,
            stats["rows_per_s"] or 0.0,
            ok=ok,
            stats=stats,
        )

    def _write_record(self, status: str, stats: dict[str, Any]) -> None:
        run_record.write_record(
            self.fs,
            self.root,
            {
                "job": self.cfg.job.name,
                "status": status,
                "fingerprint": self.fingerprint,
                "config": OmegaConf.to_container(self.cfg, resolve=True),
                "stats": stats,
                "versions": versions(),
                "argv": sys.argv,
            },
        )


def start_job(
    cfg: DictConfig,
    *,
    inputs: tuple[str, ...],
    outputs: tuple[str, ...],
    columns: Iterable[tuple[str, str | None]] = (),
) -> JobRun:
    """Everything before the pipeline: checks (ConfigError, before Ray), output claim, Ray."""
    started = time.monotonic()
    preprocess, model = check_job(cfg)
    check_operator(OmegaConf.to_container(cfg.model, resolve=True), inputs, cfg.job.name, outputs)
    if model.num_gpus not in ("auto", 0.0) and not _joins_cluster(cfg) and local_gpus() == 0:
        raise ConfigError("model.num_gpus", f"asks {model.num_gpus:g} GPU but this machine has none")
    plan = plan_input(cfg.input, cfg.job.get("limit"))
    passthrough = [("output.columns", name) for name in cfg.output.get("columns") or []]
    check_columns(plan.schema, [*columns, ("input.id_column", cfg.input.get("id_column")), *passthrough])
    fingerprint = run_record.fingerprint(_fingerprint_parts(cfg, plan))
    fs, root = filesystem(cfg.output.path, cfg.output.get("storage_options"))
    done = claim_output(cfg, fs, root, fingerprint, plan)
    run = JobRun(cfg, plan, [], done, Cluster(0, 0, 0), preprocess, model, fingerprint, fs, root, started)
    if done == {shard.index for shard in plan.shards} and run_record.has_success(fs, root):
        record = run_record.read_record(fs, root) or {}
        stats = record.get("stats", {})
        run.result = RunResult(
            cfg.job.name,
            str(cfg.output.path),
            plan.rows,
            stats.get("rows_written", 0),
            stats.get("rows_errored", 0),
            0.0,
            0.0,
            already_done=True,
            stats=stats,
        )
        return run
    run.cluster = start_ray(cfg.runtime)
    check_fits(run.cluster, preprocess, model)
    run.todo = [shard for shard in plan.shards if shard.index not in done]
    remove_shard_files(fs, root, {shard.index for shard in run.todo})
    if done:
        log.info("%s: resuming: %d of %d shards already done", cfg.job.name, len(done), len(plan.shards))
    run._write_record("running", {"fingerprint": fingerprint, "rows_in": plan.rows})
    return run


def _fingerprint_parts(cfg: DictConfig, plan: InputPlan) -> dict[str, Any]:
    """What decides the results: not resources, paths of the output, or progress settings."""
    _, operator = operator_config(OmegaConf.to_container(cfg.model, resolve=True))
    preprocess = {k: v for k, v in OmegaConf.to_container(cfg.preprocess).items() if k not in _RESOURCES}
    input_cfg = {k: v for k, v in OmegaConf.to_container(cfg.input).items() if k != "storage_options"}
    output = {
        k: v for k, v in OmegaConf.to_container(cfg.output).items() if k not in ("path", "storage_options")
    }
    return {
        "job": cfg.job.name,
        "target": cfg.model.get("_target_"),
        "operator": operator,
        "preprocess": preprocess,
        "input": input_cfg,
        "input_listing": plan.fingerprint_source(),
        "limit": cfg.job.get("limit"),
        "output": output,
    }


_RESOURCES = ("batch_size", "num_cpus", "num_gpus", "concurrency", "memory", "max_batch_size")


def _joins_cluster(cfg: DictConfig) -> bool:
    return bool(cfg.runtime.get("address") or os.environ.get("RAY_ADDRESS"))


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
