"""How a checkpoint's image processor resizes and crops, read from its JSON config.

The common processors (CLIP, SigLIP, BLIP, ViT) only resize (to a fixed size, or the shortest
edge to N) with one PIL filter, then centre-crop. Read from the JSON, that needs neither
transformers nor torch, which cost each CPU worker several seconds to import before its first
image (9.1 s measured for AutoImageProcessor here, on a busy 2-core machine). Anything else
(legacy integer sizes, padding, tiling, other filters or keys) returns None and the caller uses
the checkpoint's own AutoImageProcessor. The host path is bit-exact with transformers' PIL
backend (tests/operators/image/test_pixel_recipe.py); DevicePixels runs the same recipe on
the model's device.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

PROCESSORS = ("CLIPImageProcessor", "SiglipImageProcessor", "BlipImageProcessor", "ViTImageProcessor")
# Keys that only describe what the recipe already does, or what the model actor does after it.
KNOWN_KEYS = {
    "image_processor_type",
    "processor_class",
    "feature_extractor_type",
    "do_convert_rgb",
    "do_resize",
    "size",
    "resample",
    "do_center_crop",
    "crop_size",
    "do_rescale",
    "rescale_factor",
    "do_normalize",
    "image_mean",
    "image_std",
}
RESAMPLE = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)  # the filters torch can match too


@dataclass(frozen=True)
class PixelRecipe:
    """Resize by `fixed` (height, width) or `shortest_edge`, with PIL filter `resample`, then
    centre-crop to `crop` (height, width) unless it is None."""

    resample: int
    fixed: tuple[int, int] | None = None
    shortest_edge: int | None = None
    crop: tuple[int, int] | None = None

    @classmethod
    def read(cls, folder: str | Path) -> PixelRecipe | None:
        """The recipe of a checkpoint folder, or None when it does more than a recipe says."""
        for name, key in (("preprocessor_config.json", None), ("processor_config.json", "image_processor")):
            try:
                config = json.loads((Path(folder) / name).read_text())
            except (OSError, ValueError):
                continue
            # transformers 5 saves a whole processor's image part inside processor_config.json.
            config = config.get(key) if key else config
            return cls.parse(config) if isinstance(config, dict) else None
        return None

    @classmethod
    def parse(cls, config: dict[str, Any]) -> PixelRecipe | None:
        kind = str(config.get("image_processor_type", "")).removesuffix("Fast").removesuffix("Pil")
        if kind not in PROCESSORS or set(config) - KNOWN_KEYS:
            return None
        resample, size = config.get("resample"), config.get("size")
        if resample not in RESAMPLE or not isinstance(size, dict) or not config.get("do_resize", False):
            return None
        if size.keys() == {"height", "width"}:
            recipe = cls(int(resample), fixed=(int(size["height"]), int(size["width"])))
        elif size.keys() == {"shortest_edge"}:
            recipe = cls(int(resample), shortest_edge=int(size["shortest_edge"]))
        else:
            return None
        if not config.get("do_center_crop", False):
            return recipe
        crop = config.get("crop_size")
        if not isinstance(crop, dict) or crop.keys() != {"height", "width"}:
            return None
        return replace(recipe, crop=(int(crop["height"]), int(crop["width"])))

    def resized(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) after the resize, as transformers computes it (truncating)."""
        if self.fixed:
            return self.fixed
        edge = self.shortest_edge or 0
        short, long = min(height, width), max(height, width)
        new_long = int(edge * long / short)
        return (new_long, edge) if width <= height else (edge, new_long)

    def output_shape(self) -> tuple[int, int, int] | None:
        """(3, H, W) of every output, when the recipe fixes it (a crop or a fixed size)."""
        size = self.crop or self.fixed
        return (3, *size) if size else None

    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        """RGB PIL images -> N x 3 x H x W uint8, as the checkpoint's processor makes them."""
        return np.stack([self.one(image) for image in images])

    def one(self, image: Image.Image) -> np.ndarray:
        height, width = self.resized(image.height, image.width)
        if (height, width) != (image.height, image.width):
            image = image.resize((width, height), resample=Image.Resampling(self.resample))
        pixels = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)
        return center_crop(pixels, self.crop) if self.crop else pixels


def center_crop(pixels, crop: tuple[int, int]):
    """`pixels` (numpy array or torch tensor, ... x H x W) cut to `crop` around the centre, as
    transformers does: top/left rounded down, zero padding (rounded up at the top/left) where
    the image is smaller than the crop."""
    height, width = pixels.shape[-2:]
    want_h, want_w = crop
    top, left = (height - want_h) // 2, (width - want_w) // 2
    if top >= 0 and left >= 0:
        return pixels[..., top : top + want_h, left : left + want_w]
    new_h, new_w = max(want_h, height), max(want_w, width)
    pad_top, pad_left = math.ceil((new_h - height) / 2), math.ceil((new_w - width) / 2)
    shape = (*pixels.shape[:-2], new_h, new_w)
    torch_tensor = hasattr(pixels, "new_zeros")
    padded = pixels.new_zeros(shape) if torch_tensor else np.zeros(shape, dtype=pixels.dtype)
    padded[..., pad_top : pad_top + height, pad_left : pad_left + width] = pixels
    top, left = max(top + pad_top, 0), max(left + pad_left, 0)
    return padded[..., top : top + want_h, left : left + want_w]
