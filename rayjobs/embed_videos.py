"""Embed videos: one vector per sampled frame (every 1/fps seconds, or one per scene), each
addressed by its video and time, for search down to the second.

    python -m rayjobs.embed_videos input.path=videos/ output.path=out/videos video.fps=1

plan: list the videos, read each header for its duration, cut them into input.split_seconds
ranges (the unit of work and resume) -> decode each range with PyAV, sample frames, turn them
upright, resize and crop with the model's image processor (CPU tasks; a video that cannot be
decoded becomes an error row) -> ImageEmbedder (actor pool, one model per actor, on a GPU when
the cluster has one) -> write Parquet: data/ (id `<video>@<t_start>`, video, t_start, t_end,
frame, index, width, height, embedding; with video.clip_seconds one row per window, the mean of
its frames' vectors, and frame_count), errors/ (id, stage, reason, video), the record, _SUCCESS.
"""

from __future__ import annotations

from omegaconf import DictConfig

from operators.video.sample_frames import FRAME_COLUMNS, sample_frames
from rayjobs.config.video_options import sampling_options
from rayjobs.pipeline.cli import run_cli
from rayjobs.pipeline.job_run import RunResult, start_job
from rayjobs.pipeline.model_stage import ModelStage
from rayjobs.pipeline.write_results import write_results

RESULTS = [*FRAME_COLUMNS, "index", "embedding"]


def run(cfg: DictConfig) -> RunResult:
    sampling = sampling_options(cfg)
    job = start_job(cfg, models={"model": (("pixel_values",), ("embedding",))})
    if job.result:  # this exact job already finished in output.path
        return job.result

    ranges = job.read(columns=[])
    options = {**sampling, "model_path": cfg.model.path, "revision": cfg.model.get("revision")}
    frames = ranges.map_batches(sample_frames, fn_kwargs=options, **job.task_args())
    embedded = job.feed(frames).map_batches(ModelStage, **job.model_args())
    results = [*RESULTS, *(["frame_count"] if sampling["clip_seconds"] else [])]
    manifest = embedded.map_batches(write_results, **job.write_args(results, error_columns=["video"]))
    return job.finish(manifest)


def main() -> None:
    run_cli("embed_videos")


if __name__ == "__main__":
    main()
