"""WebDataset tar shards (img2dataset's format): `input.path` a folder of .tar files, one tar, or a
brace pattern (`shards/data-{00000..00099}.tar`); local or fsspec URLs.

A tar is one input row, and its samples its children (operators/fan_out.py): the driver only
lists the tars (a tar has no index to count its samples by), the read task reads one tar and
fans it out. A sample is the members sharing a key (`<key>.jpg`, `<key>.txt`, `<key>.json`):
`__key__` becomes its id, the first of jpg / jpeg / png / webp its image bytes, txt its text
and json its json. A tar cut short keeps the samples before the cut and records the cut as one
error row; a corrupt image is the decode stage's error row, like any image file.
"""

from __future__ import annotations

import logging
import posixpath
import re
import tarfile
from itertools import product

import pyarrow as pa

from operators.fan_out import fan_out
from operators.row_errors import describe
from rayjobs.config.config_error import ConfigError
from rayjobs.io.shards import InputPlan, ReadOptions, Shard, hidden, shard_table, with_read_errors
from rayjobs.io.storage import filesystem

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
TEXT_FIELDS = {"txt": "text", "json": "json"}  # member extension -> column
_BRACES = re.compile(r"\{([^{}]*)\}")
log = logging.getLogger("rayjobs")


def expand_braces(pattern: str) -> list[str]:
    """`a-{000..002}.tar` -> a-000.tar, a-001.tar, a-002.tar; `{x,y}` lists; several braces multiply."""
    pieces = _BRACES.split(pattern)
    choices = []
    for number, piece in enumerate(pieces):
        if number % 2 == 0:
            choices.append([piece])
            continue
        span = re.fullmatch(r"(\d+)\.\.(\d+)", piece)
        if span:
            first, last = span.groups()
            width = len(first) if first.startswith("0") else 0
            step = 1 if int(last) >= int(first) else -1
            choices.append([str(i).zfill(width) for i in range(int(first), int(last) + step, step)])
        else:
            choices.append(piece.split(","))
    return ["".join(parts) for parts in product(*choices)]


def plan(fs, root: str, spec) -> InputPlan:
    """One shard per tar (each tar one input row); the tars sorted by path."""
    if "{" in root:
        named = expand_braces(root)
        tars = [path for path in named if fs.exists(path)]
        if 0 < len(tars) < len(named):  # img2dataset leaves out shards that failed: go on, say so
            log.warning(
                "webdataset: %d of the %d shards %s names are missing",
                len(named) - len(tars),
                len(named),
                root,
            )
        base = posixpath.dirname(root.split("{", 1)[0])
    elif fs.isdir(root):
        tars = sorted(p for p in fs.find(root) if p.lower().endswith(".tar") and not hidden(p, root))
        base = root
    else:
        tars, base = [root], posixpath.dirname(root)
    if not tars:
        raise ConfigError("input.path", f"no .tar shards at {spec.path!r}")
    files = tuple(posixpath.relpath(tar, base) for tar in tars)
    shards = [Shard(i, 1, files=(name,)) for i, name in enumerate(files)]
    return InputPlan(base, shards, None, len(tars))


def read(shard: Shard, options: ReadOptions) -> pa.Table:
    """One tar's samples: _shard, _row, id (`__key__`), parent_id (the tar), the image bytes
    (`input.image_column`), text, json, error columns."""
    spec = options.input
    fs, _ = filesystem(spec.path, spec.storage_options)
    name = shard.files[0]
    samples, failure = read_samples(fs, posixpath.join(options.root, name))
    table = shard_table(shard, pa.array([name], pa.string()))
    if not samples:  # nothing read: the tar itself is the error row
        return _add_fields(with_read_errors(table, [failure or "the tar holds no samples"]), [{}], spec)
    rows = [*samples, *([{}] if failure else [])]  # a cut-short tar: one more child, its error
    table = fan_out(table, [len(rows)])
    keys = [row.get("__key__", name) for row in rows]
    table = table.set_column(table.schema.get_field_index("id"), "id", pa.array(keys, pa.string()))
    reasons = [None] * len(samples) + ([failure] if failure else [])
    return _add_fields(with_read_errors(table, reasons), rows, spec)


def read_samples(fs, path: str) -> tuple[list[dict], str | None]:
    """The tar's samples in order (members grouped by key), and why reading stopped early or None."""
    samples: dict[str, dict] = {}
    try:
        with fs.open(path, "rb") as handle, tarfile.open(fileobj=handle, mode="r|*") as tar:
            for member in tar:  # streamed: one pass, no seeks (object stores read it once)
                if not member.isfile():
                    continue
                folder, base = posixpath.split(member.name)
                stem, _, extension = base.partition(".")
                key = posixpath.join(folder, stem) if folder else stem
                samples.setdefault(key, {"__key__": key})[extension.lower()] = tar.extractfile(member).read()
            end = tar.offset  # after the last member: a whole tar has its end marker (1,024 zeros) next
        if fs.size(path) - end < 1024:  # cut between members: tarfile just stops, so tell it here
            raise EOFError("no end-of-archive marker")
    except Exception as error:  # a truncated or corrupt tar: keep what came before
        return list(samples.values()), f"tar cut short after {len(samples)} samples: {describe(error)}"
    return list(samples.values()), None


def _add_fields(table: pa.Table, rows: list[dict], spec) -> pa.Table:
    """The image bytes (the first image extension a sample has) and the text fields as columns."""
    images = [next((row[ext] for ext in IMAGE_EXTENSIONS if ext in row), None) for row in rows]
    table = table.append_column(spec.image_column, pa.array(images, pa.binary()))
    for extension, column in TEXT_FIELDS.items():
        values = [row[extension].decode("utf-8", "replace") if extension in row else None for row in rows]
        table = table.append_column(column, pa.array(values, pa.string()))
    return table
