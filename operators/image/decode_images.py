"""CPU stage ahead of an image model: decode, orient, convert to RGB, resize and crop with the
model's own image processor. Pixels leave as uint8 (4x less to move than float32); the model
actor rescales and normalises on its device."""

from __future__ import annotations

import io
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image, ImageOps

from operators.arrow_tensors import tensor_to_arrow
from operators.image.pixel_recipe import PixelRecipe
from operators.model_files import local_model_dir
from operators.row_errors import add_error_columns, describe, good_rows, mark_errors

STAGE = "decode"
# Our own pixel limit replaces PIL's global one, so the reason names the config key.
Image.MAX_IMAGE_PIXELS = None


@lru_cache(maxsize=4)
def load_image_processor(model_path: str, revision: str | None = None):
    """The checkpoint's resize and crop, loaded once per worker process: its PixelRecipe when
    it has one (no transformers or torch import), else its AutoImageProcessor."""
    folder = local_model_dir(model_path, revision)
    recipe = PixelRecipe.read(folder)
    if recipe is not None:
        return recipe
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(folder)


def image_bytes(value: Any) -> bytes:
    """Encoded bytes from a binary cell or a Hugging Face {bytes, path} image struct."""
    if isinstance(value, dict):
        value = value.get("bytes")
    if value is None:
        raise ValueError("missing image (null)")
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ValueError(f"image cell is {type(value).__name__}, not bytes")
    if len(value) == 0:
        raise ValueError("empty file (0 bytes)")
    return bytes(value)


def open_image(data: bytes, max_pixels: int, draft: tuple[int, int] | None = None) -> Image.Image:
    """A fully decoded, upright RGB image; raises with a readable reason otherwise.

    `draft`: let JPEG decode at 1/2, 1/4 or 1/8 scale while staying at least this size: the
    resize that follows shrinks further anyway, and decoding is the CPU stage's main cost.
    """
    image = Image.open(io.BytesIO(data))
    check_pixels(image, max_pixels)
    if draft and image.format == "JPEG":
        side = max(draft)  # square: holds whichever way EXIF later rotates the image
        image.draft("RGB", (side, side))
    image.load()  # surfaces truncated and corrupt data here, not in the processor
    image = ImageOps.exif_transpose(image)
    return to_rgb(image)


def check_pixels(image: Image.Image, max_pixels: int) -> None:
    """Raises for an image over the pixel limit, from its header alone."""
    width, height = image.size
    if width * height > max_pixels:
        raise ValueError(
            f"image is {width}x{height} = {width * height} pixels, over "
            f"preprocess.max_pixels={max_pixels} (possible decompression bomb)"
        )


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB for any PIL mode: transparency over white, 16-bit and float scaled, palettes expanded."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode.startswith("I;16"):
        return _gray_to_rgb(np.asarray(image, dtype=np.float64) / 65535.0)
    if image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        peak = values.max(initial=0.0)
        # 32-bit int / float files carry no range: 0-1 floats, 8-bit or 16-bit ranges, by their peak.
        scale = 1.0 if image.mode == "F" and peak <= 1.0 else 255.0 if peak <= 255 else 65535.0
        return _gray_to_rgb(values / scale)
    if image.mode in ("P", "L", "RGB", "1") and "transparency" in image.info:
        image = image.convert("RGBA")  # palette or colour-key transparency becomes alpha
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def _gray_to_rgb(fraction: np.ndarray) -> Image.Image:
    gray = np.clip(np.rint(fraction * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")


def decode_images(
    table: pa.Table,
    *,
    model_path: str,
    image_column: str,
    revision: str | None = None,
    max_pixels: int = 178_956_970,
    keep_image: bool = False,
    jpeg_draft: bool = False,  # opt-in: faster, but pixels differ from the checkpoint processor's
    output_column: str = "pixel_values",
) -> pa.Table:
    """Adds `output_column` (uint8 pixels, N x 3 x H x W); undecodable images become errors."""
    processor = load_image_processor(model_path, revision)
    draft = output_shape(processor)[1:] if jpeg_draft else None
    table = add_error_columns(table)
    images, reasons = open_rows(table, image_column, max_pixels, draft)
    pixels, failures = process_images(processor, images)
    reasons = [reason or failure for reason, failure in zip(reasons, failures, strict=True)]
    table = mark_errors(table, reasons, STAGE)
    stale = [c for c in (output_column, *([] if keep_image else [image_column])) if c in table.column_names]
    return table.drop_columns(stale).append_column(output_column, tensor_to_arrow(pixels))


def rgb_image(raw: bytes, shape) -> Image.Image:
    """One row of `image_rgb` / `image_shape` (H, W, 3), or (H, W, 4) after an RGBA edit such as
    background removal, as a PIL image."""
    return Image.frombytes("RGBA" if shape[2] == 4 else "RGB", (shape[1], shape[0]), raw)


def raw_pixels(raw: bytes, shape) -> np.ndarray:
    """One row of `image_rgb` / `image_shape` as an H x W x C uint8 array (read-only: no copy)."""
    return np.frombuffer(raw, dtype=np.uint8).reshape(tuple(int(n) for n in shape))


def pixels_from_rgb(
    table: pa.Table, *, model_path: str, revision: str | None = None, output_column: str = "pixel_values"
) -> pa.Table:
    """Adds `output_column` for an image model after an image-making one: the raw `image_rgb` /
    `image_shape` (kept, for encoding later) resized and cropped by the model's processor."""
    processor = load_image_processor(model_path, revision)
    table = add_error_columns(table)
    images: list[Image.Image | None] = [None] * table.num_rows
    if "image_rgb" in table.column_names:  # absent when every row of the block failed before
        raws, shapes = table["image_rgb"].to_pylist(), table["image_shape"].to_pylist()
        for i in np.flatnonzero(good_rows(table)):
            images[i] = rgb_image(raws[i], shapes[i])
    pixels, failures = process_images(processor, images)
    table = mark_errors(table, failures, STAGE)
    table = table.drop_columns([c for c in (output_column,) if c in table.column_names])
    return table.append_column(output_column, tensor_to_arrow(pixels))


def open_rows(
    table: pa.Table, image_column: str, max_pixels: int, draft: tuple[int, int] | None
) -> tuple[list[Image.Image | None], list[str | None]]:
    """Every not-yet-failed row's image, opened by `open_image`; a failure is that row's reason."""
    images: list[Image.Image | None] = []
    reasons: list[str | None] = []
    for value, ok in zip(table[image_column].to_pylist(), good_rows(table), strict=True):
        image, reason = None, None
        if ok:
            try:
                image = open_image(image_bytes(value), max_pixels, draft)
            except Exception as error:  # any decoder failure is this row's, not the batch's
                reason = describe(error)
        images.append(image)
        reasons.append(reason)
    return images, reasons


def process_images(processor, images: list[Image.Image | None]) -> tuple[np.ndarray, list[str | None]]:
    """Resize and crop every decoded image; a failing image is retried alone and reported."""
    shape = output_shape(processor)
    pixels = np.zeros((len(images), *shape), dtype=np.uint8)
    failures: list[str | None] = [None] * len(images)
    rows = [i for i, image in enumerate(images) if image is not None]
    if not rows:
        return pixels, failures
    try:
        pixels[rows] = _to_uint8(_pixel_values(processor, [images[i] for i in rows]))
    except Exception:
        for i in rows:
            try:
                pixels[i] = _to_uint8(_pixel_values(processor, [images[i]]))[0]
            except Exception as error:
                failures[i] = describe(error)
    return pixels, failures


def _pixel_values(processor, images: list[Image.Image]) -> np.ndarray:
    if isinstance(processor, PixelRecipe):
        return processor(images)
    out = processor(images=images, return_tensors="np", do_rescale=False, do_normalize=False)
    return np.asarray(out["pixel_values"])


def _to_uint8(values: np.ndarray) -> np.ndarray:
    if values.dtype == np.uint8:
        return values
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


# id of a loaded processor -> (the processor, its output shape): holding the processor keeps its
# id from being reused by another one once load_image_processor's cache lets it go.
_shapes: dict[int, tuple[object, tuple[int, int, int]]] = {}


def output_shape(processor) -> tuple[int, int, int]:
    """(3, H, W) the processor produces, probed once per processor."""
    known = _shapes.get(id(processor))
    if known is not None and known[0] is processor:
        return known[1]
    shape = tuple(_pixel_values(processor, [Image.new("RGB", (64, 48))]).shape[1:])
    _shapes[id(processor)] = (processor, shape)
    return shape


def read_image_data(
    table: pa.Table, *, image_column: str, max_pixels: int = 178_956_970, keep_image: bool = False
) -> pa.Table:
    """Adds `image_data` (the encoded bytes) for a model that decodes on its device
    (`model.decode=device`). Only headers are read here: rows that are no image, or over
    `max_pixels`, become errors now; a file corrupt past its header fails in the model stage."""
    table = add_error_columns(table)
    blobs: list[bytes | None] = []
    reasons: list[str | None] = []
    for value, ok in zip(table[image_column].to_pylist(), good_rows(table), strict=True):
        data, reason = None, None
        if ok:
            try:
                data = image_bytes(value)
                check_pixels(Image.open(io.BytesIO(data)), max_pixels)
            except Exception as error:  # this row's failure, not the batch's
                data, reason = None, describe(error)
        blobs.append(data)
        reasons.append(reason)
    table = mark_errors(table, reasons, STAGE)
    stale = [c for c in ("image_data", *([] if keep_image else [image_column])) if c in table.column_names]
    return table.drop_columns(stale).append_column("image_data", pa.array(blobs, pa.large_binary()))


def decode_rgb(
    table: pa.Table,
    *,
    image_column: str,
    max_side: int = 1536,
    max_pixels: int = 178_956_970,
    keep_image: bool = False,
) -> pa.Table:
    """Adds `image_rgb` (raw H x W x 3 uint8 bytes) and `image_shape` (H, W, 3) for models whose
    processor works on whole images (vision-language chat models tile and resize them their own
    way). Images are shrunk so their longer side is at most `max_side`: the object store moves
    what the processor will use, not the camera's 24 megapixels."""
    table = add_error_columns(table)
    images, reasons = open_rows(table, image_column, max_pixels, (max_side, max_side))
    raws: list[bytes | None] = [None] * table.num_rows
    shapes = np.zeros((table.num_rows, 3), dtype=np.int32)
    for row, image in enumerate(images):
        if image is None:
            continue
        try:
            if max(image.size) > max_side:
                image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
            pixels = np.asarray(image, dtype=np.uint8)
            raws[row], shapes[row] = pixels.tobytes(), pixels.shape
        except Exception as error:  # this row's failure, not the batch's
            reasons[row] = describe(error)
    table = mark_errors(table, reasons, STAGE)
    stale = [
        c
        for c in ("image_rgb", "image_shape", *([] if keep_image else [image_column]))
        if c in table.column_names
    ]
    table = table.drop_columns(stale)
    table = table.append_column("image_rgb", pa.array(raws, pa.large_binary()))
    return table.append_column("image_shape", tensor_to_arrow(shapes))
