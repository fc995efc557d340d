"""model.decode=device: decode, resize and crop in the model's actor, against the host path.

Here the device is the CPU and PIL decodes (nvJPEG needs CUDA and torchvision: the GPU suite
runs that part); the resize, crop and normalisation are the code a GPU runs.
"""

import io

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from operators.arrow_tensors import arrow_to_tensor
from operators.image.decode_images import decode_images, read_image_data
from operators.image.device_pixels import DevicePixels, _baseline_jpeg
from operators.image.image_embedder import ImageEmbedder
from operators.image.pixel_normalizer import PixelNormalizer

CPU = torch.device("cpu")


def photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus a little noise: resize errors show as on photos, not on noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def encode(array: np.ndarray, fmt: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def rotated_jpeg() -> bytes:
    image = Image.fromarray(photo(40, 24, 3))
    exif = image.getexif()
    exif[0x0112] = 6  # stored sideways: upright is a 90 degree turn
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif.tobytes(), quality=95)
    return buffer.getvalue()


def mixed_files() -> list[bytes]:
    rgba = np.concatenate([photo(33, 47, 4), np.full((47, 33, 1), 128, np.uint8)], axis=-1)
    return [
        encode(photo(64, 48, 1), quality=95),
        encode(photo(30, 90, 2), quality=95),  # tall: shortest edge is the width
        rotated_jpeg(),
        encode(photo(50, 50, 5), "JPEG", quality=95, progressive=True),
        encode(photo(37, 29, 6)[..., 0]),  # grey
        encode(rgba, "PNG"),  # alpha over white
        encode(photo(200, 120, 7), "WEBP", quality=95),
    ]


@pytest.mark.parametrize("fixture", ["tiny_clip", "tiny_siglip"])  # shortest edge + crop; fixed size
def test_pixels_match_the_host_path_within_interpolation_rounding(fixture, request):
    path = request.getfixturevalue(fixture)
    files = mixed_files()
    host = decode_images(pa.table({"image": files}), model_path=path, image_column="image")
    assert host["_error"].null_count == len(files)
    expected = PixelNormalizer(path, CPU, torch.float32)(arrow_to_tensor(host["pixel_values"]))

    ours = DevicePixels(path, CPU, torch.float32)(files)

    assert ours.shape == expected.shape and ours.dtype == torch.float32
    # Both are 8-bit resizes of the same decoded pixels: rounding moves a pixel by one level at most.
    levels = (ours - expected).abs() / PixelNormalizer(path, CPU, torch.float32).scale
    assert levels.max().item() <= 1.001
    assert levels.mean().item() <= 0.25  # measured 0.17-0.18


def test_embeddings_match_the_host_path(tiny_clip):
    files = mixed_files()
    host = decode_images(pa.table({"image": files}), model_path=tiny_clip, image_column="image")
    expected = ImageEmbedder(tiny_clip)({"pixel_values": arrow_to_tensor(host["pixel_values"])})["embedding"]

    embedder = ImageEmbedder(tiny_clip, decode="device")
    table = read_image_data(pa.table({"image": files}), image_column="image")
    ours = embedder({"image_data": table["image_data"].to_numpy(zero_copy_only=False)})["embedding"]

    assert embedder.inputs == ("image_data",) and ImageEmbedder.inputs == ("pixel_values",)
    assert ours.shape == expected.shape
    assert (ours * expected).sum(axis=1).min() >= 0.995


def test_only_upright_baseline_rgb_or_grey_jpegs_go_to_nvjpeg():
    files = mixed_files()
    cmyk = io.BytesIO()
    Image.fromarray(photo(20, 20)).convert("CMYK").save(cmyk, format="JPEG")
    verdicts = [_baseline_jpeg(data) for data in [*files, cmyk.getvalue(), b"not an image"]]
    #           rgb   tall  rotated progressive grey png   webp   cmyk   junk
    assert verdicts == [True, True, False, False, True, False, False, False, False]


def test_read_image_data_checks_headers_and_keeps_the_bytes():
    good = encode(photo(20, 10))
    big = encode(photo(300, 200))
    table = pa.table({"image": [good, b"junk", None, big], "other": [1, 2, 3, 4]})

    out = read_image_data(table, image_column="image", max_pixels=50_000)

    assert out.column_names == ["other", "_error", "_error_stage", "image_data"]
    assert out["image_data"].to_pylist() == [good, None, None, None]
    reasons = out["_error"].to_pylist()
    assert reasons[0] is None
    assert reasons[1].startswith("UnidentifiedImageError")
    assert reasons[2] == "ValueError: missing image (null)"
    assert "over preprocess.max_pixels=50000" in reasons[3]
    assert out["_error_stage"].to_pylist() == [None, "decode", "decode", "decode"]


def test_a_file_corrupt_past_its_header_fails_in_the_actor(tiny_clip):
    good = encode(photo(256, 192))
    truncated = good[: len(good) * 3 // 4]
    assert read_image_data(pa.table({"image": [truncated]}), image_column="image")["_error"].null_count == 1
    with pytest.raises(OSError, match="truncated|broken"):
        DevicePixels(tiny_clip, CPU, torch.float32)([truncated])


def test_processors_without_a_recipe_are_refused_with_the_way_out(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(
        '{"image_processor_type": "CLIPImageProcessor", "size": 224}'
    )
    with pytest.raises(ValueError, match="use model.decode=host"):
        DevicePixels(str(tmp_path), CPU, torch.float32)
