"""source_files: a kept row's input image becomes its file output as it came; others deliver none."""

import io

import pyarrow as pa
import pytest
from PIL import Image

from operators.file_outputs import FILE_BYTES, FILE_EXT
from operators.image.source_files import image_extension, source_files
from operators.row_errors import ERROR, FILTERED
from tests.integration.inputs import jpeg

pytestmark = pytest.mark.timeout(30)


def encoded(format: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), "red").save(buffer, format=format)
    return buffer.getvalue()


def test_extension_comes_from_the_header():
    assert [image_extension(encoded(f)) for f in ("JPEG", "PNG", "WEBP", "GIF")] == [
        "jpg",
        "png",
        "webp",
        "gif",
    ]


def test_kept_rows_carry_their_bytes_errored_and_filtered_rows_none():
    table = pa.table(
        {
            "id": ["a", "b", "c"],
            "image": pa.array([jpeg(1), b"broken", encoded("PNG")], pa.binary()),
            ERROR: pa.array([None, "not an image", None], pa.string()),
            FILTERED: pa.array([None, None, "clip_score 3 < 20"], pa.string()),
        }
    )
    out = source_files(table, image_column="image")
    assert out[FILE_BYTES].to_pylist() == [jpeg(1), None, None]
    assert out[FILE_EXT].to_pylist() == ["jpg", None, None] and "image" not in out.column_names
    assert "image" in source_files(table, image_column="image", keep_image=True).column_names
