"""Caption images: one caption per image, from a folder of files or a Parquet column of bytes.

    python -m rayjobs.caption_images input.path=photos/ output.path=out/captions

read shards (Ray tasks) -> decode, orient, resize and crop with the model's image processor
(CPU, in the read task; bad images become error rows) [-> prompt.template filled from the row's
columns] -> ImageCaptioner (actor pool, one model
per actor, on a GPU when the cluster has one) -> write Parquet: data/ (id, caption,
generated_tokens, output.columns), errors/ (id, stage, reason), then the run record and _SUCCESS.
"""

from __future__ import annotations

from omegaconf import DictConfig

from operators.decode_images import decode_images
from operators.prompt_template import add_prompts, template_columns
from rayjobs.cli import run_cli
from rayjobs.image_inputs import decode_options, image_columns
from rayjobs.job_run import RunResult, start_job
from rayjobs.model_stage import ModelStage
from rayjobs.read_input import read_input
from rayjobs.write_results import write_results


def run(cfg: DictConfig) -> RunResult:
    read_columns, checked = image_columns(cfg)
    template = cfg.prompt.template  # a prompt per row from input columns (else model.prompt for all)
    needed = template_columns(template)
    results = ["caption", "generated_tokens", *(["prompt"] if template else [])]
    job = start_job(
        cfg,
        inputs=("pixel_values",),
        outputs=("caption", "generated_tokens"),
        columns=[*checked, *(("prompt.template", name) for name in needed)],
    )
    if job.result:  # this exact job already finished in output.path
        return job.result

    rows = read_input(job.plan, job.todo, cfg.input, columns=list(dict.fromkeys([*read_columns, *needed])))
    pixels = rows.map_batches(decode_images, fn_kwargs=decode_options(cfg), **job.task_args())
    if template:
        pixels = pixels.map_batches(add_prompts, fn_kwargs={"template": template}, **job.task_args())
    captioned = pixels.map_batches(ModelStage, **job.model_args())
    manifest = captioned.map_batches(write_results, **job.write_args(results))
    return job.finish(manifest)


def main() -> None:
    run_cli("caption_images")


if __name__ == "__main__":
    main()
