"""Edit images with models: remove the background (onto white, or cut out) and upscale, then
write them in the shop's format and sizes.

    python -m rayjobs.edit_images input.path=photos/ output.path=out/edited
    python -m rayjobs.edit_images input.path=photos/ output.path=out/cutouts 'edits=[remove_background]' \
        remove_background.output=rgba

read shards (Ray tasks) -> a small copy of each photo for the report (report.before) -> decode,
orient and bound the size (CPU, in the read task; bad images become error rows) -> each of
`edits` in order, each on its own actor pool: remove_background (BackgroundRemover: any semantic
segmentation checkpoint; the product centred on background_color, or RGBA), upscale
(ImageUpscaler: Swin2SR, tiled; only_below) -> filter rules (e.g. mask_coverage > 0.01) ->
encode (CPU: output.image_format, thumbnails.sizes) -> write: files/ (or tars/ with
output=webdataset), data/ (id, path, bytes, width, height, mask_coverage, upscale, thumbnails,
output.columns), filtered/, errors/, report.html (before / after), then the run record and
_SUCCESS.
"""

from __future__ import annotations

from omegaconf import DictConfig

from operators.filter_rows import filter_rows
from operators.image.decode_images import decode_rgb
from operators.image.transform_images import encode_images, make_thumbnails, thumbnail_column
from rayjobs.config.config_error import ConfigError
from rayjobs.config.image_inputs import image_columns, rgb_options
from rayjobs.config.image_outputs import encode_options, report_images, thumbnail_columns
from rayjobs.config.score_options import check_filters
from rayjobs.pipeline.cli import run_cli
from rayjobs.pipeline.job_run import RunResult, start_job
from rayjobs.pipeline.model_stage import ModelStage
from rayjobs.pipeline.write_results import write_results
from rayjobs.report.contact_sheet import ContactSheet

IMAGE = ("image_rgb", "image_shape")  # what every edit reads and writes back: edits chain
EDITS = {"remove_background": ("mask_coverage",), "upscale": ("upscale",)}  # edit -> its own columns


def run(cfg: DictConfig) -> RunResult:
    edits = edit_list(cfg)  # checked before anything starts
    encoding = {**encode_options(cfg), "dimensions": True}
    made = ["width", "height", *(column for edit in edits for column in EDITS[edit])]
    check_filters(cfg.filter, [*made, *cfg.output.columns])
    read_columns, checked = image_columns(cfg)
    models = {edit: (IMAGE, (*IMAGE, *EDITS[edit])) for edit in edits}
    job = start_job(cfg, models=models, tasks=("preprocess", "encode"), columns=checked, webdataset=True)
    if job.result:  # this exact job already finished in output.path
        return job.result

    rows = job.read(columns=read_columns)
    before = [thumbnail_column(cfg.report.before, "before")] if cfg.report.before else []
    if before:  # from the input bytes, before decoding drops them
        small = {"image_column": cfg.input.image_column or "image", "thumbnails": [cfg.report.before]}
        rows = rows.map_batches(make_thumbnails, fn_kwargs={**small, "prefix": "before"}, **job.task_args())
    images = rows.map_batches(decode_rgb, fn_kwargs=rgb_options(cfg), **job.task_args())
    for edit in edits:
        images = job.feed(images, edit).map_batches(ModelStage, **job.model_args(edit))
    cpu = job.task_args("encode")
    if cfg.filter:
        images = images.map_batches(filter_rows, fn_kwargs={"rules": list(cfg.filter)}, **cpu)
    files = images.map_batches(encode_images, fn_kwargs=encoding, **cpu)
    kept = [*made, *thumbnail_columns(encoding["thumbnails"]), *before]
    manifest = files.map_batches(write_results, **job.write_args(kept, error_columns=before))
    images_shown = report_images(cfg, [*thumbnail_columns(encoding["thumbnails"]), "path"])
    return job.finish(manifest, report=ContactSheet(image=images_shown, before=before))


def edit_list(cfg: DictConfig) -> list[str]:
    """`edits`, each known and once; a bad list is a ConfigError naming the key."""
    edits = list(cfg.edits or [])
    unknown = [edit for edit in edits if edit not in EDITS]
    if not edits or unknown:
        raise ConfigError("edits", f"must list some of {', '.join(EDITS)} in order, got {edits!r}")
    if len(set(edits)) != len(edits):
        raise ConfigError("edits", f"lists an edit twice: {edits!r}")
    return edits


def main() -> None:
    run_cli("edit_images")


if __name__ == "__main__":
    main()
