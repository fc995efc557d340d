"""PixelRecipe: the checkpoint's resize and crop from its JSON, bit-exact with its processor."""

import json

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor
from transformers.image_transforms import center_crop as transformers_crop

from operators.arrow_tensors import arrow_to_tensor
from operators.image.decode_images import decode_images, load_image_processor, open_image
from operators.image.pixel_recipe import PixelRecipe, center_crop
from tests.operators.image.test_device_pixels import mixed_files

CLIP_224 = {
    "image_processor_type": "CLIPImageProcessor",
    "do_resize": True,
    "size": {"shortest_edge": 224},
    "resample": 3,
    "do_center_crop": True,
    "crop_size": {"height": 224, "width": 224},
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "do_convert_rgb": True,
}


def processor_pixels(folder: str, images: list[Image.Image]) -> np.ndarray:
    out = AutoImageProcessor.from_pretrained(folder)(
        images=images, return_tensors="np", do_rescale=False, do_normalize=False
    )
    return np.clip(np.rint(out["pixel_values"]), 0, 255).astype(np.uint8)


def write_config(folder, config: dict) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "preprocessor_config.json").write_text(json.dumps(config))
    return str(folder)


@pytest.mark.parametrize("fixture", ["tiny_clip", "tiny_siglip", "tiny_blip", "clip_224"])
def test_the_recipe_makes_the_processors_pixels_exactly(fixture, request, tmp_path):
    folder = write_config(tmp_path, CLIP_224) if fixture == "clip_224" else request.getfixturevalue(fixture)
    images = [open_image(data, 10**9) for data in mixed_files()]
    recipe = PixelRecipe.read(folder)
    assert recipe is not None
    np.testing.assert_array_equal(recipe(images), processor_pixels(folder, images))


def test_decode_images_falls_back_to_the_processor_for_what_a_recipe_cannot_say(tmp_path):
    legacy = write_config(tmp_path, {**CLIP_224, "size": 224, "crop_size": 224})  # old integer sizes
    assert PixelRecipe.read(legacy) is None
    assert not isinstance(load_image_processor(legacy), PixelRecipe)
    files = mixed_files()
    table = decode_images(pa.table({"image": files}), model_path=legacy, image_column="image")
    expected = processor_pixels(legacy, [open_image(data, 10**9) for data in files])
    np.testing.assert_array_equal(arrow_to_tensor(table["pixel_values"]), expected)


@pytest.mark.parametrize(
    "change",
    [
        {"size": 224},
        {"size": {"shortest_edge": 224, "longest_edge": 1333}},
        {"resample": 1},  # LANCZOS
        {"do_pad": True},
        {"image_processor_type": "ConvNextImageProcessor"},
        {"crop_size": {"height": 224}},
        {"do_resize": False},
    ],
)
def test_configs_that_do_more_have_no_recipe(change):
    assert PixelRecipe.parse({**CLIP_224, **change}) is None
    assert PixelRecipe.parse(CLIP_224) == PixelRecipe(3, shortest_edge=224, crop=(224, 224))


@pytest.mark.parametrize("shape", [(3, 10, 6), (3, 5, 9), (3, 4, 4), (3, 20, 30)])
def test_center_crop_pads_and_cuts_as_transformers_does(shape):
    pixels = np.random.default_rng(0).integers(1, 255, shape, dtype=np.uint8)
    expected = transformers_crop(pixels, (8, 8), input_data_format="channels_first")
    np.testing.assert_array_equal(center_crop(pixels, (8, 8)), expected)
    np.testing.assert_array_equal(center_crop(torch.from_numpy(pixels), (8, 8)).numpy(), expected)


def test_a_processor_never_gets_the_output_shape_of_one_that_had_its_id(tmp_path):
    from operators.image import decode_images as module

    processor = load_image_processor(write_config(tmp_path, CLIP_224))
    module._shapes[id(processor)] = (object(), (3, 32, 32))  # a freed processor, its id now reused
    assert module.output_shape(processor) == (3, 224, 224)
