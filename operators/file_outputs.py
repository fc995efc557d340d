"""File outputs: a stage puts a row's artefact (encoded image bytes) in FILE_BYTES and its file
extension in FILE_EXT; the writer stores it under `<output.path>/files/` at a name derived
from the row id alone, so a retry or a re-run replaces the file instead of adding one."""

from __future__ import annotations

import re

FILE_BYTES = "_file_bytes"
FILE_EXT = "_file_ext"
FILES_DIR = "files"
_SAFE = re.compile(r"[A-Za-z0-9._@=+-]")


def file_name(row_id: str, ext: str) -> str:
    """`files/<escaped id>.<ext>`: one name per id (injective), safe on disk and in object stores.

    Characters outside [A-Za-z0-9._@=+-] become ~XX (their UTF-8 bytes), '/' keeps the id's
    folders, and empty, '.' or '..' segments are escaped so a name never leaves files/.
    """
    segments = []
    for segment in str(row_id).split("/"):
        escaped = "".join(c if _SAFE.fullmatch(c) else _escape(c) for c in segment)
        if escaped in ("", ".", ".."):
            escaped = "".join(_escape(c) for c in segment) or "~"
        segments.append(escaped)
    return f"{FILES_DIR}/{'/'.join(segments)}.{ext.lstrip('.')}"


def _escape(char: str) -> str:
    return "".join(f"~{byte:02X}" for byte in char.encode())
