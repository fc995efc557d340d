"""Paths on local disk or any fsspec URL (s3://...), and writes that are all-or-nothing."""

from __future__ import annotations

import io
import posixpath
import uuid
from collections.abc import Mapping
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq


def filesystem(path: str, storage_options: Mapping[str, Any] | None = None):
    """(fsspec filesystem, path inside it) for a local path or URL."""
    fs, inner = fsspec.core.url_to_fs(str(path), **dict(storage_options or {}))
    return fs, inner.rstrip("/") or inner


def is_local(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def join(*parts: str) -> str:
    return posixpath.join(*parts)


def write_bytes(fs, path: str, data: bytes) -> None:
    """Readers see the whole file or none of it: rename on local disk; object-store PUTs are atomic."""
    if is_local(fs):
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with fs.open(tmp, "wb") as handle:
            handle.write(data)
        fs.mv(tmp, path)
    else:
        with fs.open(path, "wb") as handle:
            handle.write(data)


def write_parquet(fs, path: str, table: pa.Table, compression: str = "zstd") -> None:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression=compression)
    write_bytes(fs, path, buffer.getvalue())


def read_text(fs, path: str) -> str | None:
    """The file's text, or None when it does not exist."""
    try:
        with fs.open(path, "rb") as handle:
            return handle.read().decode()
    except FileNotFoundError:
        return None
