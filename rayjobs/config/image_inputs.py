"""What the image jobs share: which input columns they read, and how they call decode_images."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from operators.image.pixel_recipe import PixelRecipe
from rayjobs.config.config_error import ConfigError

DECODE_PLACES = ("host", "device")


def image_columns(cfg: DictConfig) -> tuple[list[str], list[tuple[str, str]]]:
    """(columns to read, columns to check exist) for a folder of files or a table of bytes."""
    place = _decode_place(cfg)
    if place not in DECODE_PLACES:
        raise ConfigError("model.decode", f"must be one of {', '.join(DECODE_PLACES)}, got {place!r}")
    if place == "device" and Path(str(cfg.model.path)).is_dir() and PixelRecipe.read(cfg.model.path) is None:
        raise ConfigError(  # a hub id or a URL is checked by the actor, once it has the files
            "model.decode",
            f"device needs an image processor that resizes to a fixed size or by the shortest edge "
            f"(CLIP, SigLIP, BLIP, ViT); {cfg.model.path} has another: use model.decode=host",
        )
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


def image_decoder(cfg: DictConfig) -> tuple[Callable, dict[str, Any]]:
    """The CPU stage ahead of an image model and its fn_kwargs: decode_images, or with
    model.decode=device read_image_data (headers only: the model's actor decodes)."""
    from operators.image.decode_images import decode_images, read_image_data

    options = decode_options(cfg)
    if _decode_place(cfg) == "device":
        wanted = ("image_column", "max_pixels", "keep_image")
        return read_image_data, {key: options[key] for key in wanted}
    return decode_images, options


def rgb_options(cfg: DictConfig) -> dict[str, Any]:
    """fn_kwargs of decode_rgb: whole images, bounded by preprocess.max_side, for chat VLMs."""
    image = cfg.input.image_column or "image"
    return {
        "image_column": image,
        "max_side": int(cfg.preprocess.max_side),
        "max_pixels": cfg.preprocess.max_pixels,
        "keep_image": image in list(cfg.output.columns),
    }


def _decode_place(cfg: DictConfig) -> str:
    return (cfg.get("model") or {}).get("decode", "host")
