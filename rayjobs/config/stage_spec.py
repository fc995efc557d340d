"""What a stage asks of Ray (batch size, CPUs, GPUs, pool size), and the one mapping to Ray's words.

Ray's pool keywords changed twice across releases (compute=, concurrency=, compute= again);
nothing else in rayjobs names them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rayjobs.config.config_error import ConfigError

STAGE_KEYS = (
    "batch_size",
    "batch_tokens",
    "concurrency",
    "num_cpus",
    "num_gpus",
    "memory",
    "num_threads",
    "max_batch_size",
)


@dataclass(frozen=True)
class StageSpec:
    """Resources of one stage. num_gpus may be "auto": 1 when the cluster has GPUs, else 0;
    batch_size may be "auto" for actors: each probes its own (rayjobs.pipeline.batch_probe),
    never above max_batch_size; concurrency may be "auto" for actors: sized to the cluster
    (rayjobs.pipeline.runtime.size_pools); num_threads: torch threads per CPU actor (null: its share)."""

    batch_size: int | str | None
    num_cpus: float = 1.0
    num_gpus: float | str = 0.0
    concurrency: int | tuple[int, int] | str | None = None
    memory: int | None = None
    num_threads: int | None = None
    max_batch_size: int = 1024
    batch_tokens: int | None = None  # text actors: rows x longest row per call at most

    @classmethod
    def parse(
        cls, node: Mapping[str, Any], key: str, whole_blocks: bool = False, auto: bool = False
    ) -> StageSpec:
        """Read and check the stage keys of a config node; errors name `key.<field>`.

        `whole_blocks`: batch_size may be null, one call per block (for CPU stages: a shard).
        `auto`: batch_size may be "auto".
        """
        batch_size = node.get("batch_size")
        if (batch_size is None and whole_blocks) or (batch_size == "auto" and auto):
            pass
        elif isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            allowed = "a positive integer" + (" or auto" if auto else "")
            raise ConfigError(f"{key}.batch_size", f"must be {allowed}, got {batch_size!r}")
        num_cpus = _non_negative(node.get("num_cpus", 1), f"{key}.num_cpus")
        raw_gpus = node.get("num_gpus", 0)
        num_gpus = "auto" if raw_gpus == "auto" else _non_negative(raw_gpus, f"{key}.num_gpus")
        memory = node.get("memory")
        if memory is not None:
            memory = int(_non_negative(memory, f"{key}.memory"))
        threads = node.get("num_threads")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"{key}.num_threads", f"must be a positive integer or null, got {threads!r}")
        largest = node.get("max_batch_size", 1024)
        if isinstance(largest, bool) or not isinstance(largest, int) or largest < 1:
            raise ConfigError(f"{key}.max_batch_size", f"must be a positive integer, got {largest!r}")
        concurrency = _concurrency(node.get("concurrency"), key, auto)
        tokens = node.get("batch_tokens")
        if tokens is not None:
            if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
                allowed = "must be a positive integer or null"
                raise ConfigError(f"{key}.batch_tokens", f"{allowed}, got {tokens!r}")
            if not isinstance(batch_size, int):
                wanted = f"needs a fixed {key}.batch_size (the most rows a call)"
                raise ConfigError(f"{key}.batch_tokens", f"{wanted}, not {batch_size!r}")
        return cls(batch_size, num_cpus, num_gpus, concurrency, memory, threads, largest, tokens)

    def gpus(self, cluster_gpus: float) -> float:
        """GPUs per worker once the cluster is known."""
        if self.num_gpus == "auto":
            return 1.0 if cluster_gpus >= 1 else 0.0
        return float(self.num_gpus)

    def max_workers(self) -> int | None:
        """Upper bound on concurrent workers, when one is set."""
        if self.concurrency in (None, "auto"):
            return None
        return self.concurrency if isinstance(self.concurrency, int) else self.concurrency[1]

    def ray_args(self, *, actor: bool, cluster_gpus: float = 0.0, gpu_calls: int = 1) -> dict[str, Any]:
        """Keyword arguments for Dataset.map_batches. `gpu_calls`: operator calls a GPU actor
        runs at once (an operator's `gpu_calls`; operators.torch_device.thread_stream)."""
        from ray.data import ActorPoolStrategy, TaskPoolStrategy

        # auto / batch_tokens: one call per block; the actor cuts it into batches itself.
        batch_size = None if self.batch_size == "auto" or self.batch_tokens else self.batch_size
        args: dict[str, Any] = {"batch_size": batch_size, "num_cpus": self.num_cpus}
        gpus = self.gpus(cluster_gpus)
        if gpus:
            args["num_gpus"] = gpus
        if self.memory:
            args["memory"] = self.memory
        if actor:
            # An explicit (empty, so inherited) runtime_env makes the actor's remote args differ
            # from the tasks': Ray never fuses CPU preprocessing into the model actor.
            args["runtime_env"] = {}
            pool = 1 if self.concurrency in (None, "auto") else self.concurrency  # auto: see size_pools
            sizes = {"size": pool} if isinstance(pool, int) else {"min_size": pool[0], "max_size": pool[1]}
            if gpus and gpu_calls > 1:  # each call on its own stream: copies overlap compute
                sizes.update(max_concurrent_calls_per_actor=gpu_calls, enable_true_multi_threading=True)
            args["compute"] = ActorPoolStrategy(**sizes)
        elif self.concurrency is not None:
            args["compute"] = TaskPoolStrategy(size=self.max_workers())
        return args


def _non_negative(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(key, f"must be a number >= 0, got {value!r}")
    return float(value)


def _concurrency(value: Any, key: str, auto: bool = False) -> int | tuple[int, int] | str | None:
    if value is None or (value == "auto" and auto):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if not isinstance(value, str | bytes) and hasattr(value, "__len__") and len(value) == 2:
        low, high = value
        if all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)):
            if 1 <= low <= high:
                return (low, high)
    allowed = "n >= 1, [min, max]" + (" or auto" if auto else "")
    raise ConfigError(f"{key}.concurrency", f"must be {allowed}, got {value!r}")
