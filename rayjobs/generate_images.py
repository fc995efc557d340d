"""Generate images: every prompt of a prompt list, in every style variation and grid point, n
times; optionally score and filter them and make thumbnails, all in one stream.

    python -m rayjobs.generate_images input.path=prompts.csv input.format=csv output.path=out/images \
        model.path=stable-diffusion-v1-5/stable-diffusion-v1-5 model.n=4 \
        'prompt.variations=[", watercolor", ", studio photo"]' '+grid.guidance_scale=[5,7.5]' \
        score.text_column=prompt 'filter=["clip_score >= 25"]' 'thumbnails.sizes=[256]'

read shards of Parquet / CSV / JSONL (Ray tasks) -> expand prompts: column or template, x
variations x grid x n, one seeded row per image; a missing or empty prompt is an error row (CPU,
in the read task) -> ImageGenerator (actor pool: one diffusers pipeline per actor, on a GPU when
the cluster has one) -> with score.*: resize and crop for the scorer, tokenize each prompt (CPU)
-> ImageScorer (a second actor pool: CLIP / SigLIP) -> filter rules (CPU) -> encode PNG / JPEG /
WebP, and thumbnails (CPU tasks) -> write: files/ (kept images, named from the row id; with
output=webdataset, tars/ of <key>.<ext> + <key>.json instead),
thumbnail_<size>/ (kept and filtered), data/ (id, parent_id, index, prompt, negative_prompt,
seed, variation, num_inference_steps, guidance_scale, height, width, the scores, path, bytes,
thumbnail paths, output.columns), filtered/ (the rule with the value, and the same columns),
errors/, report.html, then the run record and _SUCCESS.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from operators.filter_rows import filter_rows
from operators.image.decode_images import pixels_from_rgb
from operators.image.image_generator import ImageGenerator
from operators.image.image_prompts import PARAMETERS, combinations, expand_prompts
from operators.image.transform_images import encode_images
from operators.text.prompt_template import template_columns
from operators.text.tokenize_texts import tokenize_texts
from rayjobs.config.config_error import ConfigError
from rayjobs.config.image_outputs import (
    encode_options,
    report_images,
    thumbnail_columns,
)
from rayjobs.config.score_options import check_filters, scorer_io, scorer_options, wants_scores
from rayjobs.pipeline.cli import run_cli
from rayjobs.pipeline.job_run import RunResult, start_job
from rayjobs.pipeline.model_stage import ModelStage, named_stage
from rayjobs.pipeline.write_results import write_results
from rayjobs.report.contact_sheet import ContactSheet

RESULTS = ["prompt", "negative_prompt", "seed", "variation", *PARAMETERS]


def run(cfg: DictConfig) -> RunResult:
    options = prompt_options(cfg)  # checked before anything starts
    encoding = encode_options(cfg)
    scoring, scores = score_stage(cfg)
    checked = input_columns(cfg.prompt)
    models = {"model": (ImageGenerator.inputs, ("image_rgb", "image_shape"))}
    if scoring:
        models["scorer"] = scorer_io(scores)
    per_prompt = len(combinations(options["variations"], options["grid"])) * options["n"]
    job = start_job(
        cfg,
        models=models,
        tasks=("preprocess", "encode"),
        columns=checked,
        rows_per_input=per_prompt,
        webdataset=True,
    )
    if job.result:  # this exact job already finished in output.path
        return job.result

    rows = job.read(columns=[*dict.fromkeys(column for _, column in checked), *cfg.output.columns])
    prompts = rows.map_batches(expand_prompts, fn_kwargs=options, **job.task_args())
    images = job.feed(prompts).map_batches(ModelStage, **job.model_args())
    if scoring:  # its inputs made by CPU tasks, then its own actor pool
        inputs = score_inputs(images, cfg, job.task_args("encode"))
        images = job.feed(inputs, "scorer").map_batches(
            named_stage("scorer"), **job.model_args("scorer", options=scoring)
        )
    if cfg.filter:
        images = images.map_batches(
            filter_rows, fn_kwargs={"rules": list(cfg.filter)}, **job.task_args("encode")
        )
    files = images.map_batches(encode_images, fn_kwargs=encoding, **job.task_args("encode"))
    thumbnails = thumbnail_columns(encoding["thumbnails"])
    kept = [*RESULTS, *scores, *thumbnails]
    manifest = files.map_batches(write_results, **job.write_args(kept, error_columns=kept))
    return job.finish(
        manifest, report=ContactSheet(image=report_images(cfg, [*thumbnails, "path"]), text=["prompt"])
    )


def score_inputs(images, cfg: DictConfig, task_args: dict[str, Any]):
    """The scorer's pixels (and a classifier's) from the generated ones, and each row's text
    tokenized for it; the generated pixels stay for encoding."""
    scorer = {"model_path": cfg.scorer.path, "revision": cfg.scorer.get("revision")}
    images = images.map_batches(pixels_from_rgb, fn_kwargs=scorer, **task_args)
    if cfg.score.classifier:
        classifier = {"model_path": cfg.score.classifier, "revision": cfg.score.classifier_revision}
        own = {**classifier, "output_column": "classifier_pixels"}
        images = images.map_batches(pixels_from_rgb, fn_kwargs=own, **task_args)
    if cfg.score.text_column:
        tokens = {**scorer, "text_column": cfg.score.text_column, "keep_text": True}
        images = images.map_batches(tokenize_texts, fn_kwargs=tokens, **task_args)
    return images


def score_stage(cfg: DictConfig) -> tuple[dict[str, Any], tuple[str, ...]]:
    """(ImageScorer keyword arguments, its columns), empty when score.* asks for nothing; the
    filter rules checked against every column the rows will have."""
    taken = [*RESULTS, *cfg.output.columns]
    scoring, scores = scorer_options(cfg.score, taken) if wants_scores(cfg.score) else ({}, ())
    texts = ["prompt", "negative_prompt", "variation", *cfg.output.columns]
    if cfg.score.text_column and cfg.score.text_column not in texts:
        raise ConfigError(
            "score.text_column",
            f"must be a text the rows carry ({', '.join(texts)}), got {cfg.score.text_column!r}",
        )
    check_filters(cfg.filter, [*taken, *scores])
    return scoring, scores


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


def main() -> None:
    run_cli("generate_images")


if __name__ == "__main__":
    main()
