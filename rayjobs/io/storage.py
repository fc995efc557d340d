"""Paths on local disk or any fsspec URL (s3://...), and writes that are all-or-nothing."""

from __future__ import annotations

import io
import posixpath
import random
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

T = TypeVar("T")
TRANSIENT_MARKERS = (
    "500",
    "502",
    "503",
    "504",
    "SlowDown",
    "Throttl",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
    "Connection reset",
    "Connection aborted",
    "timed out",
    "Temporary failure",
)
PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def is_transient(error: BaseException) -> bool:
    """Worth another try: network trouble, throttling, 5xx; never a missing or forbidden file."""
    if isinstance(error, PERMANENT):
        return False
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    name = type(error).__name__
    if any(word in name for word in ("Timeout", "Connection", "Endpoint", "Throttl", "ServerError")):
        return True
    return isinstance(error, OSError) and any(marker in str(error) for marker in TRANSIENT_MARKERS)


def retrying(call: Callable[[], T], attempts: int = 6, first_delay: float = 0.25) -> T:
    """call(), retried with jittered exponential backoff while it fails transiently."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as error:
            if attempt == attempts - 1 or not is_transient(error):
                raise
            time.sleep(first_delay * 2**attempt * (0.5 + random.random()))
    raise AssertionError("unreachable")


def filesystem(path: str, storage_options: Mapping[str, Any] | None = None):
    """(fsspec filesystem, path inside it) for a local path or URL."""
    fs, inner = fsspec.core.url_to_fs(str(path), **dict(storage_options or {}))
    return fs, inner.rstrip("/") or inner


def is_local(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def join(*parts: str) -> str:
    return posixpath.join(*parts)


def list_folder(fs, path: str) -> list[str]:
    """The files in `path` as the store has them now: s3fs would answer from a listing cached
    earlier in this process, missing what was written since (by this run or a killed one)."""
    fs.invalidate_cache(path)
    return fs.ls(path, detail=False)


def open_file(fs, path: str, size: int | None = None):
    """Open for reading; a known size saves object stores a metadata request."""
    if size and not is_local(fs):
        return fs.open(path, "rb", size=size)
    return fs.open(path, "rb")


def write_bytes(fs, path: str, data: bytes) -> None:
    """Readers see the whole file or none of it: rename on local disk; object-store PUTs are atomic."""
    retrying(lambda: _whole(fs, path, lambda target: fs.pipe_file(target, data)))


def upload_file(fs, path: str, local_path: str) -> None:
    """A local file copied to `path`, seen whole or not at all, as write_bytes; memory stays flat."""
    retrying(lambda: _whole(fs, path, lambda target: fs.put_file(local_path, target)))


def _whole(fs, path: str, write: Callable[[str], Any]) -> None:
    """`write` to `path`: on local disk to a temporary name first, then renamed."""
    if not is_local(fs):
        write(path)
        return
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    write(tmp)
    fs.mv(tmp, path)


def write_parquet(fs, path: str, table: pa.Table, compression: str = "zstd") -> None:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression=compression)
    write_bytes(fs, path, buffer.getvalue())


def read_bytes(fs, path: str) -> bytes:
    return retrying(lambda: fs.cat_file(path))


def read_text(fs, path: str) -> str | None:
    """The file's text, or None when it does not exist."""
    try:
        return read_bytes(fs, path).decode()
    except FileNotFoundError:
        return None
