"""A folder of image files: shards are runs of `input.shard_rows` files; a row's id is its path
under `input.path`, its bytes are fetched concurrently inside the read task."""

from __future__ import annotations

import posixpath
from typing import Any

import pyarrow as pa

from operators.row_errors import describe
from rayjobs.config.config_error import ConfigError
from rayjobs.io.shards import InputPlan, ReadOptions, Shard, hidden, shard_table, with_read_errors
from rayjobs.io.storage import filesystem, is_transient, read_bytes

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def plan(fs, root: str, spec) -> InputPlan:
    extensions = spec.extensions or EXTENSIONS
    if fs.isdir(root):
        found = sorted(p for p in fs.find(root) if p.lower().endswith(extensions) and not hidden(p, root))
        files = [posixpath.relpath(p, root) for p in found]
    else:
        root, files = posixpath.dirname(root), [posixpath.basename(root)]
    if not files:
        raise ConfigError("input.path", f"no image files ({', '.join(extensions)}) under {spec.path!r}")
    step = spec.shard_rows
    chunks = [files[start : start + step] for start in range(0, len(files), step)]
    return InputPlan(
        root, [Shard(i, len(chunk), files=tuple(chunk)) for i, chunk in enumerate(chunks)], None, len(files)
    )


def read(shard: Shard, options: ReadOptions) -> pa.Table:
    spec = options.input
    fs, _ = filesystem(spec.path, spec.storage_options)
    paths = [posixpath.join(options.root, name) for name in shard.files]
    # One call fetches the whole shard concurrently on object stores.
    fetched = fs.cat(paths, on_error="return") if len(paths) > 1 else _cat_one(fs, paths[0])
    blobs, reasons = [], []
    for path in paths:
        value = fetched.get(path, FileNotFoundError(path))
        if isinstance(value, BaseException) and is_transient(value):
            value = _cat_one(fs, path)[path]
        failed = isinstance(value, BaseException)
        blobs.append(None if failed else value)
        reasons.append(describe(value) if failed else None)
    table = shard_table(shard, pa.array(list(shard.files), pa.string()))
    table = table.append_column(spec.image_column, pa.array(blobs, pa.binary()))
    return with_read_errors(table, reasons)


def _cat_one(fs, path: str) -> dict[str, Any]:
    """{path: bytes or the exception}; transient failures are retried first."""
    try:
        return {path: read_bytes(fs, path)}
    except Exception as error:
        return {path: error}
