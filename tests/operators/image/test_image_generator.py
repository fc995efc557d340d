"""ImageGenerator against direct diffusers pipeline calls with the recorded seeds."""

import numpy as np
import pyarrow as pa
import torch
from diffusers import StableDiffusionPipeline

from operators.image.image_generator import ImageGenerator
from operators.image.image_prompts import expand_prompts

DEFAULTS = {"num_inference_steps": 2, "guidance_scale": 5.0, "height": 16, "width": 16}


def image_rows(prompts: list[str], **options) -> dict[str, np.ndarray]:
    table = pa.table({"id": [f"p{i}" for i in range(len(prompts))], "prompt": prompts})
    settings = {"column": "prompt", "template": None, "negative": None, "negative_column": None}
    settings |= {"variations": [], "grid": {}, "defaults": DEFAULTS, "n": 1, "seed": 0, **options}
    out = expand_prompts(table, **settings)
    return {name: out[name].to_numpy(zero_copy_only=False) for name in ImageGenerator.inputs}


def direct(path: str, prompt: str, seed: int, negative: str | None = None, **params) -> np.ndarray:
    pipeline = StableDiffusionPipeline.from_pretrained(path)
    pipeline.set_progress_bar_config(disable=True)
    out = pipeline(
        prompt,
        negative_prompt=negative,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="pil",
        **{**DEFAULTS, **params},
    )
    return np.asarray(out.images[0])


def test_each_image_is_the_direct_call_with_its_recorded_seed(tiny_stable_diffusion):
    batch = image_rows(["a red cat", "a blue sea"], n=2, grid={"guidance_scale": [1.5, 5.0]}, negative="dark")
    out = ImageGenerator(tiny_stable_diffusion)(batch)

    assert len(out["image_rgb"]) == 8 and out["image_shape"].tolist() == [[16, 16, 3]] * 8
    for i in (0, 3, 6):  # from different pipeline calls (guidance 1.5 and 5.0) and prompts
        ours = np.frombuffer(out["image_rgb"][i], np.uint8).reshape(16, 16, 3)
        expected = direct(
            tiny_stable_diffusion,
            str(batch["prompt"][i]),
            int(batch["seed"][i]),
            negative="dark",
            guidance_scale=float(batch["guidance_scale"][i]),
        )
        # A batched call and a single one differ only by float rounding: at most a level or two.
        assert np.abs(ours.astype(int) - expected).max() <= 2, i
    images = [bytes(raw) for raw in out["image_rgb"]]
    assert len(set(images)) == 8  # every seed its own image


def test_a_scheduler_can_be_swapped_by_name(tiny_stable_diffusion):
    generator = ImageGenerator(tiny_stable_diffusion, scheduler="EulerDiscreteScheduler")
    assert type(generator.pipeline.scheduler).__name__ == "EulerDiscreteScheduler"
    out = generator(image_rows(["a red cat"]))
    assert out["image_shape"].tolist() == [[16, 16, 3]]
