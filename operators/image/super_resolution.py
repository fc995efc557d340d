"""The models ImageUpscaler runs on its tiles: N x 3 x h x w uint8 in, N x 3 x (scale h) x
(scale w) float32 in [0, 1] (unclamped) out. Swin2SR (transformers) or a diffusers upscaling
pipeline (Stable Diffusion x4); ImageUpscaler tiles, blends and keeps alpha for either."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from operators.load_pretrained import load_pretrained, trust_flag

if TYPE_CHECKING:
    import torch

UPSCALE_PIPELINES = ("StableDiffusionUpscalePipeline",)  # model_index.json's _class_name


class SuperResolution(Protocol):
    scale: int  # output px per input px, on each axis
    device: torch.device

    def __call__(self, tiles: torch.Tensor) -> torch.Tensor: ...


def load_super_resolution(folder: str, diffusion: dict[str, Any], **load: Any) -> SuperResolution:
    """Swin2SR for a transformers checkpoint, DiffusionUpscale for a diffusers pipeline (a folder
    with model_index.json). `diffusion`: DiffusionUpscale's settings, refused for Swin2SR."""
    if (Path(folder) / "model_index.json").exists():
        return DiffusionUpscale(folder, **diffusion, **load)
    if diffusion:
        raise ValueError(
            f"{', '.join(diffusion)}: settings of diffusers upscalers, and {folder} is a Swin2SR"
        )
    return Swin2SR(folder, **load)


class Swin2SR:
    """transformers' AutoModelForImageToImage (Swin2SR), fed as its Swin2SRImageProcessor feeds
    it: scaled to [0, 1] and mirrored (symmetric padding) at the bottom and right up to the next
    multiple of its `size_divisor`, a whole extra block when already a multiple; the output cut
    back to scale x the unpadded size."""

    def __init__(self, folder: str, *, device: str, dtype: str, trust_remote_code: bool) -> None:
        from transformers import AutoImageProcessor, AutoModelForImageToImage

        loaded = load_pretrained(
            AutoModelForImageToImage, folder, device=device, dtype=dtype, trust_remote_code=trust_remote_code
        )
        self.model, self.device, self.dtype = loaded.model, loaded.device, loaded.dtype
        factor = getattr(self.model.config, "upscale", None)
        if not isinstance(factor, int) or factor < 1:
            raise ValueError(f"{folder}: its config has no upscale factor (not a super-resolution model)")
        self.scale = factor
        try:
            processor = AutoImageProcessor.from_pretrained(
                folder, trust_remote_code=trust_flag(trust_remote_code)
            )
        except OSError:  # no preprocessor_config.json: Swin2SRImageProcessor's defaults
            processor = None
        self.divisor = (
            int(getattr(processor, "size_divisor", None) or 8) if getattr(processor, "do_pad", True) else 0
        )
        self.rescale = float(getattr(processor, "rescale_factor", None) or 1 / 255)

    def __call__(self, tiles: torch.Tensor) -> torch.Tensor:
        import torch

        height, width = tiles.shape[-2:]
        pixels = tiles.float() * self.rescale
        if self.divisor:
            pixels = mirrored(pixels, self.divisor, whole_block=True)
        out = self.model(pixel_values=pixels.to(self.dtype)).reconstruction
        return out[:, :, : height * self.scale, : width * self.scale].to(torch.float32)


class DiffusionUpscale:
    """A diffusers Stable Diffusion x4 upscaling pipeline (stabilityai/stable-diffusion-x4-upscaler
    and its fine-tunes): `num_inference_steps` denoising steps on latents the size of the tile,
    guided by `prompt` (classifier-free when `guidance_scale` > 1, which doubles the UNet's
    work), the tile noised by `noise_level` first (more: more invented detail, less fidelity).
    Every tile starts from the noise of `seed`, so a rerun (a resumed job) makes the same pixels.
    Tiles are mirrored at the bottom and right to a size the UNet and VAE take, and cut back."""

    def __init__(
        self,
        folder: str,
        *,
        prompt: str = "",
        num_inference_steps: int = 25,
        guidance_scale: float = 0.0,
        noise_level: int = 20,
        seed: int = 0,
        device: str,
        dtype: str,
        trust_remote_code: bool,
    ) -> None:
        import json

        import diffusers

        kind = json.loads((Path(folder) / "model_index.json").read_text()).get("_class_name")
        if kind not in UPSCALE_PIPELINES:
            raise ValueError(
                f"{folder} is a {kind}; diffusers upscalers supported: {', '.join(UPSCALE_PIPELINES)}"
            )
        loaded = load_pretrained(
            getattr(diffusers, kind), folder, device=device, dtype=dtype, trust_remote_code=trust_remote_code
        )
        self.pipeline, self.device = loaded.model, loaded.device
        self.pipeline.set_progress_bar_config(disable=True)
        if not 0 <= noise_level <= self.pipeline.config.max_noise_level:
            raise ValueError(
                f"noise_level must be in [0, {self.pipeline.config.max_noise_level}], got {noise_level}"
            )
        self.scale = int(self.pipeline.vae_scale_factor)  # latents the tile's size, decoded this much larger
        levels = len(self.pipeline.unet.config.block_out_channels)
        self.divisor = max(2 ** (levels - 1), self.scale)  # the UNet halves the latents levels - 1 times
        self.settings = {
            "num_inference_steps": int(num_inference_steps),
            "guidance_scale": float(guidance_scale),
            "noise_level": int(noise_level),
        }
        self.prompt, self.seed = str(prompt), int(seed)

    def __call__(self, tiles: torch.Tensor) -> torch.Tensor:
        import torch

        height, width = tiles.shape[-2:]
        pixels = mirrored(tiles.float() / 255, self.divisor, whole_block=False)
        out = self.pipeline(
            prompt=[self.prompt] * len(tiles),
            image=pixels,
            generator=[torch.Generator("cpu").manual_seed(self.seed) for _ in range(len(tiles))],
            output_type="pt",
            **self.settings,
        ).images
        return out[:, :, : height * self.scale, : width * self.scale].to(torch.float32)


def mirrored(pixels: torch.Tensor, divisor: int, *, whole_block: bool) -> torch.Tensor:
    """N x C x H x W padded symmetrically at the bottom and right up to a multiple of `divisor`;
    `whole_block`: a whole `divisor` more when already one (as Swin2SRImageProcessor.pad does)."""
    import torch

    for axis in (-2, -1):
        length = pixels.shape[axis]
        extra = divisor - length % divisor if whole_block else -length % divisor
        index = torch.from_numpy(np.pad(np.arange(length), (0, extra), mode="symmetric")).to(pixels.device)
        pixels = pixels.index_select(axis, index)
    return pixels
