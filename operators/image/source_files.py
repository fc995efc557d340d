"""CPU stage of a job that delivers its input images as they came (score_images with
output=webdataset): each kept row's image bytes become its file output, with the extension of
the format PIL finds in the header; nothing is decoded or re-encoded."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
from PIL import Image

from operators.file_outputs import FILE_BYTES, FILE_EXT
from operators.image.decode_images import image_bytes
from operators.row_errors import add_error_columns, good_rows

EXTENSIONS = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tiff",
}


def image_extension(data: bytes) -> str:
    """The file extension of encoded image `data`, from its header alone."""
    with Image.open(io.BytesIO(data)) as image:  # lazy: reads the header, not the pixels
        kind = image.format or "bin"
    return EXTENSIONS.get(kind, kind.lower())


def source_files(table: pa.Table, *, image_column: str, keep_image: bool = False) -> pa.Table:
    """Adds FILE_BYTES / FILE_EXT: the input image of each good row (errored and filtered rows
    deliver none); drops `image_column` unless `keep_image`."""
    table = add_error_columns(table)
    values = table[image_column].to_pylist()
    blobs: list[bytes | None] = [None] * table.num_rows
    exts: list[str | None] = [None] * table.num_rows
    for i in np.flatnonzero(good_rows(table)):
        blobs[i] = image_bytes(values[i])  # a good row's image was decoded already: it is bytes
        exts[i] = image_extension(blobs[i])
    if not keep_image:
        table = table.drop_columns([image_column])
    table = table.append_column(FILE_BYTES, pa.array(blobs, pa.binary()))
    return table.append_column(FILE_EXT, pa.array(exts, pa.string()))
