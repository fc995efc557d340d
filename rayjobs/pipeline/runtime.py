"""Start or join Ray, and check that the stages fit the cluster it gives us."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from rayjobs.config.config_error import ConfigError
from rayjobs.config.stage_spec import StageSpec
from rayjobs.pipeline.progress_bar import in_notebook

log = logging.getLogger("rayjobs")

# CPU actors per node under `concurrency: auto`: each holds its own copy of the model.
CPU_ACTORS_PER_NODE = 8
# Under `concurrency: auto` each actor gets at least this many batches: starting one costs its
# process, torch and the model (6 s for a CLIP actor on a 2-core machine), worth it only for work.
BATCHES_PER_ACTOR = 8


@dataclass(frozen=True)
class Cluster:
    cpus: float
    gpus: float
    nodes: int

    @property
    def cpus_per_node(self) -> float:
        return self.cpus / max(1, self.nodes)


def local_gpus() -> int:
    """CUDA devices on this machine, without initialising CUDA in the driver."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:
        return 0


def start_ray(runtime: Mapping[str, Any]) -> Cluster:
    """Join RAY_ADDRESS / runtime.address, or start a local Ray; reuse one already running."""
    import ray
    from ray.data import DataContext

    if not ray.is_initialized():
        address = runtime.get("address") or os.environ.get("RAY_ADDRESS")
        kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": True}
        if runtime.get("env_vars"):
            kwargs["runtime_env"] = {"env_vars": {k: str(v) for k, v in runtime["env_vars"].items()}}
        if address:
            kwargs["address"] = address
        else:
            # "local": a new Ray of our own, never a cluster some `ray start` left on this machine.
            kwargs["address"] = "local"
            kwargs["include_dashboard"] = False
            for key in ("num_cpus", "num_gpus", "object_store_memory"):
                if runtime.get(key) is not None:
                    kwargs[key] = runtime[key]
        ray.init(**kwargs)
    context = DataContext.get_current()
    # In a notebook the job's own bar (rayjobs.pipeline.progress_bar) replaces Ray Data's.
    context.enable_progress_bars = bool(runtime.get("progress_bars", True)) and not in_notebook()
    context.print_on_execution_start = False
    resources = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    return Cluster(resources.get("CPU", 0.0), resources.get("GPU", 0.0), nodes)


def feed_block_rows(spec: StageSpec) -> int:
    """Rows per block in front of a pool of actors: a few batches, so the work spreads evenly."""
    return 2 * (spec.batch_size if isinstance(spec.batch_size, int) else 128)


def size_pools(
    cluster: Cluster,
    tasks: Mapping[str, StageSpec],
    actors: Mapping[str, StageSpec],
    rows: int | None = None,
) -> dict[str, StageSpec]:
    """The model stages with `concurrency: auto` made concrete for this cluster.

    GPU stages: one actor per GPU, the GPUs split among the GPU stages. CPU stages: one actor
    per core (at most CPU_ACTORS_PER_NODE a node), split among the CPU stages, each with a CPU
    share that leaves room for the CPU tasks: on CPUs processes scale where one process's torch
    threads do not (MiniLM on 2 cores: 191 rows/s from 2 one-thread actors, 151 from one with 2).
    `rows`: the input rows to do; no more actors than BATCHES_PER_ACTOR batches of them.
    """
    auto = [key for key, spec in actors.items() if spec.concurrency == "auto"]
    sized = dict(actors)
    on_gpu = [key for key in auto if actors[key].gpus(cluster.gpus)]
    on_cpu = [key for key in auto if key not in on_gpu]

    def at_most_worth(key: str, pool: int) -> int:
        batch = actors[key].batch_size if isinstance(actors[key].batch_size, int) else 128
        return pool if rows is None else max(1, min(pool, rows // (BATCHES_PER_ACTOR * batch)))

    for key in on_gpu:
        share = cluster.gpus / (actors[key].gpus(cluster.gpus) * len(on_gpu))
        sized[key] = replace(actors[key], concurrency=at_most_worth(key, max(1, int(share))))
    if not on_cpu:
        return sized
    per_node = min(CPU_ACTORS_PER_NODE, max(1, int(cluster.cpus_per_node)))
    pool = max(1, per_node * max(1, cluster.nodes) // len(on_cpu))
    fixed = {key: spec for key, spec in sized.items() if key not in on_cpu}
    room = cluster.cpus - _held_cpus(fixed) - _task_cpus(tasks)
    for key in on_cpu:
        # Rounded down: a share rounded up would make the pools hold more than check_fits allows.
        share = min(actors[key].num_cpus, math.floor(1000 * room / (pool * len(on_cpu))) / 1000)
        if share < 0.1:  # too little room for that many: one actor, and check_fits explains
            sized[key] = replace(actors[key], concurrency=1)
        else:
            sized[key] = replace(actors[key], concurrency=at_most_worth(key, pool), num_cpus=share)
    return sized


def _held_cpus(actors: Mapping[str, StageSpec]) -> float:
    """CPUs the actor pools keep for themselves."""
    return sum((spec.max_workers() or 1) * spec.num_cpus for spec in actors.values())


def _task_cpus(tasks: Mapping[str, StageSpec]) -> float:
    """CPUs the CPU tasks need free to make progress: the widest task's, at least a quarter."""
    return max(max((spec.num_cpus for spec in tasks.values()), default=0.0), 0.25)


def check_fits(cluster: Cluster, tasks: Mapping[str, StageSpec], actors: Mapping[str, StageSpec]) -> None:
    """Fail fast on pools Ray would wait on forever; `tasks` and `actors` by config key."""
    gpus_held = 0.0
    for key, spec in actors.items():
        gpus = spec.gpus(cluster.gpus)
        if gpus and cluster.gpus < gpus:
            raise ConfigError(
                f"{key}.num_gpus", f"asks {gpus:g} GPU per actor; the cluster has {cluster.gpus:g}"
            )
        pool = spec.max_workers() or 1
        gpus_held += pool * gpus
        if gpus and gpus_held > cluster.gpus:
            raise ConfigError(
                f"{key}.concurrency",
                f"{pool} actors x {gpus:g} GPU (with the pools before it) > {cluster.gpus:g} GPUs",
            )
    for key, spec in tasks.items():
        if spec.num_cpus > cluster.cpus:
            raise ConfigError(f"{key}.num_cpus", f"{spec.num_cpus:g} > {cluster.cpus:g} CPUs in the cluster")
    # Actors holding every CPU starve the read and preprocess tasks: Ray then hangs, silently.
    held, needed = _held_cpus(actors), _task_cpus(tasks)
    if actors and held + needed > cluster.cpus:
        key = next(iter(actors))
        raise ConfigError(
            f"{key}.num_cpus",
            f"actor pools take {held:g} CPUs + {needed:g} for CPU tasks > {cluster.cpus:g} CPUs: the "
            "pipeline would deadlock; lower num_cpus or concurrency of the model stages",
        )


def model_threads(model: StageSpec, cluster: Cluster, actors: int) -> int | None:
    """torch threads per CPU actor: a node's cores shared among its share of all `actors`
    (GPU actors: torch's default)."""
    if model.num_threads:
        return model.num_threads
    if model.gpus(cluster.gpus):
        return None
    per_node = math.ceil(actors / max(1, cluster.nodes))
    return max(1, int(cluster.cpus_per_node // max(1, per_node)))
