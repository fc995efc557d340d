"""What the video jobs share: `video.*` (how frames are sampled), checked before Ray starts."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from rayjobs.config.config_error import ConfigError


def sampling_options(cfg: DictConfig) -> dict[str, Any]:
    """fn_kwargs of sample_frames for video.fps / scenes / scene_threshold / max_frames."""
    video = cfg.video
    scenes = video.get("scenes", False)
    if not isinstance(scenes, bool):
        raise ConfigError("video.scenes", f"must be true or false, got {scenes!r}")
    fps = video.get("fps", 1.0)
    if not scenes and (isinstance(fps, bool) or not isinstance(fps, int | float) or not 0 < fps <= 240):
        raise ConfigError("video.fps", f"must be a number of frames per second in (0, 240], got {fps!r}")
    threshold = video.get("scene_threshold", 0.1)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold < 1:
        raise ConfigError("video.scene_threshold", f"must be between 0 and 1 (exclusive), got {threshold!r}")
    limit = video.get("max_frames", 10_000)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError("video.max_frames", f"must be a positive integer, got {limit!r}")
    if cfg.input.format != "videos":
        raise ConfigError("input.format", f"must be videos for this job, got {cfg.input.format!r}")
    return {
        "fps": None if scenes else float(fps),
        "scenes": scenes,
        "scene_threshold": float(threshold),
        "max_frames": limit,
        "storage_options": dict(cfg.input.get("storage_options") or {}),
    }
