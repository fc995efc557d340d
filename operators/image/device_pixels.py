"""Encoded image bytes -> the model's normalised input, decoded and resized on the model's device.

`model.decode=device`: the CPU stage only reads and checks file headers
(`decode_images.read_image_data`); here baseline RGB/grey JPEGs go to nvJPEG in one batched
`torchvision.io.decode_jpeg(device="cuda")` call, everything else (PNG, WebP, CMYK or progressive
JPEG, a file nvJPEG refuses, any image on a CPU device or without torchvision) is decoded by PIL
in this process. Resize and crop then follow the checkpoint's image processor on the device:
bicubic (or bilinear) with antialiasing, the same output size and crop box, rounded to 8 bits
as PIL's resize is. Against the host path (PIL decode and resize) every pixel is within one
8-bit level, 0.17 on average (tests/operators/image/test_device_pixels.py).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from operators.image.decode_images import open_image
from operators.image.pixel_normalizer import PixelNormalizer

if TYPE_CHECKING:
    import torch

# Resampling that torch.nn.functional.interpolate does as PIL does, by PIL's codes.
MODES = {2: "bilinear", 3: "bicubic"}


class DevicePixels:
    """Callable: a list of encoded images -> N x 3 x H x W normalised tensor on `device`."""

    def __init__(
        self, folder: str, device: torch.device, dtype: torch.dtype, max_pixels: int = 178_956_970
    ) -> None:
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(folder)
        self.size = _size(processor)
        self.crop = _crop(processor)
        self.mode = _mode(getattr(processor, "resample", 3), type(processor).__name__)
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
        target = self.size(height, width)
        if (height, width) != target:
            resized = F.interpolate(
                image[None].float(), size=target, mode=self.mode, antialias=True, align_corners=False
            )[0]
            image = resized.clamp_(0, 255).round_().to(torch.uint8)  # PIL resizes to 8 bits too
        return _center_crop(image, self.crop) if self.crop else image


def _mode(resample, processor: str) -> str:
    """interpolate's mode for a PIL code, PIL enum or torchvision InterpolationMode."""
    name = str(getattr(resample, "name", "")).lower()
    mode = name if name in MODES.values() else MODES.get(resample if isinstance(resample, int) else -1)
    if mode is None:
        raise ValueError(
            f"model.decode=device resizes bilinear or bicubic; {processor} resamples with "
            f"{resample!r}: use model.decode=host"
        )
    return mode


def _size(processor):
    """(height, width) -> resized (height, width), by the processor's `size`."""
    size = dict(processor.size or {})
    if size.get("height") and size.get("width"):
        fixed = (int(size["height"]), int(size["width"]))
        return lambda height, width: fixed
    if size.get("shortest_edge") and not size.get("longest_edge"):
        edge = int(size["shortest_edge"])

        def shortest(height: int, width: int) -> tuple[int, int]:
            short, long = min(height, width), max(height, width)
            new_long = int(edge * long / short)  # transformers truncates too
            return (new_long, edge) if width <= height else (edge, new_long)

        return shortest
    raise ValueError(
        f"model.decode=device knows resizes to height/width or shortest_edge; "
        f"{type(processor).__name__} has size={size}: use model.decode=host"
    )


def _crop(processor) -> tuple[int, int] | None:
    if not getattr(processor, "do_center_crop", False):
        return None
    crop = dict(processor.crop_size or {})
    return int(crop["height"]), int(crop["width"])


def _center_crop(image: torch.Tensor, crop: tuple[int, int]) -> torch.Tensor:
    """The processor's crop box: top/left truncated, zero padding where the image is smaller."""
    import torch.nn.functional as F

    height, width = image.shape[-2:]
    want_h, want_w = crop
    if want_h > height or want_w > width:
        pad_h, pad_w = max(want_h - height, 0), max(want_w - width, 0)
        image = F.pad(image, (pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2))
        height, width = image.shape[-2:]
    top, left = math.floor((height - want_h) / 2), math.floor((width - want_w) / 2)
    return image[:, top : top + want_h, left : left + want_w]


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
