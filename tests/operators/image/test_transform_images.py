"""transform_images on every legal kind of image: each output opens with PIL at the asked size
and format; bad files become error rows."""

import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from operators.file_outputs import FILE_BYTES, FILE_EXT
from operators.image.transform_images import Size, transform_images
from operators.row_errors import ERROR, ERROR_STAGE

RNG = np.random.default_rng(7)


def encoded(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def noise(width: int, height: int, mode: str = "RGB") -> Image.Image:
    channels = {"RGB": 3, "RGBA": 4, "CMYK": 4, "L": 1, "LA": 2}[mode]
    array = RNG.integers(0, 255, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode)


def exif_rotated() -> bytes:
    """A 120x60 JPEG whose EXIF says: rotate 90 degrees (orientation 6), so upright it is 60x120."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encoded(noise(120, 60), "JPEG", exif=exif.tobytes())


def palette_with_transparency() -> bytes:
    image = noise(90, 50).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encoded(image, "PNG", transparency=0)


def sixteen_bit() -> bytes:
    array = (np.linspace(0, 65535, 80 * 40).reshape(40, 80)).astype(np.uint16)
    return encoded(Image.fromarray(array), "PNG")  # uint16 -> mode I;16


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (70, 30), color) for color in ("red", "green", "blue")]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


KINDS = {
    "rgb.jpg": (encoded(noise(200, 100), "JPEG", quality=90), (200, 100)),
    "cmyk.jpg": (encoded(noise(100, 200, "CMYK"), "JPEG"), (100, 200)),
    "gray.png": (encoded(noise(64, 64, "L"), "PNG"), (64, 64)),
    "gray_alpha.png": (encoded(noise(40, 80, "LA"), "PNG"), (40, 80)),
    "rgba.png": (encoded(noise(150, 75, "RGBA"), "PNG"), (150, 75)),
    "palette.png": (palette_with_transparency(), (90, 50)),
    "16bit.png": (sixteen_bit(), (80, 40)),
    "rotated.jpg": (exif_rotated(), (60, 120)),
    "animated.gif": (animated_gif(), (70, 30)),
    "photo.webp": (encoded(noise(120, 90), "WEBP", quality=80), (120, 90)),
    "rgba.webp": (encoded(noise(50, 100, "RGBA"), "WEBP", lossless=True), (50, 100)),
}
BAD = {"garbage.jpg": b"not an image at all", "empty.png": b"", "truncated.jpg": KINDS["rgb.jpg"][0][:300]}


def table(images: dict[str, bytes | None]) -> pa.Table:
    return pa.table(
        {
            "id": list(images),
            "image": pa.array(list(images.values()), pa.binary()),
            ERROR: pa.nulls(len(images), pa.string()),
            ERROR_STAGE: pa.nulls(len(images), pa.string()),
        }
    )


def opened(out: pa.Table, row: int) -> Image.Image:
    return Image.open(io.BytesIO(out[FILE_BYTES][row].as_py()))


def expected_thumbnail(size: tuple[int, int], box: int) -> tuple[int, int]:
    scale = min(1.0, box / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


@pytest.mark.parametrize("format", ["jpeg", "png", "webp"])
def test_every_kind_of_image_becomes_a_thumbnail_in_the_asked_format(format):
    images = {name: data for name, (data, _) in KINDS.items()}
    out = transform_images(table(images), image_column="image", sizes=[64], format=format)
    assert out[ERROR].null_count == out.num_rows, out[ERROR].to_pylist()
    assert "image" not in out.column_names
    for row, (name, (_, size)) in enumerate(KINDS.items()):
        image = opened(out, row)
        assert image.format == format.upper(), name
        assert image.size == expected_thumbnail(size, 64), name
        assert (out["width"][row].as_py(), out["height"][row].as_py()) == image.size
        assert out[FILE_EXT][row].as_py() == {"jpeg": "jpg", "png": "png", "webp": "webp"}[format]
        assert out["size"][row].as_py() == "64"


def test_modes_fit_fill_crop_give_the_box_they_promise():
    images = {"wide.jpg": KINDS["rgb.jpg"][0]}  # 200x100
    sizes = {"thumbnail": (400, 200), "fit": (400, 200), "fill": (120, 120), "crop": (120, 100)}
    thumbnail = transform_images(table(images), image_column="image", sizes=[400], mode="thumbnail")
    assert opened(thumbnail, 0).size == (200, 100)  # thumbnails never enlarge
    fit = transform_images(table(images), image_column="image", sizes=[400], mode="fit")
    assert opened(fit, 0).size == sizes["fit"]
    fill = transform_images(table(images), image_column="image", sizes=[120], mode="fill")
    assert opened(fill, 0).size == sizes["fill"]
    crop = transform_images(table(images), image_column="image", sizes=["120x160"], mode="crop")
    assert opened(crop, 0).size == sizes["crop"]  # never larger than the image
    box = transform_images(table(images), image_column="image", sizes=["50x50"], mode="fit")
    assert opened(box, 0).size == (50, 25)


def test_exif_orientation_is_applied_and_metadata_stripped_unless_kept():
    images = {"rotated.jpg": KINDS["rotated.jpg"][0]}
    out = transform_images(table(images), image_column="image", sizes=[1000])
    image = opened(out, 0)
    assert image.size == (60, 120) and not image.getexif()
    kept = transform_images(table(images), image_column="image", sizes=[1000], keep_metadata=True)
    assert opened(kept, 0).size == (60, 120)


def test_transparency_is_composited_on_the_background_for_jpeg_and_kept_for_png():
    clear = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    images = {"clear.png": encoded(clear, "PNG")}
    jpeg = transform_images(table(images), image_column="image", sizes=[20], background="#ff0000")
    red = np.asarray(opened(jpeg, 0).convert("RGB"), dtype=int)
    assert abs(red[..., 0].mean() - 255) < 3 and red[..., 1].mean() < 3
    png = transform_images(table(images), image_column="image", sizes=[20], format="png")
    assert opened(png, 0).mode == "RGBA" and np.asarray(opened(png, 0))[..., 3].max() == 0


def test_animated_gif_gives_its_first_frame():
    out = transform_images(
        table({"a.gif": KINDS["animated.gif"][0]}), image_column="image", sizes=[70], format="png"
    )
    assert opened(out, 0).convert("RGB").getpixel((5, 5)) == (255, 0, 0)


def test_several_sizes_fan_out_one_row_per_size_and_bad_files_stay_one_error_row():
    images = {"a.jpg": KINDS["rgb.jpg"][0], **BAD, "b.png": KINDS["rgba.png"][0]}
    out = transform_images(table(images), image_column="image", sizes=[16, "40x30"], format="webp")
    ids = out["id"].to_pylist()
    assert ids == ["a.jpg@0", "a.jpg@1", "garbage.jpg", "empty.png", "truncated.jpg", "b.png@0", "b.png@1"]
    assert out["parent_id"].to_pylist() == ["a.jpg", "a.jpg", None, None, None, "b.png", "b.png"]
    assert out["size"].to_pylist() == ["16", "40x30", None, None, None, "16", "40x30"]
    reasons = dict(zip(ids, out[ERROR].to_pylist(), strict=True))
    assert "empty file" in reasons["empty.png"] and reasons["garbage.jpg"] and reasons["truncated.jpg"]
    assert {out[ERROR_STAGE][i].as_py() for i in (2, 3, 4)} == {"transform"}
    assert [opened(out, i).size for i in (0, 1, 5, 6)] == [(16, 8), (40, 20), (16, 8), (40, 20)]


def test_over_the_pixel_limit_is_an_error_naming_the_key():
    out = transform_images(
        table({"a.jpg": KINDS["rgb.jpg"][0]}), image_column="image", sizes=[8], max_pixels=100
    )
    assert "transform.max_pixels" in out[ERROR][0].as_py()


def test_size_parsing():
    assert Size.parse(128) == Size(128, 128, "128")
    assert Size.parse("640x480") == Size(640, 480, "640x480")
    for bad in (0, -3, "big", "10x0", True):
        with pytest.raises(ValueError):
            Size.parse(bad)
