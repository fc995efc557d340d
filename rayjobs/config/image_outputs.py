"""What the image-making jobs share: output formats, qualities and thumbnails, checked before Ray."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from operators.image.transform_images import FORMATS, Size, thumbnail_column
from rayjobs.config.config_error import ConfigError


def image_format(key: str, value: Any) -> str:
    if value not in FORMATS:
        raise ConfigError(key, f"must be one of {', '.join(FORMATS)}, got {value!r}")
    return str(value)


def image_quality(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise ConfigError(key, f"must be an integer from 1 to 100, got {value!r}")
    return int(value)


def writes_tars(cfg: DictConfig) -> bool:
    """output=webdataset: kept rows' images go into tars, not files/ (so no `path` is an image)."""
    return cfg.output.get("format") == "webdataset"


def report_images(cfg: DictConfig, columns: list[str]) -> list[str]:
    """The image columns report.html links to: `columns`, less `path` when it names a tar."""
    return [name for name in columns if not (name == "path" and writes_tars(cfg))]


def thumbnail_options(cfg: DictConfig) -> dict[str, Any]:
    """thumbnails.* as keyword arguments (thumbnails, thumbnail_format, thumbnail_quality)."""
    node = cfg.get("thumbnails") or {}
    sizes = list(node.get("sizes") or [])
    for size in sizes:
        try:
            Size.parse(size)
        except ValueError as error:
            raise ConfigError("thumbnails.sizes", str(error)) from None
    return {
        "thumbnails": sizes,
        "thumbnail_format": image_format("thumbnails.format", node.get("format", "jpeg")),
        "thumbnail_quality": image_quality("thumbnails.quality", node.get("quality", 85)),
    }


def thumbnail_columns(sizes: list[int | str]) -> list[str]:
    """The data/ columns (and folders) of the thumbnails."""
    return [thumbnail_column(size) for size in sizes]


def encode_options(cfg: DictConfig) -> dict[str, Any]:
    """fn_kwargs of encode_images: output.image_format / quality, and thumbnails.*."""
    return {
        "format": image_format("output.image_format", cfg.output.get("image_format", "png")),
        "quality": image_quality("output.quality", cfg.output.get("quality", 95)),
        **thumbnail_options(cfg),
    }
