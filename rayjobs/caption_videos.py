"""Caption videos: one caption per scene (or per sampled frame), each addressed by its video and
time, so a video library gets text to search next to its embeddings.

    python -m rayjobs.caption_videos input.path=videos/ output.path=out/video_captions

plan: list the videos, read each header for its duration, cut them into input.split_seconds
ranges (the unit of work and resume) -> decode each range with PyAV, sample one frame per scene
(video.scenes, the default) or every 1/fps seconds, turn them upright, then either resize and
crop with the model's image processor (image-to-text models: BLIP, GIT, ViT + GPT-2) or only
bound the size by preprocess.max_side (chat VLMs such as SmolVLM / Qwen2-VL, whose own processor
tiles the frame next to the model) (CPU tasks; a video that cannot be decoded becomes an error
row) -> ImageCaptioner / ChatCaptioner (actor pool, one model per actor, on a GPU when the
cluster has one) -> write Parquet: data/ (id `<video>@<t_start>`, video, t_start, t_end, frame,
index, width, height, caption, generated_tokens), errors/ (id, stage, reason, video), the record
and _SUCCESS.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from operators.video.sample_frames import FRAME_COLUMNS, sample_frames
from rayjobs.caption_images import WHOLE_IMAGES, captioner_inputs
from rayjobs.config.config_error import ConfigError
from rayjobs.config.video_options import sampling_options
from rayjobs.pipeline.cli import run_cli
from rayjobs.pipeline.job_run import RunResult, start_job
from rayjobs.pipeline.model_stage import ModelStage
from rayjobs.pipeline.write_results import write_results

CAPTIONS = ("caption", "generated_tokens")
RESULTS = [*FRAME_COLUMNS, "index", *CAPTIONS]


def frame_options(cfg: DictConfig, inputs: tuple[str, ...]) -> dict[str, Any]:
    """fn_kwargs of sample_frames: the model's processor sizes the frames (pixel_values), or with
    no model_path they stay whole, bounded by preprocess.max_side (image_rgb, image_shape)."""
    if cfg.video.get("clip_seconds"):  # windows of frames feed embed_videos' mean, not a captioner
        raise ConfigError("video.clip_seconds", "is embed_videos' only: a caption is of one frame")
    options = sampling_options(cfg)
    if inputs == WHOLE_IMAGES:  # a chat VLM's processor tiles the frame itself, in the actor
        return {**options, "model_path": None, "max_side": int(cfg.preprocess.max_side)}
    return {**options, "model_path": cfg.model.path, "revision": cfg.model.get("revision")}


def run(cfg: DictConfig) -> RunResult:
    inputs = captioner_inputs(str(cfg.model.get("_target_")))
    options = frame_options(cfg, inputs)
    job = start_job(cfg, models={"model": (inputs, CAPTIONS)})
    if job.result:  # this exact job already finished in output.path
        return job.result

    ranges = job.read(columns=[])
    frames = ranges.map_batches(sample_frames, fn_kwargs=options, **job.task_args())
    captioned = job.feed(frames).map_batches(ModelStage, **job.model_args())
    manifest = captioned.map_batches(write_results, **job.write_args(RESULTS, error_columns=["video"]))
    return job.finish(manifest)


def main() -> None:
    run_cli("caption_videos")


if __name__ == "__main__":
    main()
