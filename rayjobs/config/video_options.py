"""What the video jobs share: `video.*` (how frames are sampled), checked before Ray starts."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from rayjobs.config.config_error import ConfigError


def sampling_options(cfg: DictConfig) -> dict[str, Any]:
    """fn_kwargs of sample_frames for video.fps / scenes / scene_threshold / max_frames /
    clip_seconds; a bad value is a ConfigError naming its key."""
    video = cfg.video
    if cfg.input.format != "videos":
        raise ConfigError("input.format", f"must be videos for this job, got {cfg.input.format!r}")
    if (cfg.get("model") or {}).get("decode", "host") != "host":
        raise ConfigError("model.decode", "must be host for videos: frames are decoded by the CPU stage")
    scenes = video.get("scenes", False)
    if not isinstance(scenes, bool):
        raise ConfigError("video.scenes", f"must be true or false, got {scenes!r}")
    fps = video.get("fps", 1.0)
    if not scenes and (not _number(fps) or not 0 < fps <= 240):
        raise ConfigError("video.fps", f"must be a number of frames per second in (0, 240], got {fps!r}")
    threshold = video.get("scene_threshold", 0.1)
    if not _number(threshold) or not 0 < threshold < 1:
        raise ConfigError("video.scene_threshold", f"must be between 0 and 1 (exclusive), got {threshold!r}")
    limit = video.get("max_frames", 10_000)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError("video.max_frames", f"must be a positive integer, got {limit!r}")
    split = float(cfg.input.get("split_seconds", 300))
    if not scenes and fps * split > limit:  # sample_fps stops at the limit: rows would be dropped
        raise ConfigError(
            "input.split_seconds",
            f"{split:g} s at video.fps={fps:g} is {fps * split:g} samples a range, over "
            f"video.max_frames={limit}: lower input.split_seconds (or raise video.max_frames)",
        )
    return {
        "fps": None if scenes else float(fps),
        "scenes": scenes,
        "scene_threshold": float(threshold),
        "max_frames": limit,
        "clip_seconds": _clip_seconds(cfg, scenes),
        "storage_options": dict(cfg.input.get("storage_options") or {}),
    }


def _clip_seconds(cfg: DictConfig, scenes: bool) -> float | None:
    """video.clip_seconds: windows whose frames' vectors are averaged; ranges must hold whole ones."""
    clip = cfg.video.get("clip_seconds")
    if clip is None:
        return None
    if not _number(clip) or clip <= 0:
        raise ConfigError("video.clip_seconds", f"must be a positive number of seconds or null, got {clip!r}")
    if scenes:
        raise ConfigError("video.clip_seconds", "averages the fps samples of windows: not with video.scenes")
    split = float(cfg.input.get("split_seconds", 300))
    if abs(split / clip - round(split / clip)) > 1e-9:
        raise ConfigError(
            "input.split_seconds",
            f"must be a multiple of video.clip_seconds={clip:g} (a window never spans two ranges)",
        )
    return float(clip)


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)
