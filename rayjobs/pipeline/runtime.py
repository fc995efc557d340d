"""Start or join Ray, and check that the stages fit the cluster it gives us."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rayjobs.config.config_error import ConfigError
from rayjobs.config.stage_spec import StageSpec

log = logging.getLogger("rayjobs")


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
    context.enable_progress_bars = bool(runtime.get("progress_bars", True))
    context.print_on_execution_start = False
    resources = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    return Cluster(resources.get("CPU", 0.0), resources.get("GPU", 0.0), nodes)


def check_fits(cluster: Cluster, tasks: Mapping[str, StageSpec], actors: Mapping[str, StageSpec]) -> None:
    """Fail fast on pools Ray would wait on forever; `tasks` and `actors` by config key."""
    held = 0.0  # CPUs the actor pools keep for themselves
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
        held += pool * spec.num_cpus
    widest = max((spec.num_cpus for spec in tasks.values()), default=0.0)
    for key, spec in tasks.items():
        if spec.num_cpus > cluster.cpus:
            raise ConfigError(f"{key}.num_cpus", f"{spec.num_cpus:g} > {cluster.cpus:g} CPUs in the cluster")
    # Actors holding every CPU starve the read and preprocess tasks: Ray then hangs, silently.
    if actors and held + max(widest, 0.25) > cluster.cpus:
        key = next(iter(actors))
        raise ConfigError(
            f"{key}.num_cpus",
            f"actor pools take {held:g} CPUs + {widest:g} for CPU tasks > {cluster.cpus:g} CPUs: the "
            "pipeline would deadlock; lower num_cpus or concurrency of the model stages",
        )


def model_threads(model: StageSpec, cluster: Cluster, actors: int) -> int | None:
    """torch threads per CPU actor: the node's cores shared among all `actors` (GPU actors: torch's)."""
    if model.num_threads:
        return model.num_threads
    if model.gpus(cluster.gpus):
        return None
    return max(1, int(cluster.cpus_per_node // max(1, actors)))
