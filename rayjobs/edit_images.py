"""Edit images with models: remove the background (onto white, or cut out) and upscale, then
write them in the shop's format and sizes.

    python -m rayjobs.edit_images input.path=photos/ output.path=out/edited
    python -m rayjobs.edit_images input.path=photos/ output.path=out/cutouts 'edits=[remove_background]' \
        remove_background.output=rgba

read shards (Ray tasks) -> a small copy of each photo for the report (report.before) -> decode,
orient and bound the size (CPU, in the read task; bad images become error rows) -> each of
`edits` in order, each on its own actor pool: remove_background (BackgroundRemover: a semantic
or mask-classification segmentation checkpoint, or a matting one; the product centred on
background_color, or RGBA), upscale (ImageUpscaler: Swin2SR or a diffusers x4 upscaler,
tiled; only_below), describe (ChatCaptioner: a chat VLM, per prompt.template, bound to
prompt.json_schema; its properties become columns: SEO metadata) -> filter rules (e.g.
mask_coverage > 0.01) ->
encode (CPU: output.image_format, thumbnails.sizes) -> write: files/ (or tars/ with
output=webdataset), data/ (id, path, bytes, width, height, format, mask_coverage, upscale, thumbnails,
caption and the schema's columns, output.columns), filtered/, errors/, report.html (before /
after), then the run record and _SUCCESS [and data.csv with output.csv=true].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from omegaconf import DictConfig

from operators.filter_rows import filter_rows
from operators.image.decode_images import decode_rgb
from operators.image.transform_images import encode_images, make_thumbnails, thumbnail_column
from operators.text.json_columns import json_columns
from operators.text.prompt_template import add_prompts, template_columns
from rayjobs.config.config_error import ConfigError
from rayjobs.config.image_inputs import image_columns, rgb_options
from rayjobs.config.image_outputs import encode_options, report_images, thumbnail_columns
from rayjobs.config.output_constraint import caption_constraint
from rayjobs.config.score_options import check_filters
from rayjobs.io.csv_output import write_csv
from rayjobs.pipeline.cli import run_cli
from rayjobs.pipeline.job_run import RunResult, start_job
from rayjobs.pipeline.model_stage import named_stage
from rayjobs.pipeline.write_results import write_results
from rayjobs.report.contact_sheet import ContactSheet

IMAGE = ("image_rgb", "image_shape")  # what every edit reads and writes back: edits chain
CAPTION = ("caption", "generated_tokens")
# stage -> the columns it adds; describe: a chat VLM's caption of the edited photo (SEO metadata)
EDITS = {"remove_background": ("mask_coverage",), "upscale": ("upscale",), "describe": CAPTION}


def run(cfg: DictConfig) -> RunResult:
    edits = edit_list(cfg)  # checked before anything starts
    encoding = {**encode_options(cfg), "dimensions": True}
    made = ["width", "height", "format", *(column for edit in edits for column in EDITS[edit])]
    describe = describe_stage(cfg, edits, taken=["id", "path", "bytes", *made, *cfg.output.columns])
    made += describe.columns
    check_filters(cfg.filter, [*made, *cfg.output.columns])
    read_columns, checked = image_columns(cfg)
    needed = template_columns(describe.template)
    checked += [("prompt.template", name) for name in needed]
    models = {edit: (IMAGE, CAPTION if edit == "describe" else (*IMAGE, *EDITS[edit])) for edit in edits}
    job = start_job(cfg, models=models, tasks=("preprocess", "encode"), columns=checked, webdataset=True)
    if job.result:  # this exact job already finished in output.path
        return job.result

    rows = job.read(columns=list(dict.fromkeys([*read_columns, *needed])))
    before = [thumbnail_column(cfg.report.before, "before")] if cfg.report.before else []
    if before:  # from the input bytes, before decoding drops them
        small = {"image_column": cfg.input.image_column or "image", "thumbnails": [cfg.report.before]}
        rows = rows.map_batches(make_thumbnails, fn_kwargs={**small, "prefix": "before"}, **job.task_args())
    images = rows.map_batches(decode_rgb, fn_kwargs=rgb_options(cfg), **job.task_args())
    if describe.template:
        prompts = {"template": describe.template}
        images = images.map_batches(add_prompts, fn_kwargs=prompts, **job.task_args())
    for edit in edits:
        options = describe.options if edit == "describe" else None
        stage = named_stage(edit)
        images = job.feed(images, edit).map_batches(stage, **job.model_args(edit, options=options))
    cpu = job.task_args("encode")
    if describe.properties:  # the schema's properties as columns: title, alt_text, tags ...
        fields = {"source": "caption", "columns": describe.properties}
        images = images.map_batches(json_columns, fn_kwargs=fields, **cpu)
    if cfg.filter:
        images = images.map_batches(filter_rows, fn_kwargs={"rules": list(cfg.filter)}, **cpu)
    files = images.map_batches(encode_images, fn_kwargs=encoding, **cpu)
    kept = [*made, *thumbnail_columns(encoding["thumbnails"]), *before]
    manifest = files.map_batches(write_results, **job.write_args(kept, error_columns=before))
    images_shown = report_images(cfg, [*thumbnail_columns(encoding["thumbnails"]), "path"])
    text = [name for name in ("title", "caption") if name in made]
    result = job.finish(manifest, report=ContactSheet(image=images_shown, before=before, text=text[:1]))
    if cfg.output.get("csv"):
        write_csv(job.fs, job.root)
    return result


@dataclass(frozen=True)
class Describe:
    """The describe stage's settings; empty when `edits` leaves it out."""

    options: dict[str, Any] | None = None  # ChatCaptioner keyword arguments the job derives
    properties: dict[str, pa.DataType] = field(default_factory=dict)  # a JSON schema's columns
    template: str | None = None  # prompt.template: a prompt per photo from its columns

    @property
    def columns(self) -> list[str]:
        return [*self.properties, *(["prompt"] if self.template else [])]


def describe_stage(cfg: DictConfig, edits: list[str], taken: list[str]) -> Describe:
    """prompt.* checked (a constraint llguidance compiles, properties that overwrite no column)."""
    if "describe" not in edits:
        return Describe()
    constraint, properties = caption_constraint(cfg, chat=True, taken=taken, stage="describe")
    options = {"constraint": constraint, "keep_images": True}  # the photo goes on to be encoded
    return Describe(options, properties, cfg.prompt.template)


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
