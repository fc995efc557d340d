"""Score images: CLIP score against a text, zero-shot labels, an aesthetic head and an image
classifier per image, then filter by rules.

    python -m rayjobs.score_images input.path=images/ output.path=out/scores \
        score.text="a photo of a red shoe" 'score.labels=[photo,drawing]' 'filter=["clip_score >= 25"]'

read shards (Ray tasks) -> thumbnails of each image (thumbnails.sizes); with score.classifier,
its own pixels; decode, orient, resize and crop with the scorer's image processor; with
score.text_column, tokenize each row's text (CPU, in the read task) -> ImageScorer (actor pool:
one CLIP / SigLIP model, and the classifier, per actor, on a GPU when the cluster has one) ->
filter rows by the rules (CPU) -> with output=webdataset, each kept image as it came into tars/
(<key>.<ext> + <key>.json) -> write Parquet: data/ (id, clip_score, clip_cosine,
label_probs, top_label, aesthetic, a column per classifier label, thumbnail paths,
output.columns), filtered/ (id, stage, reason: the rule with the value, and the scores),
thumbnail_<size>/, errors/, report.html, then the run record and _SUCCESS.
"""

from __future__ import annotations

from omegaconf import DictConfig

from operators.filter_rows import filter_rows
from operators.image.decode_images import decode_images
from operators.image.source_files import source_files
from operators.image.transform_images import make_thumbnails
from operators.text.tokenize_texts import tokenize_texts
from rayjobs.config.image_inputs import decode_options, image_columns
from rayjobs.config.image_outputs import thumbnail_columns, thumbnail_options, writes_tars
from rayjobs.config.score_options import check_filters, scorer_io, scorer_options
from rayjobs.pipeline.cli import run_cli
from rayjobs.pipeline.job_run import RunResult, start_job
from rayjobs.pipeline.model_stage import ModelStage
from rayjobs.pipeline.write_results import write_results
from rayjobs.report.contact_sheet import ContactSheet


def run(cfg: DictConfig) -> RunResult:
    options, outputs = scorer_options(cfg.score, taken=["id", *cfg.output.columns])  # checked before Ray
    thumbs = thumbnail_options(cfg)
    text_column = cfg.score.text_column
    kept = list(cfg.output.columns)
    check_filters(cfg.filter, [*outputs, *kept])
    read_columns, checked = image_columns(cfg)
    if text_column:
        read_columns += [text_column] if text_column not in read_columns else []
        checked += [("score.text_column", text_column)]
    job = start_job(cfg, models={"model": scorer_io(outputs)}, columns=checked, webdataset=True)
    if job.result:  # this exact job already finished in output.path
        return job.result

    rows = job.read(columns=read_columns)
    if thumbs["thumbnails"]:  # from the input bytes, before decoding drops them
        image = {"image_column": cfg.input.image_column or "image", "max_pixels": cfg.preprocess.max_pixels}
        rows = rows.map_batches(make_thumbnails, fn_kwargs={**image, **thumbs}, **job.task_args())
    if cfg.score.classifier:  # its own pixels, from its own processor
        classifier = {"model_path": cfg.score.classifier, "revision": cfg.score.classifier_revision}
        own = {**decode_options(cfg), **classifier, "keep_image": True, "output_column": "classifier_pixels"}
        rows = rows.map_batches(decode_images, fn_kwargs=own, **job.task_args())
    decode = decode_options(cfg)
    image = decode["image_column"]
    tars = writes_tars(cfg)  # the kept images go into tars as they came: keep their bytes
    pixels = rows.map_batches(
        decode_images, fn_kwargs={**decode, "keep_image": decode["keep_image"] or tars}, **job.task_args()
    )
    if text_column:  # the row's own text to score against (e.g. the prompt it was made from)
        tokens = {"model_path": cfg.model.path, "text_column": text_column, "keep_text": text_column in kept}
        pixels = pixels.map_batches(tokenize_texts, fn_kwargs=tokens, **job.task_args())
    scored = job.feed(pixels).map_batches(ModelStage, **job.model_args(options=options))
    if cfg.filter:
        scored = scored.map_batches(filter_rows, fn_kwargs={"rules": list(cfg.filter)}, **job.task_args())
    if tars:
        source = {"image_column": image, "keep_image": image in kept}
        scored = scored.map_batches(source_files, fn_kwargs=source, **job.task_args())
    kept_columns = [*outputs, *thumbnail_columns(thumbs["thumbnails"])]
    manifest = scored.map_batches(write_results, **job.write_args(kept_columns, error_columns=kept_columns))
    text = [text_column] if text_column in kept else []
    return job.finish(manifest, report=ContactSheet(image=thumbnail_columns(thumbs["thumbnails"]), text=text))


def main() -> None:
    run_cli("score_images")


if __name__ == "__main__":
    main()
