"""The run contract, shared by every job shape: check, plan, claim the output, start Ray, then
stream the write manifest to count progress, resume state and the final record.

A job declares its chain: CPU stages (each a config block: batch size, CPUs, concurrency) and
zero or more model stages (each its own actor pool and config block), then the writer. Every
input row ends in exactly one outcome, written, errored or filtered (a row fanned out into k
children in k of them, each counting 1/k), and a shard is done when its rows' outcomes add up.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from rayjobs.config.check_config import check_columns, check_operator, operator_config
from rayjobs.config.config_error import ConfigError
from rayjobs.config.run_spec import RunSpec, parse_run
from rayjobs.io.read_input import plan_input, read_input
from rayjobs.io.shards import InputPlan, Shard
from rayjobs.io.storage import filesystem, is_local, join, list_folder
from rayjobs.pipeline import run_record
from rayjobs.pipeline.fingerprint import fingerprint_parts
from rayjobs.pipeline.output_folder import claim_output, outcome_rows, remove_shard_files
from rayjobs.pipeline.progress_bar import ProgressBar, in_notebook
from rayjobs.pipeline.run_stats import duration, pa_sum, stage_summaries, versions
from rayjobs.pipeline.runtime import (
    Cluster,
    check_fits,
    feed_block_rows,
    local_gpus,
    model_threads,
    size_pools,
    start_ray,
)
from rayjobs.pipeline.write_results import DATA_DIR, ERRORS_DIR, FILTERED_DIR
from rayjobs.report.contact_sheet import REPORT, ContactSheet, write_report

log = logging.getLogger("rayjobs")

# A model stage: (the columns it is fed, the outputs the job needs from it).
ModelIO = tuple[tuple[str, ...], tuple[str, ...]]
_CHECK_ONLY = contextvars.ContextVar("rayjobs_check_only", default=False)


class ConfigChecked(Exception):
    """Raised by start_job inside check_job: every check that needs no input data passed."""


def check_job(run, cfg: DictConfig) -> None:
    """Run `run(cfg)` (a job's run function) up to its start_job's config checks only: raises
    ConfigError as the job would, touches no input, output or Ray (`rayjobs submit` checks here
    the config a cluster will run, whose data this machine may not see)."""
    token = _CHECK_ONLY.set(True)
    try:
        run(cfg)
    except ConfigChecked:
        return
    finally:
        _CHECK_ONLY.reset(token)
    raise RuntimeError(f"{cfg.job.name}: its run() did not reach start_job")


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
    rows_filtered: int = 0
    storage_options: dict[str, Any] = field(default_factory=dict)  # of output.path

    def data(self):
        """The written rows (data/) as a Ray Dataset."""
        import ray.data

        fs, files = self._files(DATA_DIR)
        if not files:
            return ray.data.from_items([])
        if is_local(fs):
            return ray.data.read_parquet(files)
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        return ray.data.read_parquet(files, filesystem=PyFileSystem(FSSpecHandler(fs)))

    def to_pandas(self, limit: int | None = None, folder: str = DATA_DIR):
        """The first `limit` rows (all: None) of data/ (or errors/, filtered/) as a DataFrame."""
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        fs, files = self._files(folder)
        tables, rows = [], 0
        for file in files:
            if limit is not None and rows >= limit:
                break
            with fs.open(file, "rb") as handle:
                tables.append(pq.read_table(handle))
            rows += tables[-1].num_rows
        if not tables:
            return pd.DataFrame()
        table = pa.concat_tables(tables, promote_options="default")
        return (table if limit is None else table.slice(0, limit)).to_pandas()

    def errors(self, limit: int | None = None):
        """Errored rows: id, stage, reason (a DataFrame)."""
        return self.to_pandas(limit, ERRORS_DIR)

    def filtered(self, limit: int | None = None):
        """Filtered rows: id, stage, the rule with its value (a DataFrame)."""
        return self.to_pandas(limit, FILTERED_DIR)

    def _files(self, folder: str) -> tuple[Any, list[str]]:
        fs, root = filesystem(self.output_path, self.storage_options)
        where = join(root, folder)
        return fs, sorted(list_folder(fs, where)) if fs.exists(where) else []

    def summary(self) -> str:
        if self.already_done:
            done = f"{self.rows_written} rows"
            return f"{self.job}: already finished in {self.output_path} ({done}); nothing to do"
        state = "done" if self.ok else "FAILED (error budget exceeded)"
        filtered = f", {self.rows_filtered} filtered" if self.rows_filtered else ""
        return (
            f"{self.job}: {state}: {self.rows_written} rows written, {self.rows_errored} errors{filtered}, "
            f"{self.seconds:.1f} s, {self.rows_per_second:.1f} rows/s -> {self.output_path}"
        )


@dataclass
class JobRun:
    cfg: DictConfig  # kept for the run record and the operators' constructor kwargs
    spec: RunSpec
    plan: InputPlan
    todo: list[Shard]
    done: set[int]
    cluster: Cluster
    fingerprint: str
    fingerprinted: dict[str, Any]  # what the fingerprint hashes: kept to name a changed key
    fs: Any
    root: str
    started: float
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    result: RunResult | None = None

    def read(self, columns: list[str]):
        """The Ray Dataset of the shards still to do: _shard, _row, id, `columns`, error columns."""
        return read_input(self.plan, self.todo, self.spec.input, columns)

    def task_args(self, stage: str = "preprocess") -> dict[str, Any]:
        """map_batches arguments of a CPU stage."""
        return {"batch_format": "pyarrow", **self.spec.tasks[stage].ray_args(actor=False)}

    def feed(self, rows, stage: str = "model"):
        """`rows` in blocks of a few batches when the stage has several actors (Ray hands each
        actor whole blocks: one shard's block per actor would leave the others idle) or another
        model stage follows (an actor's output leaves when its block is done: a whole shard's
        block would keep the next pool waiting for it)."""
        spec = self.spec.models[stage]
        if (spec.max_workers() or 1) == 1 and len(self.spec.models) == 1:
            return rows
        return rows.repartition(target_num_rows_per_block=feed_block_rows(spec))

    def model_args(self, stage: str = "model", options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """map_batches arguments of a model stage (ModelStage), constructor included; `options`:
        operator keyword arguments the job derives from other config sections."""
        spec = self.spec.models[stage]
        target, kwargs = operator_config(OmegaConf.to_container(self.cfg[stage], resolve=True))
        kwargs.update(options or {})
        actors = sum(model.max_workers() or 1 for model in self.spec.models.values())
        threads = model_threads(spec, self.cluster, actors)
        calls = getattr(get_class(target), "gpu_calls", 1)  # operators that share no state: 2
        log.info(
            "%s: %s actors%s",
            stage,
            spec.concurrency or 1,
            f" x {threads} torch threads" if threads else "",
        )
        return {
            "batch_format": "pyarrow",
            "fn_constructor_kwargs": {
                "target": target,
                "kwargs": kwargs,
                "num_threads": threads,
                "batch_size": spec.batch_size,
                "max_batch_size": spec.max_batch_size,
                "batch_tokens": spec.batch_tokens,
                "stage": stage,
            },
            **spec.ray_args(actor=True, cluster_gpus=self.cluster.gpus, gpu_calls=calls),
        }

    def write_args(self, results: list[str], error_columns: list[str] | None = None) -> dict[str, Any]:
        """map_batches arguments of the write stage: `results` are the columns the stages made,
        `error_columns` the ones errored and filtered rows keep too (next to id, stage, reason)."""
        options = {
            **asdict(self.spec.output),
            "results": results,
            "error_columns": list(error_columns or []),
            "columns": list(self.spec.output.columns),
            "run_id": self.run_id,
        }
        if not self.spec.models:
            # CPU-only: the same resources as the CPU stages make Ray fuse read -> stages -> write
            # into one task per shard, so file bytes never cross the object store (1.6x measured).
            last = list(self.spec.tasks.values())[-1]
            return {"fn_kwargs": {"output": options}, "batch_format": "pyarrow", **last.ray_args(actor=False)}
        # Writing is light: a small CPU share keeps writers from waiting behind preprocessing.
        return {
            "fn_kwargs": {"output": options},
            "batch_size": self.spec.input.shard_rows,
            "batch_format": "pyarrow",
            "num_cpus": 0.25,
        }

    def finish(
        self, manifest, report: ContactSheet | None = None, stats: Mapping[str, Any] | None = None
    ) -> RunResult:
        """Consume the write manifest: progress lines, the journal, the record, `report`
        (report.html, of every run's rows), _SUCCESS last; `stats`: the job's own figures, added
        to the record's stats (dedup: its duplicate counts)."""
        settled: dict[int, Fraction] = {}  # input rows with an outcome, per shard
        settled_rows = Fraction(0)  # their sum
        sizes = {shard.index: shard.rows for shard in self.todo}
        before = self.plan.rows - sum(sizes.values())  # rows of shards earlier runs finished
        bar = ProgressBar(self.spec.job.name, self.plan.rows, before) if in_notebook() else None
        finished: list[int] = []  # done in this run, not yet journalled
        outputs = dict.fromkeys(("rows", "errors", "filtered"), 0)  # output rows, by outcome
        last_flush = time.monotonic()
        interval = self.spec.job.progress_interval_s
        first: tuple[float, int] | None = None  # (time, rows) of the first results: steady-state rate
        batch_sizes: dict[str, set[int]] = {}  # what each model stage ran at (probed when auto)
        tokens: dict[str, int] = {}  # tokens_in / tokens_out of the written rows
        for batch in manifest.iter_batches(batch_size=None, batch_format="pyarrow"):
            if first is None:
                first = (time.monotonic(), int(pa_sum(batch["rows"])))
            for entry in batch.to_pylist():
                for stage, size in json.loads(entry["batch_sizes"] or "{}").items():
                    batch_sizes.setdefault(stage, set()).add(size)
                for name, count in json.loads(entry["usage"] or "{}").items():
                    tokens[name] = tokens.get(name, 0) + count
                shard, rows = entry["shard"], Fraction(entry["rows"], entry["parts"])
                settled[shard] = settled.get(shard, Fraction(0)) + rows
                settled_rows += rows
                for name in outputs:
                    outputs[name] += entry[name]
                if settled[shard] == sizes[shard]:
                    finished.append(shard)
            if bar is not None:
                bar.update(before + int(settled_rows), outputs)
            if time.monotonic() - last_flush >= interval:
                self._journal(finished, self._progress(int(settled_rows), outputs, log_it=bar is None))
                last_flush = time.monotonic()
        self._journal(finished, self._progress(int(settled_rows), outputs, log_it=False))
        if bar is not None:
            bar.close()
        over = [s for s, n in settled.items() if n > sizes[s]]
        missing = [s.index for s in self.todo if settled.get(s.index, 0) < s.rows]
        if over or missing:
            raise RuntimeError(f"shard accounting failed: duplicated {over[:5]}, incomplete {missing[:5]}")
        timing: dict[str, Any] = {}
        if first is not None:
            seconds = time.monotonic() - first[0]
            rate = (outputs["rows"] - first[1]) / seconds if seconds > 0 else None
            timing = {
                "first_results_s": round(first[0] - self.started, 3),
                "steady_rows_per_s": round(rate, 3) if rate is not None else None,
            }
        timing["model_batch_size"] = {stage: sorted(found) for stage, found in batch_sizes.items()}
        timing["model_actors"] = {stage: spec.concurrency or 1 for stage, spec in self.spec.models.items()}
        for stage, spec in self.spec.models.items():
            if spec.batch_size == "auto":
                ran = sorted(batch_sizes.get(stage, ()))
                log.info("%s: %s.batch_size=auto ran at %s", self.spec.job.name, stage, ran)
        this_run = {
            DATA_DIR: outputs["rows"] - outputs["errors"] - outputs["filtered"],
            ERRORS_DIR: outputs["errors"],
            FILTERED_DIR: outputs["filtered"],
        }
        return self._record(this_run, stage_summaries(manifest), {**timing, **(stats or {})}, report, tokens)

    def _journal(self, finished: list[int], progress: dict[str, Any]) -> None:
        """Mark shards done, after removing any file of theirs that another run wrote."""
        for shard in finished:
            remove_shard_files(self.fs, self.root, {shard}, keep_run=self.run_id)
        self.done.update(finished)
        finished.clear()
        run_record.write_progress(self.fs, self.root, self.done, progress)

    def _progress(self, settled: int, outputs: dict[str, int], log_it: bool = True) -> dict[str, Any]:
        """The live counts that _progress.json carries for `rayjobs status` (input rows; the
        rows of shards earlier runs finished count as done), logged as one line."""
        total = sum(shard.rows for shard in self.todo)
        seconds = time.monotonic() - self.started
        rate = settled / seconds if seconds else 0.0
        left = (total - settled) / rate if rate else None
        if log_it:
            log.info(
                "%s: %d/%d rows (%.0f%%), %.1f rows/s, %d errors, %d filtered, ~%s left",
                self.spec.job.name,
                settled,
                total,
                100 * settled / max(1, total),
                rate,
                outputs["errors"],
                outputs["filtered"],
                duration(float("inf") if left is None else left),
            )
        return {
            "run_id": self.run_id,
            "rows_done": self.plan.rows - total + settled,
            "rows_total": self.plan.rows,
            "errors": outputs["errors"],
            "filtered": outputs["filtered"],
            "rows_per_s": round(rate, 3),
            "eta_s": round(left, 1) if left is not None else None,
            "updated_at": round(time.time(), 3),
        }

    def usage(self, seconds: float, tokens: dict[str, int], rows: int) -> dict[str, Any]:
        """What this run held and made: GPU-seconds its actor pools reserved (actors x GPUs x wall
        time), CPU-seconds (the cluster's CPUs over the run when it has CPU stages, which Ray Data
        may spread over all of them; else the pools' own), tokens, images or frames, and a cost when
        runtime.gpu_hour_cost / cpu_hour_cost are set."""
        gpu_s = cpu_s = 0.0
        for spec in self.spec.models.values():
            actors = spec.max_workers() or 1
            gpu_s += actors * spec.gpus(self.cluster.gpus) * seconds
            cpu_s += actors * spec.num_cpus * seconds
        cpu_s = max(cpu_s, self.cluster.cpus * seconds) if self.spec.tasks else cpu_s
        usage: dict[str, Any] = {"gpu_s": round(gpu_s, 1), "cpu_s": round(cpu_s, 1), **tokens}
        if self.spec.job.name.endswith("_images"):
            usage["images"] = rows
        elif self.spec.job.name.endswith("_videos"):
            usage["frames"] = rows  # sampled frames (or windows), not videos
        rates = {key: self.spec.runtime.get(f"{key}_hour_cost") for key in ("gpu", "cpu")}
        if any(rate is not None for rate in rates.values()):
            cost = sum(usage[f"{key}_s"] / 3600 * float(rate or 0) for key, rate in rates.items())
            usage["cost"] = round(cost, 4)
        return usage

    def _record(
        self,
        this_run: dict[str, int],
        stages: list[dict[str, str]],
        timing: dict,
        report: ContactSheet | None,
        tokens: dict[str, int],
    ) -> RunResult:
        """Totals over this run and the shards earlier runs finished; the record; _SUCCESS."""
        seconds = time.monotonic() - self.started
        resumed = {shard.index for shard in self.plan.shards} - {shard.index for shard in self.todo}
        earlier = outcome_rows(self.fs, self.root, resumed)
        total = {folder: this_run[folder] + earlier[folder] for folder in this_run}
        outputs_now = sum(this_run.values())
        # The budget is a share of output rows: with fan-out an input row may become several.
        ok = total[ERRORS_DIR] <= self.spec.job.max_error_fraction * sum(total.values())
        stats = {
            "fingerprint": self.fingerprint,
            "rows_in": self.plan.rows,
            "rows_written": total[DATA_DIR],
            "rows_errored": total[ERRORS_DIR],
            "rows_filtered": total[FILTERED_DIR],
            "rows_this_run": outputs_now,
            "rows_resumed": sum(earlier.values()),
            "shards": len(self.plan.shards),
            "wall_s": round(seconds, 3),
            "rows_per_s": round(outputs_now / seconds, 3) if seconds else None,
            **timing,
            "cluster": asdict(self.cluster),
            "stages": stages,
            "usage": self.usage(seconds, tokens, outputs_now),
        }
        if report is not None:
            self._write_report(report)
        self._write_record("done" if ok else "failed: error budget exceeded", stats)
        if ok:
            run_record.write_success(self.fs, self.root)
        return RunResult(
            self.spec.job.name,
            self.spec.output.path,
            self.plan.rows,
            total[DATA_DIR],
            total[ERRORS_DIR],
            seconds,
            stats["rows_per_s"] or 0.0,
            ok=ok,
            stats=stats,
            rows_filtered=total[FILTERED_DIR],
            storage_options=dict(self.spec.output.storage_options),
        )

    def _write_report(self, report: ContactSheet) -> None:
        """report.html; the results are all written by now, so a failure here only warns."""
        name, where = self.spec.job.name, join(self.root, REPORT)
        try:
            shown = write_report(self.fs, self.root, report, f"{name}: {self.spec.output.path}")
        except Exception as error:
            log.warning(
                "%s: %s not written (%s: %s); the results are complete",
                name,
                where,
                type(error).__name__,
                error,
            )
            return
        log.info("%s: report: %s (%d of %d rows)", name, where, shown["shown"], shown["rows"])

    def _write_record(self, status: str, stats: dict[str, Any]) -> None:
        run_record.write_record(
            self.fs,
            self.root,
            {
                "job": self.spec.job.name,
                "status": status,
                "fingerprint": self.fingerprint,
                "fingerprinted": self.fingerprinted,
                "config": OmegaConf.to_container(self.cfg, resolve=True),
                "stats": stats,
                "versions": versions(),
                "argv": sys.argv,
            },
        )


def start_job(
    cfg: DictConfig,
    *,
    models: Mapping[str, ModelIO],
    tasks: Iterable[str] = ("preprocess",),
    columns: Iterable[tuple[str, str | None]] = (),
    rows_per_input: int = 1,
    webdataset: bool = False,
) -> JobRun:
    """Everything before the pipeline: checks (ConfigError, before Ray), output claim, Ray.

    `models`: config key of each model stage -> (inputs it is fed, outputs the job needs), in
    chain order; {} for a CPU-only job (no actor pool, no GPU). `tasks`: the CPU stages' keys.
    `columns`: (config key, input column) pairs that must exist in the input.
    `rows_per_input`: rows the model stages get per input row (a fan-out ahead of them), for
    sizing `concurrency: auto` pools. `webdataset`: the kept rows carry an image file, which
    output.format=webdataset packs into tars.
    """
    started = time.monotonic()
    spec = parse_run(cfg, tasks, models, webdataset)
    for key, (inputs, outputs) in models.items():
        check_operator(OmegaConf.to_container(cfg[key], resolve=True), inputs, spec.job.name, outputs, key)
        gpus = spec.models[key].num_gpus
        if gpus not in ("auto", 0.0) and not _joins_cluster(spec.runtime) and local_gpus() == 0:
            raise ConfigError(f"{key}.num_gpus", f"asks {gpus:g} GPU but this machine has none")
    if _CHECK_ONLY.get():
        raise ConfigChecked
    plan = plan_input(spec.input, spec.job.limit)
    passthrough = [("output.columns", name) for name in spec.output.columns]
    check_columns(plan.schema, [*columns, ("input.id_column", spec.input.id_column), *passthrough])
    parts = fingerprint_parts(cfg, plan)
    fingerprint = run_record.fingerprint(parts)
    fs, root = filesystem(spec.output.path, spec.output.storage_options)
    done = claim_output(spec, fs, root, fingerprint, parts, plan)
    run = JobRun(cfg, spec, plan, [], done, Cluster(0, 0, 0), fingerprint, parts, fs, root, started)
    if done == {shard.index for shard in plan.shards} and run_record.has_success(fs, root):
        stats = (run_record.read_record(fs, root) or {}).get("stats", {})
        run.result = RunResult(
            spec.job.name,
            spec.output.path,
            plan.rows,
            stats.get("rows_written", 0),
            stats.get("rows_errored", 0),
            0.0,
            0.0,
            already_done=True,
            stats=stats,
            rows_filtered=stats.get("rows_filtered", 0),
            storage_options=dict(spec.output.storage_options),
        )
        return run
    run.cluster = start_ray(spec.runtime)
    run.todo = [shard for shard in plan.shards if shard.index not in done]
    rows = sum(shard.rows for shard in run.todo) * rows_per_input
    run.spec = replace(spec, models=size_pools(run.cluster, spec.tasks, spec.models, rows))
    check_fits(run.cluster, spec.tasks, run.spec.models)
    remove_shard_files(fs, root, {shard.index for shard in run.todo})
    if done:
        log.info("%s: resuming: %d of %d shards already done", spec.job.name, len(done), len(plan.shards))
    run._write_record("running", {"fingerprint": fingerprint, "rows_in": plan.rows, "run_id": run.run_id})
    return run


def _joins_cluster(runtime: Mapping[str, Any]) -> bool:
    return bool(runtime.get("address") or os.environ.get("RAY_ADDRESS"))
