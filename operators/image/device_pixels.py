"""Encoded image bytes -> the model's normalised input, decoded and resized on the model's device.

`model.decode=device`: the CPU stage only reads and checks file headers
(`decode_images.read_image_data`); here baseline RGB/grey JPEGs go to nvJPEG in one batched
`torchvision.io.decode_jpeg(device="cuda")` call, everything else (PNG, WebP, CMYK or progressive
JPEG, a file nvJPEG refuses, any image on a CPU device or without torchvision) is decoded by PIL
in this process. Resize and crop then follow the checkpoint's PixelRecipe on the device:
bicubic (or bilinear) with antialiasing, the same output size and crop box, rounded to 8 bits
as PIL's resize is. Against the host path (PIL decode and resize) every pixel is within one
8-bit level, 0.17 on average (tests/operators/image/test_device_pixels.py).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from operators.image.decode_images import open_image
from operators.image.pixel_normalizer import PixelNormalizer
from operators.image.pixel_recipe import PixelRecipe, center_crop

if TYPE_CHECKING:
    import torch

MODES = {Image.Resampling.BILINEAR: "bilinear", Image.Resampling.BICUBIC: "bicubic"}  # PIL's -> torch's


class DevicePixels:
    """Callable: a list of encoded images -> N x 3 x H x W normalised tensor on `device`."""

    def __init__(
        self, folder: str, device: torch.device, dtype: torch.dtype, max_pixels: int = 178_956_970
    ) -> None:
        recipe = PixelRecipe.read(folder)
        if recipe is None:
            raise ValueError(
                "model.decode=device follows image processors that resize to a fixed size or by the "
                f"shortest edge with a bilinear or bicubic filter; {folder}/preprocessor_config.json "
                "asks for more: use model.decode=host"
            )
        self.recipe = recipe
        self.mode = MODES[recipe.resample]
        self.normalize = PixelNormalizer(folder, device, dtype)
        self.device = device
        self.max_pixels = max_pixels
        self.nvjpeg = device.type == "cuda" and _has_torchvision()

    def __call__(self, images: Sequence[bytes]) -> torch.Tensor:
        import torch

        decoded = self.decode(images)
        return self.normalize(torch.stack([self.resize_crop(image) for image in decoded]))

    def decode(self, images: Sequence[bytes]) -> list[torch.Tensor]:
        """3 x H x W uint8 tensors on the device, upright RGB, in input order."""
        out: list[Any] = [None] * len(images)
        batched = [i for i, data in enumerate(images) if self.nvjpeg and _baseline_jpeg(data)]
        if batched:
            for i, tensor in zip(batched, _nvjpeg([images[i] for i in batched], self.device), strict=True):
                out[i] = tensor
        for i, data in enumerate(images):
            if out[i] is None:  # PIL: every format, orientation and mode decode_images handles
                out[i] = self._pil(data)
        return out

    def _pil(self, data: bytes) -> torch.Tensor:
        import torch

        pixels = np.asarray(open_image(bytes(data), self.max_pixels), dtype=np.uint8)
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1).to(self.device, non_blocking=True)

    def resize_crop(self, image: torch.Tensor) -> torch.Tensor:
        """One 3 x H x W uint8 image -> 3 x h x w uint8, as the checkpoint's processor would."""
        import torch
        import torch.nn.functional as F

        height, width = image.shape[-2:]
        target = self.recipe.resized(height, width)
        if (height, width) != target:
            resized = F.interpolate(
                image[None].float(), size=target, mode=self.mode, antialias=True, align_corners=False
            )[0]
            image = resized.clamp_(0, 255).round_().to(torch.uint8)  # PIL resizes to 8 bits too
        return center_crop(image, self.recipe.crop) if self.recipe.crop else image


def _baseline_jpeg(data: bytes) -> bool:
    """A JPEG nvJPEG decodes as PIL would: baseline, RGB or grey, no EXIF rotation needed."""
    try:
        image = Image.open(io.BytesIO(data))
    except Exception:
        return False  # PIL will say why, as the row's reason
    if image.format != "JPEG" or image.mode not in ("RGB", "L") or image.info.get("progressive"):
        return False
    return image.getexif().get(0x0112, 1) == 1  # orientation tag: upright


def _nvjpeg(images: list[bytes], device: torch.device) -> list[Any]:
    """Batched GPU decode; None for each image nvJPEG refused (PIL decodes those)."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in images]
    try:
        return list(decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:  # one bad file fails the batched call: decode one by one
        out: list[Any] = []
        for data in encoded:
            try:
                out.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                out.append(None)
        return out


def _has_torchvision() -> bool:
    try:
        import torchvision.io  # noqa: F401
    except Exception:  # absent, or built for another torch
        return False
    return True
