import io

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageToImage

from operators.arrow_tensors import arrow_to_tensor
from operators.file_outputs import FILE_BYTES
from operators.image.decode_images import decode_rgb, raw_pixels
from operators.image.image_upscaler import ImageUpscaler, tile_starts
from operators.image.transform_images import encode_images
from operators.row_errors import ERROR
from rayjobs.pipeline.model_stage import ModelStage


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour waves plus noise, like a small photo."""
    y, x = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(seed).normal(0, 12, (height, width, 3))
    waves = np.stack([128 + 90 * np.sin(x / 7), 128 + 90 * np.cos(y / 5), 60 + (x + y) % 128], -1)
    return np.clip(waves + noise, 0, 255).astype(np.uint8)


def batch_of(images: list[np.ndarray]) -> dict[str, np.ndarray]:
    return {
        "image_rgb": np.array([image.tobytes() for image in images], dtype=object),
        "image_shape": np.array([image.shape for image in images], dtype=np.int32),
    }


def upscaled(out: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [raw_pixels(raw, shape) for raw, shape in zip(out["image_rgb"], out["image_shape"], strict=True)]


def direct_upscale(processor, model, image: np.ndarray) -> np.ndarray:
    """The checkpoint's processor and model on one image, the output cut to 2x the image and
    rounded as transformers' Swin2SR example does."""
    with torch.no_grad():
        out = model(**processor(images=image, return_tensors="pt")).reconstruction
    height, width = image.shape[:2]
    out = out[0, :, : 2 * height, : 2 * width].clamp(0, 1)
    return (out * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def test_untiled_images_equal_a_direct_swin2sr_call(tiny_swin2sr):
    images = [photo(40, 48), photo(37, 29, seed=1), photo(5, 3, seed=2)]  # a multiple of 8, odd, tiny
    out = ImageUpscaler(tiny_swin2sr, tile=None)(batch_of(images))
    processor = AutoImageProcessor.from_pretrained(tiny_swin2sr)
    model = AutoModelForImageToImage.from_pretrained(tiny_swin2sr).eval()
    assert out["upscale"].tolist() == [2, 2, 2]
    for image, result in zip(images, upscaled(out), strict=True):
        assert result.shape == (2 * image.shape[0], 2 * image.shape[1], 3)
        assert np.abs(result.astype(int) - direct_upscale(processor, model, image)).max() <= 1  # measured: 0


def test_tiles_blend_into_the_untiled_image_without_seams(tiny_swin2sr):
    image = photo(56, 64)
    whole = upscaled(ImageUpscaler(tiny_swin2sr, tile=None)(batch_of([image])))[0].astype(int)
    # 32 px tiles overlapping by 8: 2 x 3 tiles, two model calls of up to 4 tiles
    tiled = upscaled(ImageUpscaler(tiny_swin2sr, tile=32, overlap=8, tile_batch=4)(batch_of([image])))[0]
    difference = np.abs(tiled.astype(int) - whole)
    # Tiles see less context near their edges; measured over 3 photos: mean 0.11, max 5-6 levels.
    assert difference.mean() < 0.25 and difference.max() <= 8
    # Without overlap the tile edges show (measured: mean 0.42, max 31): the feather removes them.
    abutting = upscaled(ImageUpscaler(tiny_swin2sr, tile=32, overlap=0)(batch_of([image])))[0]
    seams = np.abs(abutting.astype(int) - whole)
    assert seams.mean() > 3 * difference.mean() and seams.max() > 3 * difference.max()
    # An image that fits in one tile is not tiled: exactly the untiled result.
    small = photo(30, 20)
    assert np.array_equal(
        upscaled(ImageUpscaler(tiny_swin2sr, tile=32, overlap=8)(batch_of([small])))[0],
        upscaled(ImageUpscaler(tiny_swin2sr, tile=None)(batch_of([small])))[0],
    )


def test_tile_starts_cover_the_axis_with_at_least_the_overlap():
    assert tile_starts(88, 32, 8) == [0, 24, 48, 56]
    assert tile_starts(32, 32, 8) == [0] and tile_starts(20, 32, 8) == [0]
    assert tile_starts(33, 32, 0) == [0, 1]


def test_only_below_passes_big_images_through_unchanged(tiny_swin2sr):
    small, big = photo(20, 30), photo(24, 64, seed=1)
    batch = batch_of([small, big])
    out = ImageUpscaler(tiny_swin2sr, only_below=64)(batch)
    assert out["upscale"].tolist() == [2, 1]
    assert out["image_rgb"][1] == batch["image_rgb"][1] and out["image_shape"][1].tolist() == [24, 64, 3]
    assert out["image_shape"][0].tolist() == [40, 60, 3]


def test_an_rgba_image_keeps_its_alpha_resized(tiny_swin2sr):
    rgb = photo(16, 24)
    alpha = np.zeros((16, 24, 1), dtype=np.uint8)
    alpha[4:12, 6:18] = 255
    operator = ImageUpscaler(tiny_swin2sr)
    result = upscaled(operator(batch_of([np.concatenate([rgb, alpha], axis=-1)])))[0]
    assert result.shape == (32, 48, 4)
    assert np.array_equal(result[..., :3], upscaled(operator(batch_of([rgb])))[0])
    assert (result[10:22, 14:34, 3] == 255).all() and (result[:4, :, 3] == 0).all()


def test_a_scale_the_checkpoint_does_not_have_and_a_too_wide_overlap_are_refused(tiny_swin2sr):
    with pytest.raises(ValueError, match="upscales x2, not x4"):
        ImageUpscaler(tiny_swin2sr, scale=4)
    with pytest.raises(ValueError, match="overlap"):
        ImageUpscaler(tiny_swin2sr, tile=32, overlap=16)
    assert ImageUpscaler(tiny_swin2sr, scale=2).scale == 2


def direct_diffusion_upscale(path: str, image: np.ndarray, steps: int, seed: int) -> np.ndarray:
    """The diffusers pipeline on the image mirrored to even sides (what its two-level toy UNet
    takes), its output cut to 4x the image, rounded as diffusers' PIL output is."""
    from diffusers import StableDiffusionUpscalePipeline

    pipeline = StableDiffusionUpscalePipeline.from_pretrained(path)
    height, width = image.shape[:2]
    padded = np.pad(image, ((0, -height % 4), (0, -width % 4), (0, 0)), mode="symmetric")
    out = pipeline(
        prompt=["a red shoe"],
        image=torch.from_numpy(padded).permute(2, 0, 1)[None].float() / 255,
        num_inference_steps=steps,
        guidance_scale=0.0,
        noise_level=20,
        generator=[torch.Generator("cpu").manual_seed(seed)],
        output_type="np",
    ).images[0]
    return (np.clip(out[: 4 * height, : 4 * width], 0, 1) * 255).round().astype(np.uint8)


def test_a_diffusers_upscaler_equals_the_pipeline_called_directly(tiny_sd_upscaler):
    images = [photo(18, 26), photo(18, 26, seed=1), photo(13, 21, seed=2)]  # 13 x 21: mirrored to 16 x 24
    operator = ImageUpscaler(
        tiny_sd_upscaler, prompt="a red shoe", num_inference_steps=3, seed=7, tile=None, scale=4
    )
    out = operator(batch_of(images))
    assert list(out["upscale"]) == [4, 4, 4]
    results = upscaled(out)
    for image, result in zip(images, results, strict=True):
        assert result.shape == (4 * image.shape[0], 4 * image.shape[1], 3)
        expected = direct_diffusion_upscale(tiny_sd_upscaler, image, steps=3, seed=7)
        assert np.abs(result.astype(int) - expected).max() <= 1
    assert not np.array_equal(results[0], results[1])  # the photo, not only the seed, shapes the output


def test_a_diffusers_upscaler_tiles_large_photos_and_its_settings_are_refused_for_swin2sr(
    tiny_sd_upscaler, tiny_swin2sr
):
    image = photo(40, 36)
    operator = ImageUpscaler(
        tiny_sd_upscaler, prompt="a red shoe", num_inference_steps=2, tile=24, overlap=4, seed=3
    )
    tiled = upscaled(operator(batch_of([image])))[0]
    assert tiled.shape == (160, 144, 3)
    # Tiles start at rows 0, 16 and columns 0, 12: the first 16 x 12 px are the top-left tile's alone.
    corner = direct_diffusion_upscale(tiny_sd_upscaler, image[:24, :24], steps=2, seed=3)
    assert np.abs(tiled[:64, :48].astype(int) - corner[:64, :48]).max() <= 1
    with pytest.raises(ValueError, match="noise_level, seed: settings of diffusers upscalers"):
        ImageUpscaler(tiny_swin2sr, noise_level=30, seed=1)
    with pytest.raises(ValueError, match=r"noise_level must be in \[0, 350\]"):
        ImageUpscaler(tiny_sd_upscaler, noise_level=400)


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_edits_chain_through_model_stages_each_replacing_the_image(tiny_segformer, tiny_swin2sr):
    """decode_rgb -> background removal (RGBA) -> upscaling -> encode_images: each edit reads
    image_rgb / image_shape and leaves new ones in their place, plus its own stats column."""
    table = decode_rgb(
        pa.table({"id": [0, 1], "image": [png(photo(20, 30)), b"not an image"]}), image_column="image"
    )
    remove = ModelStage(
        "operators.image.background_remover.BackgroundRemover",
        {"path": tiny_segformer, "output": "rgba"},
        stage="remove_background",
    )
    upscale = ModelStage(
        "operators.image.image_upscaler.ImageUpscaler", {"path": tiny_swin2sr}, stage="upscale"
    )
    table = upscale(remove(table))
    names = table.column_names
    assert names.count("image_rgb") == 1 and names.count("image_shape") == 1
    assert {"mask_coverage", "upscale"} <= set(names)
    assert arrow_to_tensor(table["image_shape"])[0].tolist() == [40, 60, 4]
    assert table["upscale"][0].as_py() == 2 and 0 <= table["mask_coverage"][0].as_py() <= 1
    assert (
        table[ERROR][0].as_py() is None and table[ERROR][1].as_py() is not None
    )  # the bad file stays an error
    files = encode_images(table, format="png", quality=90)[FILE_BYTES]
    written = Image.open(io.BytesIO(files[0].as_py()))
    assert written.mode == "RGBA" and written.size == (60, 40)
