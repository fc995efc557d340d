"""report.html of an image job: a contact sheet of every kept, filtered and errored row.

The driver writes it from the output folders once the rows are all written, before _SUCCESS:
one HTML file holding the rows' small columns (ids, texts, scores, outcome, reason) as JSON, and
links (relative to the output folder) to thumbnails or files, so opening it loads only the
images of the page on screen. Over `max_rows` rows, whole Parquet files are sampled evenly and
the page says so: a 10-million-image output still gives a report that opens in a second.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from importlib import resources
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rayjobs.io.storage import join, list_folder, write_bytes

REPORT = "report.html"
OUTCOMES = {"data": "kept", "filtered": "filtered", "errors": "errored"}
TEXT_CHARS = 300  # longer texts (prompts) are cut: the report is for looking, data/ has them whole


@dataclass(frozen=True)
class ContactSheet:
    """What a job's report shows: the first of `image` (path columns) a row has (beside the first
    of `before`, when given), the `text` columns under it, and every numeric column as a score to
    sort by."""

    image: Sequence[str] = ("path",)
    text: Sequence[str] = ()
    max_rows: int = 100_000
    before: Sequence[str] = ()  # an edit job's input images: shown left of `image` (before / after)


def write_report(fs, root: str, sheet: ContactSheet, title: str) -> dict[str, Any]:
    """Writes <root>/report.html; returns what it shows ({"rows", "shown", "columns"})."""
    tables, total = [], 0
    with ThreadPoolExecutor(16) as pool:  # footers and reads of remote files: latency-bound
        for folder, outcome in OUTCOMES.items():
            files = _parquet_files(fs, join(root, folder))
            counts = list(pool.map(lambda file: _num_rows(fs, file), files))
            total += sum(counts)
            tables.append((outcome, files, counts))
        share = sheet.max_rows / max(total, 1)
        rows: list[dict[str, Any]] = []
        for outcome, files, counts in tables:
            for part in pool.map(partial(_rows, fs, outcome=outcome), _sample(files, counts, share)):
                rows.extend(part)
    columns = _columns(rows, sheet)
    payload = {
        "title": title,
        "rows": total,
        "shown": len(rows),
        "image": list(sheet.image),
        "before": list(sheet.before),
        "text": list(sheet.text),
        "columns": columns,
        "data": [[row.get(name) for name in columns] for row in rows],
    }
    data = json.dumps(payload, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    page = _template().replace("{{TITLE}}", html.escape(title)).replace("{{DATA}}", data)
    write_bytes(fs, join(root, REPORT), page.encode())
    return {"rows": total, "shown": len(rows), "columns": columns}


def _parquet_files(fs, folder: str) -> list[str]:
    if not fs.exists(folder):
        return []
    return sorted(name for name in list_folder(fs, folder) if name.endswith(".parquet"))


def _num_rows(fs, file: str) -> int:
    with fs.open(file, "rb") as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def _sample(files: list[str], counts: list[int], share: float) -> list[str]:
    """Every file when they all fit, else evenly spaced ones holding about `share` of the rows."""
    if share >= 1:
        return files
    keep, owed = [], 0.0
    for file, count in zip(files, counts, strict=True):
        owed += count * share
        if owed >= count / 2:
            keep.append(file)
            owed -= count
    return keep


def _rows(fs, file: str, outcome: str) -> list[dict[str, Any]]:
    with fs.open(file, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        wanted = [field.name for field in parquet.schema_arrow if _scalar(field.type)]  # no vectors
        rows = parquet.read(columns=wanted).to_pylist()
    for row in rows:
        row["outcome"] = outcome
        for name, value in row.items():
            if isinstance(value, float):
                row[name] = None if not math.isfinite(value) else float(f"{value:.5g}")
            elif isinstance(value, str) and len(value) > TEXT_CHARS:
                row[name] = value[: TEXT_CHARS - 1] + "…"
    return rows


def _scalar(kind: pa.DataType) -> bool:
    return (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
    )


def _columns(rows: list[dict[str, Any]], sheet: ContactSheet) -> list[str]:
    """id, outcome, reason first, then every other column in the order first seen."""
    seen = dict.fromkeys(["id", "outcome", "reason", *sheet.before, *sheet.image, *sheet.text])
    for row in rows:
        seen.update(dict.fromkeys(row))
    return [name for name in seen if any(name in row for row in rows) or name in ("id", "outcome")]


def _template() -> str:
    return resources.files("rayjobs.report").joinpath("contact_sheet.html").read_text()
