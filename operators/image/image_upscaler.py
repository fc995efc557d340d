"""ImageUpscaler: whole images in, super-resolved images out (Swin2SR or a diffusers
upscaler), tile by tile."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from operators.image.decode_images import raw_pixels
from operators.image.super_resolution import load_super_resolution
from operators.model_files import local_model_dir
from operators.torch_device import inference_mode

if TYPE_CHECKING:
    import torch


class ImageUpscaler:
    """Upscales images with a Swin2SR checkpoint (transformers' AutoModelForImageToImage) or a
    diffusers Stable Diffusion x4 upscaling pipeline (operators/image/super_resolution.py says
    how each is fed; `prompt`, `num_inference_steps`, `guidance_scale`, `noise_level` and `seed`
    are the diffusers pipeline's settings, refused for Swin2SR).

    An image larger than `tile` px on a side goes through in `tile` x `tile` tiles that overlap
    by `overlap` px, `tile_batch` tiles per model call, so the model's memory stays bounded by
    the tile, not the image (`tile=None`: never tiled). Each tile's output is weighted by a ramp
    that falls towards its inner edges (a linear feather over the overlap), so neighbouring tiles
    blend without seams. Images that fit in one tile go through whole, `tile_batch` of one shape
    per call. An RGBA image's alpha is resized bicubic (the model takes RGB). `scale`, when
    given, must be the checkpoint's own factor. `only_below`: images whose longer side is
    already at least this pass through unchanged, with `upscale` 1.
    """

    inputs: ClassVar[tuple[str, ...]] = ("image_rgb", "image_shape")
    outputs: ClassVar[tuple[str, ...]] = ("image_rgb", "image_shape", "upscale")

    def __init__(
        self,
        path: str,
        revision: str | None = None,
        scale: int | None = None,
        tile: int | None = 256,
        overlap: int = 16,
        only_below: int | None = None,
        tile_batch: int = 8,
        prompt: str | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        noise_level: int | None = None,
        seed: int | None = None,
        dtype: str = "auto",
        device: str = "auto",
        trust_remote_code: bool = False,
    ) -> None:
        if tile is not None and not 0 <= 2 * overlap < tile:
            raise ValueError(f"overlap must be in [0, tile / 2): tile={tile}, overlap={overlap}")
        diffusion = {
            name: value
            for name, value in [
                ("prompt", prompt),
                ("num_inference_steps", num_inference_steps),
                ("guidance_scale", guidance_scale),
                ("noise_level", noise_level),
                ("seed", seed),
            ]
            if value is not None
        }
        self.model = load_super_resolution(
            local_model_dir(path, revision),
            diffusion,
            device=device,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
        )
        if scale is not None and scale != self.model.scale:
            raise ValueError(f"{path} upscales x{self.model.scale}, not x{scale}: pick a x{scale} checkpoint")
        self.scale, self.device = self.model.scale, self.model.device
        self.tile = tile or None
        self.overlap = overlap
        self.only_below = only_below
        self.tile_batch = max(1, tile_batch)

    @inference_mode
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raws, shapes = batch["image_rgb"], np.asarray(batch["image_shape"])
        size = len(raws)
        factors = np.full(size, self.scale, dtype=np.int32)
        if self.only_below:
            factors[shapes[:, :2].max(axis=1) >= self.only_below] = 1
        todo = np.flatnonzero(factors > 1)
        done = self.upscale([raw_pixels(raws[i], shapes[i]) for i in todo])
        out_raws = np.array(raws, dtype=object)  # the same bytes, unless upscaled below
        out_shapes = shapes.astype(np.int32)
        for i, image in zip(todo, done, strict=True):
            out_raws[i], out_shapes[i] = image.tobytes(), image.shape
        return {"image_rgb": out_raws, "image_shape": out_shapes, "upscale": factors}

    def upscale(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Each H x W x C uint8 image (C = 3 or 4) at scale x its size. Images that fit in a tile
        go through whole, `tile_batch` of one shape per call; larger ones one at a time, tiled,
        so blending buffers exist for one image only."""
        import torch

        results: list[np.ndarray | None] = [None] * len(images)
        whole: dict[tuple[int, ...], list[int]] = {}
        for k, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] not in (3, 4):
                raise ValueError(f"ImageUpscaler takes RGB or RGBA images, got shape {image.shape}")
            if self.tile is None or max(image.shape[:2]) <= self.tile:
                whole.setdefault(image.shape, []).append(k)
            else:
                results[k] = self.finish(self.tiled(image), image)
        for rows in whole.values():
            for start in range(0, len(rows), self.tile_batch):
                chunk = rows[start : start + self.tile_batch]
                tiles = torch.stack([self.on_device(images[k]) for k in chunk])
                for k, out in zip(chunk, self.model(tiles), strict=True):
                    results[k] = self.finish(out, images[k])
        return results  # type: ignore[return-value]

    def tiled(self, image: np.ndarray) -> torch.Tensor:
        """3 x (scale H) x (scale W) float output of `image` made tile by tile, feathered together."""
        import torch

        s, (height, width) = self.scale, image.shape[:2]
        pixels = self.on_device(image)
        sums = torch.zeros(3, height * s, width * s, device=self.device)
        weights = torch.zeros(height * s, width * s, device=self.device)
        th, tw = min(height, self.tile), min(width, self.tile)
        spots = [
            (top, left)
            for top in tile_starts(height, th, self.overlap)
            for left in tile_starts(width, tw, self.overlap)
        ]
        for start in range(0, len(spots), self.tile_batch):
            chunk = spots[start : start + self.tile_batch]
            tiles = torch.stack([pixels[:, top : top + th, left : left + tw] for top, left in chunk])
            for (top, left), out in zip(chunk, self.model(tiles), strict=True):
                ramp = torch.outer(
                    feather(top, th, height, self.overlap, s, self.device),
                    feather(left, tw, width, self.overlap, s, self.device),
                )
                rows, cols = slice(top * s, (top + th) * s), slice(left * s, (left + tw) * s)
                sums[:, rows, cols] += out * ramp
                weights[rows, cols] += ramp
        return sums / weights

    def on_device(self, image: np.ndarray) -> torch.Tensor:
        """The image's RGB as a 3 x H x W uint8 tensor on the model's device."""
        import torch

        return torch.from_numpy(np.array(image[..., :3])).to(self.device).permute(2, 0, 1)  # a writable copy

    def finish(self, rgb: torch.Tensor, image: np.ndarray) -> np.ndarray:
        """The model's 3 x h x w output in [0, 1] as h x w x C uint8, with the image's alpha (if
        any) resized bicubic beside it."""
        import torch

        out = rgb.clamp(0, 1).mul(255).round().to(torch.uint8)
        if image.shape[2] == 4:
            alpha = torch.from_numpy(np.array(image[..., 3])).to(self.device)
            out = torch.cat([out, _resized_alpha(alpha, self.scale)])
        return out.permute(1, 2, 0).cpu().numpy()


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where tiles of `tile` px start along `length` px: `overlap` px shared between neighbours,
    the last one flush with the end (it may share more)."""
    if length <= tile:
        return [0]
    return [*range(0, length - tile, tile - overlap), length - tile]


def feather(
    start: int, size: int, length: int, overlap: int, scale: int, device: torch.device
) -> torch.Tensor:
    """One axis of a tile's blending weight, in output px: 1 inside, a linear ramp over the
    overlap at each edge that has a neighbour (none at the image's border)."""
    import torch

    ramp = torch.ones(size * scale, device=device)
    width = overlap * scale
    if not width:
        return ramp
    steps = (torch.arange(size * scale, device=device) + 0.5) / width
    if start > 0:
        ramp = torch.minimum(ramp, steps)
    if start + size < length:
        ramp = torch.minimum(ramp, steps.flip(0))
    return ramp


def _resized_alpha(alpha: torch.Tensor, scale: int) -> torch.Tensor:
    import torch

    grown = torch.nn.functional.interpolate(
        alpha[None, None].float(), scale_factor=scale, mode="bicubic", align_corners=False
    )
    return grown[0].clamp(0, 255).round().to(torch.uint8)
