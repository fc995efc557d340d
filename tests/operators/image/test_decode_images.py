import io
import re

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from operators.arrow_tensors import arrow_to_tensor
from operators.image.decode_images import decode_images, open_image

RED, BLUE = (220, 20, 20), (20, 40, 230)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def solid(color, mode: str = "RGB", size=(48, 40)) -> Image.Image:
    return Image.new(mode, size, color)


def noise_png(size=(48, 40)) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "PNG")


def noise_jpeg(size=(60, 44)) -> bytes:
    rows = np.linspace(0, 255, size[1], dtype=np.uint8)[:, None, None]
    cols = np.linspace(255, 0, size[0], dtype=np.uint8)[None, :, None]
    pixels = np.concatenate(np.broadcast_arrays(rows, cols, (rows // 2 + cols // 2)), axis=2)
    return encode(Image.fromarray(pixels.astype(np.uint8)), "JPEG", quality=90)


def palette_png_transparent() -> bytes:
    image = Image.new("P", (48, 40), 0)
    image.putpalette([10, 20, 30] * 256)
    return encode(image, "PNG", transparency=0)


def gray16_png(value: int) -> bytes:
    return encode(Image.fromarray(np.full((40, 48), value, np.uint16)), "PNG")


def animated_gif() -> bytes:
    first, second = solid(RED), solid(BLUE)
    return encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)


def exif_jpeg(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", exif=exif, quality=95)


def halves_jpeg(orientation: int) -> bytes:
    """40 wide x 20 tall: left half red, right half blue, with an EXIF orientation tag."""
    image = solid(BLUE, size=(40, 20))
    image.paste(RED, (0, 0, 20, 20))
    return exif_jpeg(image, orientation)


def max_diff(image: np.ndarray, color) -> int:
    """Largest channel difference between a (3, H, W) image and a solid colour."""
    return int(np.abs(image.astype(int) - np.array(color)[:, None, None]).max())


def run(table: pa.Table, model_path: str, **options) -> pa.Table:
    return decode_images(table, model_path=model_path, image_column="image", **options)


def image_table(cells: list) -> pa.Table:
    return pa.table({"id": list(range(len(cells))), "image": pa.array(cells, pa.binary())})


# name -> (encoded bytes, expected RGB of the whole decoded image, tolerance)
GOOD = {
    "jpeg": (encode(solid(RED), "JPEG", quality=95), RED, 6),
    "jpeg_progressive": (encode(solid(RED), "JPEG", quality=95, progressive=True), RED, 6),
    "png_rgb": (encode(solid((10, 120, 240)), "PNG"), (10, 120, 240), 0),
    "png_rgba_transparent": (encode(solid((10, 20, 30, 0), "RGBA"), "PNG"), (255, 255, 255), 0),
    "png_rgba_half_black": (encode(solid((0, 0, 0, 128), "RGBA"), "PNG"), (127, 127, 127), 1),
    "png_palette_transparent": (palette_png_transparent(), (255, 255, 255), 0),
    "png_gray": (encode(solid(77, "L"), "PNG"), (77, 77, 77), 0),
    "one_bit": (encode(solid(1, "1"), "PNG"), (255, 255, 255), 0),
    "png_gray16_mid": (gray16_png(32768), (128, 128, 128), 1),
    "jpeg_cmyk": (encode(solid((0, 255, 255, 0), "CMYK"), "JPEG", quality=95), (255, 0, 0), 6),
    "webp": (encode(solid(BLUE), "WEBP", lossless=True), BLUE, 0),
    "gif_animated_first_frame": (animated_gif(), RED, 0),
    "bmp": (encode(solid(BLUE), "BMP"), BLUE, 0),
    "tiff": (encode(solid(RED), "TIFF"), RED, 0),
    "jpeg_exif_rotated": (exif_jpeg(solid(BLUE, size=(40, 20)), 6), BLUE, 6),
}


def test_sample_images_are_what_they_claim():
    opened = {name: Image.open(io.BytesIO(data)) for name, (data, _, _) in GOOD.items()}
    assert opened["jpeg_progressive"].info.get("progressive") and not opened["jpeg"].info.get("progressive")
    modes = {name: opened[name].mode for name in ("png_palette_transparent", "one_bit", "jpeg_cmyk")}
    assert modes == {"png_palette_transparent": "P", "one_bit": "1", "jpeg_cmyk": "CMYK"}
    assert opened["png_gray16_mid"].mode == "I;16" and opened["gif_animated_first_frame"].n_frames == 2
    assert opened["jpeg_exif_rotated"].getexif()[0x0112] == 6


def test_every_encoding_decodes_to_the_expected_colour(tiny_clip):
    names = list(GOOD)
    out = run(image_table([GOOD[name][0] for name in names]), tiny_clip)
    pixels = arrow_to_tensor(out["pixel_values"])
    assert pixels.shape == (len(names), 3, 32, 32) and pixels.dtype == np.uint8
    assert out["_error"].to_pylist() == [None] * len(names), dict(
        zip(names, out["_error"].to_pylist(), strict=True)
    )
    assert out["_error_stage"].to_pylist() == [None] * len(names)
    for name, image in zip(names, pixels, strict=True):
        _, color, tolerance = GOOD[name]
        assert max_diff(image, color) <= tolerance, (name, image.reshape(3, -1).mean(1))


def test_exif_orientation_is_applied():
    image = open_image(halves_jpeg(6), max_pixels=10_000)
    assert image.mode == "RGB" and image.size == (20, 40)
    pixels = np.asarray(image).astype(int)
    assert np.abs(pixels[:18].mean((0, 1)) - RED).max() < 12  # the left half now on top
    assert np.abs(pixels[22:].mean((0, 1)) - BLUE).max() < 12
    assert open_image(halves_jpeg(1), max_pixels=10_000).size == (40, 20)


def test_hugging_face_image_struct_cells(tiny_clip):
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    cells = [
        {"bytes": encode(solid(RED), "PNG"), "path": "a.png"},
        {"bytes": None, "path": "b.png"},
        {"bytes": encode(solid(BLUE), "JPEG", quality=95), "path": None},
    ]
    out = run(pa.table({"id": [0, 1, 2], "image": pa.array(cells, struct)}), tiny_clip)
    assert out["_error"].to_pylist() == [None, "ValueError: missing image (null)", None]
    pixels = arrow_to_tensor(out["pixel_values"])
    assert max_diff(pixels[0], RED) == 0 and max_diff(pixels[2], BLUE) <= 6


@pytest.mark.parametrize("model", ["tiny_clip", "tiny_siglip"])
def test_pixels_match_the_models_own_processor(model, request, tmp_path):
    from transformers import AutoImageProcessor

    model_path = request.getfixturevalue(model)
    data = noise_jpeg()
    (tmp_path / "photo.jpg").write_bytes(data)
    processor = AutoImageProcessor.from_pretrained(model_path)
    expected = processor(
        images=Image.open(tmp_path / "photo.jpg").convert("RGB"),
        return_tensors="np",
        do_rescale=False,
        do_normalize=False,
    )["pixel_values"]
    expected = np.clip(np.rint(expected), 0, 255).astype(np.uint8)
    out = run(image_table([data, noise_png(), data]), model_path)
    pixels = arrow_to_tensor(out["pixel_values"])
    assert pixels.shape == (3, 3, 32, 32) and expected.shape == (1, 3, 32, 32)
    assert np.abs(pixels[[0, 2]].astype(int) - expected.astype(int)).max() <= 1
    assert pixels[0].std() > 10  # a real picture, not a blank canvas


def test_bad_rows_become_decode_errors_and_good_rows_keep_their_place(tiny_clip):
    jpeg, png = noise_jpeg(), noise_png((30, 30))
    cells = [
        encode(solid(RED, size=(20, 20)), "PNG"),
        b"",
        np.random.default_rng(1).bytes(500),
        b"id,caption\n1,a red shoe\n",
        jpeg[: len(jpeg) // 2],
        png[: len(png) // 2],
        None,
        encode(solid(BLUE, size=(100, 100)), "PNG"),
        encode(solid(BLUE, size=(20, 20)), "JPEG", quality=95),
    ]
    out = run(image_table(cells), tiny_clip, max_pixels=1000)
    assert out.num_rows == len(cells) and out["id"].to_pylist() == list(range(len(cells)))
    errors = out["_error"].to_pylist()
    assert errors == [
        None,
        "ValueError: empty file (0 bytes)",
        "UnidentifiedImageError: cannot identify image file",
        "UnidentifiedImageError: cannot identify image file",
        "OSError: Truncated File Read",
        "OSError: image file is truncated",
        "ValueError: missing image (null)",
        "ValueError: image is 100x100 = 10000 pixels, over preprocess.max_pixels=1000 "
        "(possible decompression bomb)",
        None,
    ]
    reasons = [error for error in errors if error is not None]
    assert not any("\n" in reason or re.search(r"\b0x[0-9a-f]+", reason) for reason in reasons)
    assert out["_error_stage"].to_pylist() == [None] + ["decode"] * 7 + [None]
    pixels = arrow_to_tensor(out["pixel_values"])
    assert max_diff(pixels[0], RED) == 0 and max_diff(pixels[8], BLUE) <= 6


def test_non_bytes_cells_are_errors(tiny_clip):
    out = run(pa.table({"id": [0, 1], "image": pa.array(["photo.jpg", None])}), tiny_clip)
    assert out["_error"].to_pylist() == [
        "ValueError: image cell is str, not bytes",
        "ValueError: missing image (null)",
    ]
    assert out["_error_stage"].to_pylist() == ["decode", "decode"]


def test_earlier_errors_are_kept_across_chunks(tiny_clip):
    first = image_table([b"not an image", b"also not an image"])
    first = first.append_column("_error", pa.array(["read failed", None], pa.string()))
    first = first.append_column("_error_stage", pa.array(["read", None], pa.string()))
    second = image_table([encode(solid(RED), "PNG")]).append_column("_error", pa.nulls(1, pa.string()))
    second = second.append_column("_error_stage", pa.nulls(1, pa.string()))
    out = run(pa.concat_tables([first, second]), tiny_clip)
    assert out["_error"].to_pylist() == [
        "read failed",
        "UnidentifiedImageError: cannot identify image file",
        None,
    ]
    assert out["_error_stage"].to_pylist() == ["read", "decode", None]
    assert max_diff(arrow_to_tensor(out["pixel_values"])[2], RED) == 0


@pytest.mark.parametrize("keep_image", [False, True])
def test_keep_image(tiny_clip, keep_image):
    cells = [encode(solid(RED), "PNG"), None]
    out = run(image_table(cells), tiny_clip, keep_image=keep_image)
    assert out.column_names[:1] == ["id"] and out.column_names[-1] == "pixel_values"
    assert ("image" in out.column_names) is keep_image
    if keep_image:
        assert out["image"].to_pylist() == cells


def test_empty_batch(tiny_clip):
    out = run(image_table([]), tiny_clip)
    assert out.num_rows == 0 and arrow_to_tensor(out["pixel_values"]).shape == (0, 3, 32, 32)


def test_dark_16_bit_gray_stays_dark():
    assert np.asarray(open_image(gray16_png(200), max_pixels=10_000)).max() <= 1  # 200/65535 of white


def test_colour_key_transparency_becomes_white():
    data = encode(solid(77, "L"), "PNG", transparency=77)  # every pixel is the transparent key
    assert np.asarray(open_image(data, max_pixels=10_000)).min() >= 254


def test_jpeg_draft_decodes_large_jpegs_smaller_but_never_below_the_model_size(tiny_clip):
    buffer = io.BytesIO()
    gradient = np.tile(np.linspace(0, 255, 400, dtype=np.uint8), (300, 1))
    Image.fromarray(np.stack([gradient] * 3, axis=-1)).save(buffer, format="JPEG", quality=95)
    data = buffer.getvalue()
    assert open_image(data, 10**9).size == (400, 300)
    assert open_image(data, 10**9, draft=(32, 32)).size == (50, 38)  # 1/8 scale, still >= 32
    assert open_image(data, 10**9, draft=(224, 224)).size == (400, 300)  # 1/2 would be < 224
    with_draft = decode_images(
        pa.table({"image": [data]}), model_path=tiny_clip, image_column="image", jpeg_draft=True
    )
    plain = decode_images(pa.table({"image": [data]}), model_path=tiny_clip, image_column="image")
    diff = np.abs(
        arrow_to_tensor(with_draft["pixel_values"]).astype(int) - arrow_to_tensor(plain["pixel_values"])
    )
    assert diff.mean() < 3  # same picture, resampled on a different path


def varied_images(count: int = 16) -> list[bytes]:
    """Noise of 24-400 px a side, any aspect, alternately JPEG (quality 75-95) and PNG."""
    rng = np.random.default_rng(3)
    out = []
    for i in range(count):
        width, height = rng.integers(24, 401, 2)
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        out.append(
            encode(image, "JPEG", quality=int(rng.integers(75, 96))) if i % 2 else encode(image, "PNG")
        )
    return out


def test_defaults_match_the_checkpoints_own_processor_and_model(tiny_clip):
    import torch
    from transformers import AutoImageProcessor, AutoModel

    from operators.image.image_embedder import ImageEmbedder

    images = varied_images()
    table = decode_images(pa.table({"image": images}), model_path=tiny_clip, image_column="image")
    assert table["_error"].null_count == len(images)
    ours = ImageEmbedder(tiny_clip)({"pixel_values": arrow_to_tensor(table["pixel_values"])})["embedding"]

    model, processor = (
        AutoModel.from_pretrained(tiny_clip).eval(),
        AutoImageProcessor.from_pretrained(tiny_clip),
    )
    pil = [Image.open(io.BytesIO(data)).convert("RGB") for data in images]
    with torch.inference_mode():
        out = model.get_image_features(**processor(images=pil, return_tensors="pt"))
    expected = torch.nn.functional.normalize(out.pooler_output, dim=-1).numpy()
    cosine = (ours * expected).sum(axis=1)
    assert cosine.min() >= 0.999, cosine.round(4)


@pytest.mark.parametrize("job", ["embed_images", "caption_images"])
def test_the_image_jobs_decode_at_full_scale_by_default(job):
    import rayjobs
    from rayjobs.config.image_inputs import decode_options

    cfg = rayjobs.compose(job, ["input.path=photos/", "output.path=out/"])
    assert decode_options(cfg)["jpeg_draft"] is False  # the draft decode is opt-in: it moves embeddings
