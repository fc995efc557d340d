"""CPU stage of transform_images: decode each image once, then make one output file per size.

Orientation from EXIF is applied; EXIF and other metadata are dropped unless kept (the ICC
colour profile stays, so colours do not shift); transparency is kept where the target format
has it (PNG, WebP) and composited on `background` where it has not (JPEG). Animated files give
their first frame. Several sizes fan out: one child row per size (operators.fan_out).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from PIL import Image, ImageColor, ImageOps

from operators.fan_out import fan_out
from operators.file_outputs import FILE_BYTES, FILE_EXT, side_file_columns
from operators.image.decode_images import image_bytes, rgb_image, to_rgb
from operators.row_errors import add_error_columns, describe, errored_rows, good_rows, mark_errors

STAGE = "transform"
MODES = ("thumbnail", "fit", "fill", "crop")
FORMATS = {"jpeg": "jpg", "png": "png", "webp": "webp"}  # format -> file extension
ALPHA_FORMATS = ("png", "webp")
WHITE = (255, 255, 255)
Image.MAX_IMAGE_PIXELS = None  # our own limit names the config key instead


@dataclass(frozen=True)
class Size:
    """A box: `thumbnail`/`fit` scale the image into it, `fill` covers then crops it, `crop` cuts it."""

    width: int
    height: int
    label: str

    @classmethod
    def parse(cls, value: object) -> Size:
        """256 (a square box: 256 px on the longer side for thumbnail/fit) or "640x480"."""
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return cls(value, value, str(value))
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(value))
        if match and int(match[1]) >= 1 and int(match[2]) >= 1:
            return cls(int(match[1]), int(match[2]), f"{int(match[1])}x{int(match[2])}")
        raise ValueError(f"a size is a positive integer or 'WIDTHxHEIGHT', got {value!r}")


def parse_background(value: str) -> tuple[int, int, int]:
    """A colour name or #rrggbb as an RGB triple."""
    try:
        return ImageColor.getrgb(str(value))[:3]
    except ValueError:
        raise ValueError(f"not a colour: {value!r} (a name such as white, or #rrggbb)") from None


def transform_images(
    table: pa.Table,
    *,
    image_column: str,
    sizes: list[int | str],
    mode: str = "thumbnail",
    format: str = "jpeg",
    quality: int = 90,
    background: str = "white",
    keep_metadata: bool = False,
    max_pixels: int = 178_956_970,
    keep_image: bool = False,
) -> pa.Table:
    """One row per (image, size) with the encoded file, width, height, format and size label."""
    boxes = [Size.parse(size) for size in sizes]
    fill = parse_background(background)
    table = add_error_columns(table)
    outputs: list[list[tuple[bytes, int, int]] | None] = []
    reasons: list[str | None] = []
    for value, ok in zip(table[image_column].to_pylist(), good_rows(table), strict=True):
        if not ok:
            outputs.append(None)
            reasons.append(None)
            continue
        try:
            image = open_upright(image_bytes(value), max_pixels, boxes, mode)
            outputs.append(
                [encode(resize(image, box, mode), format, quality, fill, keep_metadata) for box in boxes]
            )
            reasons.append(None)
        except Exception as error:  # a bad image is a row outcome, never a failed task
            outputs.append(None)
            reasons.append(describe(error))
    table = mark_errors(table, reasons, STAGE)
    if not keep_image:
        table = table.drop_columns([image_column])
    if len(boxes) > 1:  # one child row per size; rows that already failed stay as they are
        table = fan_out(table, [len(boxes) if output else 1 for output in outputs], only=good_rows(table))
    cells: list[tuple[bytes, int, int] | None] = []
    labels: list[str | None] = []
    for output in outputs:
        cells.extend(output or [None])
        labels.extend([box.label for box in boxes] if output else [None])
    made = [cell is not None for cell in cells]
    columns = {
        FILE_BYTES: pa.array([cell[0] if cell else None for cell in cells], pa.binary()),
        FILE_EXT: pa.array([FORMATS[format] if ok else None for ok in made], pa.string()),
        "width": pa.array([cell[1] if cell else None for cell in cells], pa.int32()),
        "height": pa.array([cell[2] if cell else None for cell in cells], pa.int32()),
        "format": pa.array([format if ok else None for ok in made], pa.string()),
        "size": pa.array(labels, pa.string()),
    }
    for name, values in columns.items():
        table = table.append_column(name, values)
    return table


def open_upright(data: bytes, max_pixels: int, boxes: list[Size], mode: str) -> Image.Image:
    """The first frame, fully decoded and upright; JPEGs decode at a reduced scale when every
    output is at most half as large (what PIL's own thumbnail() does, with the same margin)."""
    image = Image.open(io.BytesIO(data))
    width, height = image.size
    if width * height > max_pixels:
        raise ValueError(
            f"image is {width}x{height} = {width * height} pixels, over transform.max_pixels={max_pixels}"
        )
    if image.format == "JPEG" and mode != "crop":
        # Square, so it holds for either orientation; draft keeps both sides >= it, which also
        # covers `fill` (the short side then reaches the box, the long side more than that).
        side = 2 * max(max(box.width, box.height) for box in boxes)
        image.draft(image.mode, (side, side))
    image.seek(0)
    image.load()  # surfaces truncated and corrupt data here
    return ImageOps.exif_transpose(image)


def resize(image: Image.Image, box: Size, mode: str) -> Image.Image:
    width, height = image.size
    if mode == "crop":
        return _center_crop(image, min(box.width, width), min(box.height, height))
    scale = min(box.width / width, box.height / height)
    if mode == "fill":
        scale = max(box.width / width, box.height / height)
    if mode == "thumbnail":
        scale = min(scale, 1.0)  # thumbnails never enlarge
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    if target != image.size:
        image = image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return _center_crop(image, box.width, box.height) if mode == "fill" else image


def encode(
    image: Image.Image, format: str, quality: int, background: tuple[int, int, int], keep_metadata: bool
) -> tuple[bytes, int, int]:
    """(file bytes, width, height) in `format`; alpha kept where the format has it."""
    converted = _for_format(image, format, background)
    options: dict = {"quality": quality} if format in ("jpeg", "webp") else {}
    if image.info.get("icc_profile"):
        options["icc_profile"] = image.info["icc_profile"]
    if keep_metadata and image.getexif():
        options["exif"] = image.getexif()
    buffer = io.BytesIO()
    converted.save(buffer, format=format.upper(), **options)
    return buffer.getvalue(), converted.width, converted.height


def _for_format(image: Image.Image, format: str, background: tuple[int, int, int]) -> Image.Image:
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    if not has_alpha:
        return to_rgb(image) if image.mode not in ("RGB", "L") else image
    rgba = image.convert("RGBA")
    if format in ALPHA_FORMATS:
        return rgba
    canvas = Image.new("RGBA", rgba.size, (*background, 255))
    return Image.alpha_composite(canvas, rgba).convert("RGB")


def _center_crop(image: Image.Image, width: int, height: int) -> Image.Image:
    left = (image.width - width) // 2
    top = (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))


def encode_images(
    table: pa.Table,
    *,
    format: str,
    quality: int,
    thumbnails: Sequence[int | str] = (),
    thumbnail_format: str = "jpeg",
    thumbnail_quality: int = 85,
    dimensions: bool = False,
) -> pa.Table:
    """CPU stage after an image-making model: raw `image_rgb` / `image_shape` -> a file in
    `format` (FILE_BYTES, FILE_EXT) for the writer's files/, of kept rows; with `thumbnails`
    (sizes), side files `thumbnail_<size>` of kept and filtered rows; with `dimensions`, the
    images' `width`, `height` and `format` columns."""
    table = add_error_columns(table)
    good, scored = good_rows(table), ~errored_rows(table)  # filtered rows get thumbnails only
    boxes = [Size.parse(size) for size in thumbnails]
    blobs: list[bytes | None] = [None] * table.num_rows
    thumbs: list[list[bytes | None]] = [[None] * table.num_rows for _ in boxes]
    if "image_rgb" in table.column_names:  # absent when every row of the block failed before
        raws, shapes = table["image_rgb"].to_pylist(), table["image_shape"].to_pylist()
        for i in np.flatnonzero(scored):
            pixels = rgb_image(raws[i], shapes[i])
            if good[i]:
                blobs[i] = encode(pixels, format, quality, WHITE, keep_metadata=False)[0]
            for made, blob in zip(
                thumbs, _thumbnails(pixels, boxes, thumbnail_format, thumbnail_quality), strict=True
            ):
                made[i] = blob
    if dimensions:
        shapes = table["image_shape"].to_pylist() if "image_shape" in table.column_names else []
        for name, axis in (("width", 1), ("height", 0)):
            sides = [shapes[i][axis] if shapes and scored[i] else None for i in range(table.num_rows)]
            table = table.append_column(name, pa.array(sides, pa.int32()))
        table = table.append_column("format", pa.array([format if b else None for b in blobs], pa.string()))
    table = table.drop_columns([c for c in ("image_rgb", "image_shape") if c in table.column_names])
    table = _with_file(table, (FILE_BYTES, FILE_EXT), blobs, FORMATS[format])
    return _with_thumbnails(table, boxes, thumbs, thumbnail_format)


def make_thumbnails(
    table: pa.Table,
    *,
    image_column: str,
    thumbnails: Sequence[int | str],
    thumbnail_format: str = "jpeg",
    thumbnail_quality: int = 85,
    max_pixels: int = 178_956_970,
    prefix: str = "thumbnail",
) -> pa.Table:
    """CPU stage ahead of an image model: side files `<prefix>_<size>` of each input image
    (`image_column` stays for the decode stage after it, which reports any image it cannot read);
    edit_images names them `before_<size>`."""
    boxes = [Size.parse(size) for size in thumbnails]
    table = add_error_columns(table)
    thumbs: list[list[bytes | None]] = [[None] * table.num_rows for _ in boxes]
    for i, (value, ok) in enumerate(zip(table[image_column].to_pylist(), good_rows(table), strict=True)):
        if not ok:
            continue
        try:
            image = open_upright(image_bytes(value), max_pixels, boxes, "thumbnail")
            made_here = _thumbnails(image, boxes, thumbnail_format, thumbnail_quality)
        except Exception:  # the decode stage after this one names the row's error
            continue
        for made, blob in zip(thumbs, made_here, strict=True):
            made[i] = blob
    return _with_thumbnails(table, boxes, thumbs, thumbnail_format, prefix)


def thumbnail_column(size: int | str | Size, prefix: str = "thumbnail") -> str:
    """The data/ column (and folder) of a thumbnail size: thumbnail_256, thumbnail_640x480."""
    return f"{prefix}_{(size if isinstance(size, Size) else Size.parse(size)).label}"


def _thumbnails(image: Image.Image, boxes: list[Size], format: str, quality: int) -> list[bytes]:
    return [
        encode(resize(image, box, "thumbnail"), format, quality, WHITE, keep_metadata=False)[0]
        for box in boxes
    ]


def _with_thumbnails(
    table: pa.Table, boxes: list[Size], thumbs: list[list], format: str, prefix: str = "thumbnail"
) -> pa.Table:
    for made, box in zip(thumbs, boxes, strict=True):
        table = _with_file(table, side_file_columns(thumbnail_column(box, prefix)), made, FORMATS[format])
    return table


def _with_file(table: pa.Table, columns: tuple[str, str], blobs: list[bytes | None], ext: str) -> pa.Table:
    table = table.append_column(columns[0], pa.array(blobs, pa.binary()))
    return table.append_column(columns[1], pa.array([ext if blob else None for blob in blobs], pa.string()))
