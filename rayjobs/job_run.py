"""The life of one job run, shared by every job: check, plan, claim the output, start Ray,
then stream the write manifest to count progress, resume state and the final record."""

from __future__ import annotations

import logging
import os
import posixpath
import re
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rayjobs import run_record
from rayjobs.check_config import check_columns, check_job, check_operator, operator_config
from rayjobs.config_error import ConfigError
from rayjobs.read_input import InputPlan, Shard, plan_input
from rayjobs.runtime import Cluster, check_fits, local_gpus, model_threads, start_ray
from rayjobs.stage_spec import StageSpec
from rayjobs.storage import filesystem, join
from rayjobs.write_results import DATA_DIR, ERRORS_DIR, parse_part_name, shard_of

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
            "fn_constructor_kwargs": {"target": target, "kwargs": kwargs, "num_threads": threads},
            **self.model.ray_args(actor=True, cluster_gpus=self.cluster.gpus),
        }

    def write_args(self, results: list[str]) -> dict[str, Any]:
        """map_batches arguments of the write stage: `results` are the columns the model made."""
        output = OmegaConf.to_container(self.cfg.output, resolve=True)
        options = {
            **output,
            "results": results,
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
        for batch in manifest.iter_batches(batch_size=None, batch_format="pyarrow"):
            if first is None:
                first = (time.monotonic(), int(pa_sum(batch["rows"])))
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
        return self._record(written, errors, _stage_summaries(manifest), timing)

    def _journal(self, finished: list[int]) -> None:
        """Mark shards done, after removing any file of theirs that another run wrote."""
        for shard in finished:
            _remove_shard_files(self.fs, self.root, {shard}, keep_run=self.run_id)
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
        resumed_errors = _error_rows(self.fs, self.root, resumed)
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
                "versions": _versions(),
                "argv": sys.argv,
            },
        )


def start_job(
    cfg: DictConfig, *, inputs: tuple[str, ...], outputs: tuple[str, ...], columns: dict[str, str | None]
) -> JobRun:
    """Everything before the pipeline: checks (ConfigError, before Ray), output claim, Ray."""
    started = time.monotonic()
    preprocess, model = check_job(cfg)
    check_operator(OmegaConf.to_container(cfg.model, resolve=True), inputs, cfg.job.name, outputs)
    if model.num_gpus not in ("auto", 0.0) and not _joins_cluster(cfg) and local_gpus() == 0:
        raise ConfigError("model.num_gpus", f"asks {model.num_gpus:g} GPU but this machine has none")
    plan = plan_input(cfg.input, cfg.job.get("limit"))
    check_columns(plan.schema, {**columns, "input.id_column": cfg.input.get("id_column")})
    for name in cfg.output.get("columns") or []:
        check_columns(plan.schema, {"output.columns": name})
    fingerprint = run_record.fingerprint(_fingerprint_parts(cfg, plan))
    fs, root = filesystem(cfg.output.path, cfg.output.get("storage_options"))
    done = _claim_output(cfg, fs, root, fingerprint, plan)
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
    _remove_shard_files(fs, root, {shard.index for shard in run.todo})
    if done:
        log.info("%s: resuming: %d of %d shards already done", cfg.job.name, len(done), len(plan.shards))
    run._write_record("running", {"fingerprint": fingerprint, "rows_in": plan.rows})
    return run


def _claim_output(cfg: DictConfig, fs, root: str, fingerprint: str, plan: InputPlan) -> set[int]:
    """Finished shards of an earlier run of this same job; refuses to mix in other results."""
    if not fs.exists(root):
        return set()
    record = run_record.read_record(fs, root)
    if cfg.job.get("overwrite"):
        if record is None and fs.ls(root):
            raise ConfigError(
                "output.path", f"{cfg.output.path!r} is not a rayjobs output; refusing to delete it"
            )
        fs.rm(root, recursive=True)
        return set()
    if record is None:
        if fs.isdir(root) and not fs.ls(root):
            return set()
        raise ConfigError("output.path", f"{cfg.output.path!r} exists and is not a rayjobs output")
    if record.get("fingerprint") != fingerprint:
        raise ConfigError(
            "output.path",
            f"{cfg.output.path!r} holds results of a different run ({record.get('job')}, fingerprint "
            f"{record.get('fingerprint')} != {fingerprint}): use another output.path or job.overwrite=true",
        )
    return run_record.read_progress(fs, root) & {shard.index for shard in plan.shards}


def _remove_shard_files(fs, root: str, shards: set[int], keep_run: str | None = None) -> None:
    """Delete the files of `shards` (all of them, or those not written by run `keep_run`).

    Unfinished shards are redone whole, and a writer of a killed run that outlives it leaves
    files that this removes when the shard completes: no row appears twice.
    """
    if not shards:
        return
    stale = []
    for folder in (DATA_DIR, ERRORS_DIR):
        if len(shards) == 1:  # one shard: a prefix listing, cheap on object stores
            (shard,) = shards
            names = fs.glob(join(root, folder, f"part-{shard:06d}-*"))
        else:
            names = fs.ls(join(root, folder), detail=False) if fs.exists(join(root, folder)) else []
        for name in names:
            parsed = parse_part_name(posixpath.basename(name))
            if parsed and parsed[0] in shards and parsed[1] != keep_run:
                stale.append(name)
    if stale:
        fs.rm(stale)


def pa_sum(column) -> int:
    import pyarrow.compute as pc

    return pc.sum(column).as_py() or 0


def _stage_summaries(dataset) -> list[dict[str, Any]]:
    """Per operator: Ray Data's one-line summary and its throughput while it ran (rows/s)."""
    stages = []
    for block in re.split(r"^(?=Operator \d+ )", dataset.stats(), flags=re.MULTILINE):
        head = re.match(r"Operator \d+ (?P<name>.+?): (?P<summary>.+)$", block, re.MULTILINE)
        if not head:
            continue
        rate = re.search(r"Ray Data throughput: (?P<rate>[\d.]+) rows/s", block)
        stages.append(
            {
                "name": head["name"],
                "summary": head["summary"],
                "rows_per_s": float(rate["rate"]) if rate else None,
            }
        )
    return stages


def _error_rows(fs, root: str, shards: set[int]) -> int:
    """Errored rows already recorded for `shards` (footers only)."""
    import pyarrow.parquet as pq

    path = join(root, ERRORS_DIR)
    if not shards or not fs.exists(path):
        return 0
    total = 0
    for file in fs.ls(path, detail=False):
        if shard_of(posixpath.basename(file)) in shards:
            with fs.open(file, "rb") as handle:
                total += pq.ParquetFile(handle).metadata.num_rows
    return total


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


_RESOURCES = ("batch_size", "num_cpus", "num_gpus", "concurrency", "memory")


def _joins_cluster(cfg: DictConfig) -> bool:
    return bool(cfg.runtime.get("address") or os.environ.get("RAY_ADDRESS"))


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("rayjobs", "ray", "torch", "transformers", "pyarrow"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found
