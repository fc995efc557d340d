"""Caption images: one caption per image, from a folder of files or a Parquet column of bytes.

    python -m rayjobs.caption_images input.path=photos/ output.path=out/captions

read shards (Ray tasks) -> decode and orient (CPU, in the read task; bad images become error
rows), then either resize and crop with the model's image processor (image-to-text models:
BLIP, GIT, ViT + GPT-2) or only bound the size (chat VLMs such as SmolVLM / Qwen2-VL, whose own
processor tiles the image next to the model) [-> prompt.template filled from the row's columns]
-> ImageCaptioner / ChatCaptioner (actor pool, one model per actor, on a GPU when the cluster
has one; chat VLMs can be bound to prompt.json_schema / regex / choices) [-> json_columns: the
schema's properties as columns, e.g. SEO metadata] -> write Parquet: data/ (id, caption,
generated_tokens, output.columns), errors/ (id, stage, reason), then the run record and
_SUCCESS [and data.csv with output.csv=true].
"""

from __future__ import annotations

from hydra.utils import get_class
from omegaconf import DictConfig

from operators.image.decode_images import decode_images, decode_rgb
from operators.text.json_columns import json_columns
from operators.text.prompt_template import add_prompts, template_columns
from rayjobs.config.image_inputs import decode_options, image_columns, rgb_options
from rayjobs.config.output_constraint import caption_constraint
from rayjobs.io.csv_output import write_csv
from rayjobs.pipeline.cli import run_cli
from rayjobs.pipeline.job_run import RunResult, start_job
from rayjobs.pipeline.model_stage import ModelStage
from rayjobs.pipeline.write_results import write_results

PIXELS = ("pixel_values",)  # fixed-size tensors, resized and cropped in the CPU stage
WHOLE_IMAGES = ("image_rgb", "image_shape")  # decoded images for a chat VLM's own processor


def captioner_inputs(target: str) -> tuple[str, ...]:
    """What the CPU stage makes for this operator (anything else fails the config check)."""
    try:
        return WHOLE_IMAGES if tuple(get_class(target).inputs) == WHOLE_IMAGES else PIXELS
    except Exception:  # an unimportable _target_: check_operator names it
        return PIXELS


def run(cfg: DictConfig) -> RunResult:
    read_columns, checked = image_columns(cfg)
    inputs = captioner_inputs(str(cfg.model.get("_target_")))
    template = cfg.prompt.template  # a prompt per row from input columns (else model.prompt for all)
    needed = template_columns(template)
    results = ["caption", "generated_tokens", *(["prompt"] if template else [])]
    taken = ["id", *results, *cfg.output.columns]
    constraint, properties = caption_constraint(cfg, chat=inputs == WHOLE_IMAGES, taken=taken)
    job = start_job(
        cfg,
        models={"model": (inputs, ("caption", "generated_tokens"))},
        columns=[*checked, *(("prompt.template", name) for name in needed)],
    )
    if job.result:  # this exact job already finished in output.path
        return job.result

    rows = job.read(columns=list(dict.fromkeys([*read_columns, *needed])))
    if inputs == WHOLE_IMAGES:
        pixels = rows.map_batches(decode_rgb, fn_kwargs=rgb_options(cfg), **job.task_args())
    else:
        pixels = rows.map_batches(decode_images, fn_kwargs=decode_options(cfg), **job.task_args())
    if template:
        pixels = pixels.map_batches(add_prompts, fn_kwargs={"template": template}, **job.task_args())
    options = {"constraint": constraint} if constraint else None
    captioned = job.feed(pixels).map_batches(ModelStage, **job.model_args(options=options))
    if properties:
        fields = {"source": "caption", "columns": properties}
        captioned = captioned.map_batches(json_columns, fn_kwargs=fields, **job.task_args())
    manifest = captioned.map_batches(write_results, **job.write_args([*results, *properties]))
    result = job.finish(manifest)
    if cfg.output.get("csv"):
        write_csv(job.fs, job.root)
    return result


def main() -> None:
    run_cli("caption_images")


if __name__ == "__main__":
    main()
