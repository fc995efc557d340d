"""Embed images: one vector per image, from a folder of files or a Parquet column of bytes.

    python -m rayjobs.embed_images input.path=photos/ output.path=out/photos

read shards (Ray tasks; file bytes fetched concurrently) -> decode, orient, resize and crop with
the model's image processor (CPU, inside each read task; bad images become error rows; with
model.decode=device the actor decodes instead, nvJPEG on a GPU) -> ImageEmbedder (actor
pool, one model per actor, on a GPU when the cluster has one) -> write Parquet: data/ (id,
embedding, output.columns), errors/ (id, stage, reason), then the run record and _SUCCESS.
"""

from __future__ import annotations

from omegaconf import DictConfig

from rayjobs.config.image_inputs import image_columns, image_decoder
from rayjobs.pipeline.cli import run_cli
from rayjobs.pipeline.job_run import RunResult, start_job
from rayjobs.pipeline.model_stage import ModelStage
from rayjobs.pipeline.write_results import write_results


def run(cfg: DictConfig) -> RunResult:
    read_columns, checked = image_columns(cfg)
    models = {"model": (("pixel_values",), ("embedding",))}  # model stage: (its inputs, what we need)
    job = start_job(cfg, models=models, columns=checked)
    if job.result:  # this exact job already finished in output.path
        return job.result

    rows = job.read(columns=read_columns)
    decode, options = image_decoder(cfg)  # model.decode=device: headers only, the actor decodes
    pixels = rows.map_batches(decode, fn_kwargs=options, **job.task_args())
    embedded = job.feed(pixels).map_batches(ModelStage, **job.model_args())
    manifest = embedded.map_batches(write_results, **job.write_args(["embedding"]))
    return job.finish(manifest)


def main() -> None:
    run_cli("embed_images")


if __name__ == "__main__":
    main()
