"""WebDataset tar shards of the kept rows (`output=webdataset`): each sample is `<key>.<ext>` (the
image as the job encoded it) and `<key>.json` (the row's small columns, its original id among
them), packed into tars of at most `output.tar_size_mb` and `output.tar_samples`.

Tars are named `tars/<Parquet part name without .parquet>-<nnnn>.tar`: the shard, the write
batch's first (row, child) and the run id, then the tar's number within that batch. So the
output folder's cleanup (remove_shard_files) finds the tars of an unfinished shard or of a
killed run exactly as it finds their Parquet parts, and a retried write task writes the same
names. A tar is built in memory and written whole (temp file and rename on local disk, one PUT
on an object store): a kill mid-write leaves no partial tar under a kept name.
"""

from __future__ import annotations

import datetime
import decimal
import io
import json
import math
import posixpath
import re
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from rayjobs.io.storage import join, write_bytes

TARS_DIR = "tars"
WEBDATASET = "webdataset"  # output.format
TAR_KEY = "tar_key"  # data/ column: the sample's key inside the tar its `path` names
_KEY_SAFE = re.compile(r"[A-Za-z0-9_@=+-]")
_BLOCK = 512  # a tar member is a header block plus its data padded to whole blocks
_RECORD = 20 * _BLOCK  # tarfile pads the archive (end marker included) to whole records
_MTIME = 946684800  # 2000-01-01: fixed, so a retried write makes the same bytes


@dataclass(frozen=True)
class Sample:
    key: str
    ext: str  # the image's extension: jpg, png, webp
    image: bytes
    meta: bytes  # the row as JSON


def sample_key(row_id: Any) -> str:
    """The WebDataset key of a row id: every character outside [A-Za-z0-9_@=+-] (dots and
    slashes too, which WebDataset splits on) becomes ~XX, its UTF-8 bytes. One key per id
    (injective: '~' itself is escaped), the same on every run; the empty id is '~'."""
    text = str(row_id)
    return "".join(c if _KEY_SAFE.fullmatch(c) else _escape(c) for c in text) or "~"


def id_of_key(key: str) -> str:
    """The row id a key was made from (sample_key's inverse)."""
    if key == "~":
        return ""
    return re.sub(r"(?:~[0-9A-F]{2})+", lambda run: bytes.fromhex(run[0].replace("~", "")).decode(), key)


def _escape(char: str) -> str:
    return "".join(f"~{byte:02X}" for byte in char.encode())


def sample_json_columns(schema: pa.Schema, names: Sequence[str]) -> list[str]:
    """The columns of `names` that go into a sample's JSON: not binary (the image travels
    as its own member) and not tensors (fixed-size lists: pixels, embeddings)."""
    return [name for name in names if name in schema.names and _small(schema.field(name).type)]


def _small(kind: pa.DataType) -> bool:
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return False
    if pa.types.is_fixed_size_list(kind):
        return False
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _small(kind.value_type)
    if pa.types.is_struct(kind):
        return all(_small(field.type) for field in kind)
    return True


def json_safe(value: Any) -> Any:
    """`value` (from Arrow's to_pylist) as plain JSON: NaN and infinities null, times ISO 8601,
    decimals as strings, anything else unknown as its str()."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return str(value)


def row_json(row: dict[str, Any]) -> bytes:
    return json.dumps(json_safe(row), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def member_size(name: str, data: int) -> int:
    """Bytes a member takes in a tar: a header, the data in whole blocks, and for a name over
    100 bytes a PAX header of its own (a header and the `<length> path=<name>` record)."""
    pax = _BLOCK + _blocks(len(name.encode()) + 20) if len(name.encode()) > 100 else 0
    return _BLOCK + _blocks(data) + pax


def _blocks(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


def pack(samples: Sequence[Sample], max_bytes: int | None, max_samples: int | None) -> list[list[Sample]]:
    """Samples in order, cut into tars of at most `max_bytes` (a sample larger than that alone
    in its tar: samples are never split) and `max_samples` each."""
    tars: list[list[Sample]] = []
    size = 0
    for sample in samples:
        grows = member_size(f"{sample.key}.{sample.ext}", len(sample.image))
        grows += member_size(f"{sample.key}.json", len(sample.meta))
        whole = -(-(size + grows + 2 * _BLOCK) // _RECORD) * _RECORD  # the end marker, records padded
        full = tars and (
            (max_bytes is not None and whole > max_bytes)
            or (max_samples is not None and len(tars[-1]) >= max_samples)
        )
        if not tars or full:
            tars.append([])
            size = 0
        tars[-1].append(sample)
        size += grows
    return tars


def tar_bytes(samples: Sequence[Sample]) -> bytes:
    """One tar: `<key>.<ext>` then `<key>.json` per sample, in order; fixed metadata, so the
    same samples always give the same bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for sample in samples:
            for ext, data in ((sample.ext, sample.image), ("json", sample.meta)):
                info = tarfile.TarInfo(f"{sample.key}.{ext}")
                info.size, info.mtime, info.mode = len(data), _MTIME, 0o644
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def tar_name(prefix: str, number: int) -> str:
    """`tars/<prefix>-<nnnn>.tar`; `prefix` is the batch's Parquet part name without .parquet."""
    return f"{TARS_DIR}/{prefix}-{number:04d}.tar"


def write_tars(
    fs, root: str, prefix: str, samples: Sequence[Sample], max_bytes: int | None, max_samples: int | None
) -> list[str]:
    """Write `samples` as tars named from `prefix`; returns each sample's tar (relative to
    `root`). Tars of this prefix numbered past the last one written (an earlier try of this
    write that cut its samples differently) are deleted, so no sample is in two tars."""
    names: list[str] = []
    tars = pack(samples, max_bytes, max_samples)
    for number, group in enumerate(tars):
        name = tar_name(prefix, number)
        write_bytes(fs, join(root, name), tar_bytes(group))
        names.extend([name] * len(group))
    _remove_beyond(fs, root, prefix, len(tars))
    return names


def _remove_beyond(fs, root: str, prefix: str, count: int) -> None:
    pattern = join(root, TARS_DIR, f"{prefix}-*.tar")
    fs.invalidate_cache(join(root, TARS_DIR))  # s3fs may answer from a listing made before the writes
    stale = [
        path
        for path in fs.glob(pattern)
        if (number := posixpath.basename(path).removesuffix(".tar").rsplit("-", 1)[-1]).isdigit()
        and int(number) >= count
    ]
    if stale:
        fs.rm(stale)
