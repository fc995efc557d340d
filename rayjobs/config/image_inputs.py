"""What the image jobs share: which input columns they read, and how they call decode_images."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig


def image_columns(cfg: DictConfig) -> tuple[list[str], list[tuple[str, str]]]:
    """(columns to read, columns to check exist) for a folder of files or a table of bytes."""
    image = cfg.input.image_column or "image"
    keep = list(cfg.output.columns)
    if cfg.input.format == "parquet":
        return [image, *keep], [("input.image_column", image)]
    return keep, []


def decode_options(cfg: DictConfig) -> dict[str, Any]:
    """fn_kwargs of decode_images for this job's model and preprocess settings."""
    image = cfg.input.image_column or "image"
    return {
        "model_path": cfg.model.path,
        "revision": cfg.model.get("revision"),
        "image_column": image,
        "max_pixels": cfg.preprocess.max_pixels,
        "keep_image": image in list(cfg.output.columns),
        "jpeg_draft": cfg.preprocess.jpeg_draft,
    }


def rgb_options(cfg: DictConfig) -> dict[str, Any]:
    """fn_kwargs of decode_rgb: whole images, bounded by preprocess.max_side, for chat VLMs."""
    image = cfg.input.image_column or "image"
    return {
        "image_column": image,
        "max_side": int(cfg.preprocess.max_side),
        "max_pixels": cfg.preprocess.max_pixels,
        "keep_image": image in list(cfg.output.columns),
    }
