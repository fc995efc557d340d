"""The config parsed once, at the edge, into small typed specs that the pipeline passes down:
the job, its input, its output and each stage (rayjobs.config.stage_spec). A bad value is a
ConfigError naming its key, raised before Ray starts."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rayjobs.config.config_error import ConfigError
from rayjobs.config.stage_spec import StageSpec


@dataclass(frozen=True)
class JobSpec:
    name: str
    limit: int | None = None  # the first N input rows only
    overwrite: bool = False
    max_error_fraction: float = 0.01  # errored / output rows above this: exit 1
    progress_interval_s: float = 10.0

    @classmethod
    def parse(cls, node: Mapping[str, Any]) -> JobSpec:
        limit = node.get("limit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ConfigError("job.limit", f"must be a positive integer or null, got {limit!r}")
        budget = node.get("max_error_fraction", 0.01)
        if isinstance(budget, bool) or not isinstance(budget, int | float) or not 0 <= budget <= 1:
            raise ConfigError("job.max_error_fraction", f"must be between 0 and 1, got {budget!r}")
        interval = node.get("progress_interval_s") or 10
        return cls(str(node["name"]), limit, bool(node.get("overwrite")), float(budget), float(interval))


@dataclass(frozen=True)
class InputSpec:
    path: str
    format: str = "parquet"  # a key of rayjobs.io.input_formats.FORMATS
    id_column: str | None = None
    text_column: str | None = None
    image_column: str = "image"
    shard_rows: int = 4096
    storage_options: dict[str, Any] = field(default_factory=dict)
    extensions: tuple[str, ...] = ()
    split_seconds: float = 300.0  # videos: the time ranges a video is cut into
    shard_seconds: float = 60.0  # videos: the most video a shard packs (one range at least)
    video_column: str = "path"  # videos listed in a Parquet file: the column of paths

    @classmethod
    def parse(cls, node: Mapping[str, Any]) -> InputSpec:
        from rayjobs.io.input_formats import FORMATS  # the format table imports the readers

        if node.get("path") in (None, "", "???"):
            raise ConfigError("input.path", "is required, e.g. input.path=...")
        fmt = node.get("format", "parquet")
        if fmt not in FORMATS:
            raise ConfigError("input.format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")
        shard_rows = node.get("shard_rows", FORMATS[fmt].shard_rows)
        if isinstance(shard_rows, bool) or not isinstance(shard_rows, int) or shard_rows < 1:
            raise ConfigError("input.shard_rows", f"must be a positive integer, got {shard_rows!r}")
        seconds = {
            key: node.get(key, default) for key, default in (("split_seconds", 300), ("shard_seconds", 60))
        }
        for key, value in seconds.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"input.{key}", f"must be a positive number of seconds, got {value!r}")
        return cls(
            path=str(node["path"]),
            format=fmt,
            id_column=node.get("id_column"),
            text_column=node.get("text_column"),
            image_column=node.get("image_column") or "image",
            shard_rows=shard_rows,
            storage_options=dict(node.get("storage_options") or {}),
            extensions=tuple(str(e).lower() for e in node.get("extensions") or ()),
            split_seconds=float(seconds["split_seconds"]),
            shard_seconds=float(seconds["shard_seconds"]),
            video_column=str(node.get("video_column") or "path"),
        )


OUTPUT_FORMATS = ("parquet", "webdataset")


@dataclass(frozen=True)
class OutputSpec:
    path: str
    columns: tuple[str, ...] = ()  # input columns copied next to the id and the results
    embedding_dtype: str = "float32"
    compression: str = "zstd"
    storage_options: dict[str, Any] = field(default_factory=dict)
    format: str = "parquet"  # webdataset: kept rows' images in tars/ instead of files/
    tar_size_mb: float = 256.0  # webdataset: the most a tar holds (a larger sample gets one alone)
    tar_samples: int | None = None  # webdataset: the most samples a tar holds; None: no limit

    @classmethod
    def parse(cls, node: Mapping[str, Any], webdataset: bool = False) -> OutputSpec:
        """`webdataset`: the job has images to put in tars (output.format=webdataset is allowed)."""
        if node.get("path") in (None, "", "???"):
            raise ConfigError("output.path", "is required, e.g. output.path=...")
        dtype = node.get("embedding_dtype", "float32")
        if dtype not in ("float32", "float16"):
            raise ConfigError("output.embedding_dtype", "must be float32 or float16")
        fmt = node.get("format") or "parquet"
        if fmt not in OUTPUT_FORMATS:
            raise ConfigError("output.format", f"must be one of {', '.join(OUTPUT_FORMATS)}, got {fmt!r}")
        if fmt == "webdataset" and not webdataset:
            raise ConfigError(
                "output.format",
                "webdataset tars hold each kept row's image and this job makes none; "
                "use output=parquet (webdataset: transform_images, generate_images, score_images)",
            )
        size = node.get("tar_size_mb", 256)
        if isinstance(size, bool) or not isinstance(size, int | float) or not 0 < size < math.inf:
            raise ConfigError("output.tar_size_mb", f"must be a positive number of MiB, got {size!r}")
        samples = node.get("tar_samples")
        if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
            raise ConfigError("output.tar_samples", f"must be a positive integer or null, got {samples!r}")
        return cls(
            path=str(node["path"]),
            columns=tuple(node.get("columns") or ()),
            embedding_dtype=dtype,
            compression=str(node.get("compression") or "zstd"),
            storage_options=dict(node.get("storage_options") or {}),
            format=str(fmt),
            tar_size_mb=float(size),
            tar_samples=samples,
        )


@dataclass(frozen=True)
class RunSpec:
    """A job's chain as configured: CPU stages and model stages by config key, in order."""

    job: JobSpec
    input: InputSpec
    output: OutputSpec
    tasks: dict[str, StageSpec]
    models: dict[str, StageSpec]
    runtime: dict[str, Any]


def parse_run(
    cfg: DictConfig, tasks: Iterable[str], models: Iterable[str], webdataset: bool = False
) -> RunSpec:
    """Every spec of a job, checked; `tasks` and `models` are the stages' config keys;
    `webdataset`: the job can write its kept rows' images as tars."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    return RunSpec(
        job=JobSpec.parse(tree["job"]),
        input=InputSpec.parse(tree.get("input") or {}),
        output=OutputSpec.parse(tree.get("output") or {}, webdataset),
        tasks={key: StageSpec.parse(_stage(tree, key), key, whole_blocks=True) for key in tasks},
        models={key: StageSpec.parse(_stage(tree, key), key, auto=True) for key in models},
        runtime=_runtime(tree.get("runtime") or {}),
    )


def _runtime(node: Mapping[str, Any]) -> dict[str, Any]:
    for key in ("gpu_hour_cost", "cpu_hour_cost"):
        value = node.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
            raise ConfigError(f"runtime.{key}", f"must be a non-negative number (per hour), got {value!r}")
    return dict(node)


def _stage(tree: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    node = tree.get(key)
    if not isinstance(node, Mapping):
        raise ConfigError(key, "is required: this job's stage config (batch_size, num_cpus, ...)")
    return node
