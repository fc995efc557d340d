"""Generate images: every prompt of a prompt list, in every style variation and grid point, n times.

    python -m rayjobs.generate_images input.path=prompts.csv input.format=csv output.path=out/images \
        model.path=stable-diffusion-v1-5/stable-diffusion-v1-5 model.n=4 \
        'prompt.variations=[", watercolor", ", studio photo"]' '+grid.guidance_scale=[5,7.5]'

read shards of Parquet / CSV / JSONL (Ray tasks) -> expand prompts: column or template, x
variations x grid x n, one seeded row per image; a missing or empty prompt is an error row (CPU,
in the read task) -> ImageGenerator (actor pool: one diffusers pipeline per actor, on a GPU when
the cluster has one) -> encode PNG / JPEG / WebP (CPU tasks) -> write: files/ (the images, named
from the row id), data/ (id, parent_id, index, prompt, negative_prompt, seed, variation,
num_inference_steps, guidance_scale, height, width, path, bytes, output.columns), errors/, then the
run record and _SUCCESS.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from operators.image.image_generator import ImageGenerator
from operators.image.image_prompts import PARAMETERS, combinations, expand_prompts
from operators.image.transform_images import FORMATS, encode_images
from operators.text.prompt_template import template_columns
from rayjobs.config.config_error import ConfigError
from rayjobs.pipeline.cli import run_cli
from rayjobs.pipeline.job_run import RunResult, start_job
from rayjobs.pipeline.model_stage import ModelStage
from rayjobs.pipeline.write_results import write_results

RESULTS = ["prompt", "negative_prompt", "seed", "variation", *PARAMETERS]


def run(cfg: DictConfig) -> RunResult:
    options = prompt_options(cfg)  # checked before anything starts
    encoding = encode_options(cfg)
    checked = input_columns(cfg.prompt)
    models = {"model": (ImageGenerator.inputs, ("image_rgb", "image_shape"))}
    per_prompt = len(combinations(options["variations"], options["grid"])) * options["n"]
    job = start_job(
        cfg, models=models, tasks=("preprocess", "encode"), columns=checked, rows_per_input=per_prompt
    )
    if job.result:  # this exact job already finished in output.path
        return job.result

    rows = job.read(columns=[*dict.fromkeys(column for _, column in checked), *cfg.output.columns])
    prompts = rows.map_batches(expand_prompts, fn_kwargs=options, **job.task_args())
    images = job.feed(prompts).map_batches(ModelStage, **job.model_args())
    files = images.map_batches(encode_images, fn_kwargs=encoding, **job.task_args("encode"))
    manifest = files.map_batches(write_results, **job.write_args(RESULTS))
    return job.finish(manifest)


def input_columns(prompt: DictConfig) -> list[tuple[str, str]]:
    """(config key, input column) of every column the prompts are made from."""
    if prompt.template:
        pairs = [("prompt.template", name) for name in template_columns(prompt.template)]
    else:
        pairs = [("prompt.column", prompt.column)]
    return pairs + ([("prompt.negative_column", prompt.negative_column)] if prompt.negative_column else [])


def prompt_options(cfg: DictConfig) -> dict[str, Any]:
    """fn_kwargs of expand_prompts; a bad value is a ConfigError naming its key."""
    model, prompt = cfg.model, cfg.prompt
    if not (prompt.column or prompt.template):
        raise ConfigError("prompt.column", "set the prompt column, or prompt.template")
    n = model.get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError("model.n", f"must be a positive integer (images per prompt), got {n!r}")
    defaults = {name: model.get(name) for name in PARAMETERS}
    grid = OmegaConf.to_container(cfg.grid, resolve=True) if cfg.get("grid") else {}
    for name, values in grid.items():
        if name not in PARAMETERS:
            raise ConfigError(
                f"grid.{name}", f"is not a generation parameter; one of {', '.join(PARAMETERS)}"
            )
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid.{name}", f"must be a non-empty list, got {values!r}")
    for name in PARAMETERS:
        for value in grid.get(name, [defaults[name]]):
            _check_parameter(f"grid.{name}" if name in grid else f"model.{name}", name, value)
    variations = list(prompt.get("variations") or [])
    if not all(isinstance(v, str) for v in variations):
        raise ConfigError("prompt.variations", f"must be a list of strings, got {variations!r}")
    return {
        "column": prompt.column,
        "template": prompt.template,
        "negative": prompt.negative,
        "negative_column": prompt.negative_column,
        "variations": variations,
        "grid": grid,
        "defaults": defaults,
        "n": n,
        "seed": int(model.get("seed") or 0),
    }


def _check_parameter(key: str, name: str, value: Any) -> None:
    if name in ("height", "width"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 8 or value % 8 or value > 8192:
            raise ConfigError(
                key, f"must be a multiple of 8 from 8 to 8192 (the VAE's scale factor), got {value!r}"
            )
    elif name == "num_inference_steps":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
            raise ConfigError(key, f"must be an integer from 1 to 1000, got {value!r}")
    elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(key, f"must be a number >= 0, got {value!r}")


def encode_options(cfg: DictConfig) -> dict[str, Any]:
    fmt, quality = cfg.output.get("image_format", "png"), cfg.output.get("quality", 95)
    if fmt not in FORMATS:
        raise ConfigError("output.image_format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ConfigError("output.quality", f"must be an integer from 1 to 100, got {quality!r}")
    return {"format": str(fmt), "quality": int(quality)}


def main() -> None:
    run_cli("generate_images")


if __name__ == "__main__":
    main()
