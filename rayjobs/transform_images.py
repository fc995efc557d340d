"""Transform images: thumbnails, resizes and format conversion, on CPUs only.

    python -m rayjobs.transform_images input.path=photos/ output.path=out/thumbs
    python -m rayjobs.transform_images input.path=photos/ output.path=out/web \
        'transform.sizes=[128,512]' transform.format=webp transform.quality=80

read shards (Ray tasks; file bytes fetched concurrently) -> decode once, orient, then per size
resize (thumbnail / fit / fill / crop) and encode as JPEG / PNG / WebP (CPU, inside each read
task; bad images become error rows; several sizes fan out into one row each) -> write: files/
(the images, named from the row id; with output=webdataset, tars/ of <key>.<ext> + <key>.json
instead), data/ (id, [parent_id, index,] path, bytes, width, height, format, size, output.columns),
errors/ (id, stage, reason), report.html, then the run record
and _SUCCESS.
No model stage: no actor pool and no GPU.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from operators.image.transform_images import MODES, Size, parse_background, transform_images
from rayjobs.config.config_error import ConfigError
from rayjobs.config.image_inputs import image_columns
from rayjobs.config.image_outputs import image_format, image_quality, report_images
from rayjobs.pipeline.cli import run_cli
from rayjobs.pipeline.job_run import RunResult, start_job
from rayjobs.pipeline.write_results import write_results
from rayjobs.report.contact_sheet import ContactSheet

RESULTS = ["path", "bytes", "width", "height", "format", "size"]


def run(cfg: DictConfig) -> RunResult:
    options = transform_options(cfg)  # checked before anything starts
    read_columns, checked = image_columns(cfg)
    job = start_job(cfg, models={}, tasks=("transform",), columns=checked, webdataset=True)
    if job.result:  # this exact job already finished in output.path
        return job.result

    rows = job.read(columns=read_columns)
    images = rows.map_batches(transform_images, fn_kwargs=options, **job.task_args("transform"))
    manifest = images.map_batches(write_results, **job.write_args(RESULTS))
    return job.finish(manifest, report=ContactSheet(image=report_images(cfg, ["path"])))


def transform_options(cfg: DictConfig) -> dict[str, Any]:
    """fn_kwargs of transform_images; a bad value is a ConfigError naming its key."""
    node = cfg.transform
    sizes = list(node.sizes) if node.get("sizes") is not None else []
    if not sizes:
        raise ConfigError("transform.sizes", "must list at least one size, e.g. [256] or ['640x480']")
    for size in sizes:
        _check("transform.sizes", lambda size=size: Size.parse(size))
    if node.mode not in MODES:
        raise ConfigError("transform.mode", f"must be one of {', '.join(MODES)}, got {node.mode!r}")
    image_format("transform.format", node.format)
    quality = image_quality("transform.quality", node.quality)
    _check("transform.background", lambda: parse_background(node.background))
    return {
        "image_column": cfg.input.image_column or "image",
        "sizes": sizes,
        "mode": str(node.mode),
        "format": str(node.format),
        "quality": int(quality),
        "background": str(node.background),
        "keep_metadata": bool(node.keep_metadata),
        "max_pixels": int(node.max_pixels),
        "keep_image": (cfg.input.image_column or "image") in list(cfg.output.columns),
    }


def _check(key: str, parse) -> None:
    try:
        parse()
    except ValueError as error:
        raise ConfigError(key, str(error)) from None


def main() -> None:
    run_cli("transform_images")


if __name__ == "__main__":
    main()
