"""uint8 pixels from the CPU stage -> the model's normalised input, on the model's device."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


class PixelNormalizer:
    """(x * rescale - mean) / std with the checkpoint's own image-processor constants."""

    def __init__(self, folder: str, device: torch.device, dtype: torch.dtype) -> None:
        import torch
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(folder)
        mean = np.asarray(processor.image_mean, dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(processor.image_std, dtype=np.float32).reshape(1, -1, 1, 1)
        rescale = float(getattr(processor, "rescale_factor", 1 / 255))
        # One multiply-add on the device instead of three passes on the host.
        self.scale = torch.from_numpy(rescale / std).to(device)
        self.shift = torch.from_numpy(-mean / std).to(device)
        self.device = device
        self.dtype = dtype

    def __call__(self, pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
        """N x 3 x H x W uint8 (host array, or a tensor already on the device) -> normalised
        tensor of the model's dtype on its device."""
        import torch

        tensor = pixels
        if isinstance(pixels, np.ndarray):
            tensor = torch.from_numpy(np.require(pixels, requirements=["C", "W"]))
            if self.device.type == "cuda":
                # torch's caching host allocator hands back the same pinned blocks batch after
                # batch; the copy runs on the calling thread's stream (operators.torch_device).
                tensor = tensor.pin_memory().to(self.device, non_blocking=True)
        return (tensor.float() * self.scale + self.shift).to(self.dtype)
