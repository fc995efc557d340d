"""ImageGenerator: prompts in, one image per row out, with any diffusers text-to-image pipeline."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from operators.image.image_prompts import PARAMETERS
from operators.load_pretrained import load_pretrained
from operators.torch_device import inference_mode


class ImageGenerator:
    """Runs the checkpoint's pipeline (diffusers' AutoPipelineForText2Image: Stable Diffusion
    1.x/2.x, SDXL, SD3, FLUX, PixArt ...) on rows made by `expand_prompts`.

    Rows that share a negative prompt and parameters go through one pipeline call, each image
    with its own CPU `torch.Generator` seeded by its row: the same seed gives the same image in
    any batch and on any device. Images leave as raw RGB (`image_rgb`, `image_shape`): encoding
    them is CPU work for the stage after this one. The keyword defaults are the model preset's;
    `expand_prompts` has already written them, or the grid's values, into every row.
    """

    inputs: ClassVar[tuple[str, ...]] = ("prompt", "seed", "negative_prompt", *PARAMETERS)
    outputs: ClassVar[tuple[str, ...]] = ("image_rgb", "image_shape")
    keeps_inputs: ClassVar[bool] = True  # every image row records what made it

    def __init__(
        self,
        path: str,
        revision: str | None = None,
        n: int = 1,
        seed: int = 0,
        num_inference_steps: int = 30,
        guidance_scale: float = 7.5,
        height: int = 512,
        width: int = 512,
        scheduler: str | None = None,
        attention_slicing: bool = False,
        vae_tiling: bool = False,
        dtype: str = "auto",
        device: str = "auto",
        trust_remote_code: bool = False,
    ) -> None:
        import diffusers

        loaded = load_pretrained(
            diffusers.AutoPipelineForText2Image,
            path,
            revision=revision,
            device=device,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
        )
        self.pipeline, self.device = loaded.model, loaded.device
        if scheduler:  # e.g. DPMSolverMultistepScheduler: fewer steps for the same quality
            self.pipeline.scheduler = getattr(diffusers, scheduler).from_config(
                self.pipeline.scheduler.config
            )
        if attention_slicing:
            self.pipeline.enable_attention_slicing()
        if vae_tiling:
            self.pipeline.vae.enable_tiling()
        self.pipeline.set_progress_bar_config(disable=True)

    @inference_mode
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        size = len(batch["prompt"])
        raws = np.empty(size, dtype=object)
        shapes = np.zeros((size, 3), dtype=np.int32)
        groups: dict[tuple, list[int]] = {}
        for i in range(size):
            key = (_text(batch["negative_prompt"][i]), *(_plain(name, batch[name][i]) for name in PARAMETERS))
            groups.setdefault(key, []).append(i)
        for (negative, *values), rows in groups.items():
            params = dict(zip(PARAMETERS, values, strict=True))
            for i, image in zip(rows, self.generate(batch, rows, negative, params), strict=True):
                raws[i], shapes[i] = image.tobytes(), image.shape
        return {"image_rgb": raws, "image_shape": shapes}

    def generate(
        self, batch: dict[str, np.ndarray], rows: list[int], negative: str | None, params: dict
    ) -> np.ndarray:
        """H x W x 3 uint8 images of `rows`, one pipeline call."""
        import torch

        generators = [torch.Generator("cpu").manual_seed(int(batch["seed"][i])) for i in rows]
        out = self.pipeline(
            prompt=[str(batch["prompt"][i]) for i in rows],
            negative_prompt=[negative] * len(rows) if negative else None,
            generator=generators,
            output_type="np",
            **params,
        )
        return (np.clip(out.images, 0, 1) * 255).round().astype(np.uint8)  # as diffusers' PIL output


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _plain(name: str, value: Any) -> int | float:
    """A parameter as the Python type the pipeline takes (a column with nulls arrives as floats)."""
    return float(value) if pa.types.is_floating(PARAMETERS[name]) else int(value)
