"""File outputs: a stage puts a row's artefact (encoded image bytes) in FILE_BYTES and its file
extension in FILE_EXT; the writer stores it under `<output.path>/files/` at a name derived
from the row id alone, so a retry or a re-run replaces the file instead of adding one.

A stage may add side files too (a thumbnail of each image): `side_file_columns(name)` are their
bytes and extension columns; the writer stores them under `<output.path>/<name>/`, for kept and
filtered rows alike (a report shows what a filter removed), with their paths in column `name`."""

from __future__ import annotations

import re

FILE_BYTES = "_file_bytes"
FILE_EXT = "_file_ext"
FILES_DIR = "files"
SIDE_BYTES = "_side_bytes:"  # + the side file's name, e.g. "_side_bytes:thumbnail_256"
SIDE_EXT = "_side_ext:"
_SAFE = re.compile(r"[A-Za-z0-9._@=+-]")


def side_file_columns(name: str) -> tuple[str, str]:
    """(bytes column, extension column) of side file `name`."""
    return SIDE_BYTES + name, SIDE_EXT + name


def side_file_names(columns: list[str]) -> list[str]:
    """The side files a table carries."""
    return [column.removeprefix(SIDE_BYTES) for column in columns if column.startswith(SIDE_BYTES)]


def file_name(row_id: str, ext: str, folder: str = FILES_DIR) -> str:
    """`<folder>/<escaped id>.<ext>`: one name per id (injective), safe on disk and in object stores.

    Characters outside [A-Za-z0-9._@=+-] become ~XX (their UTF-8 bytes), '/' keeps the id's
    folders, and empty, '.' or '..' segments are escaped so a name never leaves files/.
    """
    segments = []
    for segment in str(row_id).split("/"):
        escaped = "".join(c if _SAFE.fullmatch(c) else _escape(c) for c in segment)
        if escaped in ("", ".", ".."):
            escaped = "".join(_escape(c) for c in segment) or "~"
        segments.append(escaped)
    return f"{folder}/{'/'.join(segments)}.{ext.lstrip('.')}"


def _escape(char: str) -> str:
    return "".join(f"~{byte:02X}" for byte in char.encode())
