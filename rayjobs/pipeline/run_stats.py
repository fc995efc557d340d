"""Figures a run reports about itself: Ray Data's per-stage summaries, package versions."""

from __future__ import annotations

import re
from typing import Any


def pa_sum(column) -> int:
    import pyarrow.compute as pc

    return pc.sum(column).as_py() or 0


def stage_summaries(dataset) -> list[dict[str, Any]]:
    """Per operator: Ray Data's one-line summary and its throughput while it ran (rows/s)."""
    stages = []
    for block in re.split(r"^(?=Operator \d+ )", dataset.stats(), flags=re.MULTILINE):
        head = re.match(r"Operator \d+ (?P<name>.+?): (?P<summary>.+)$", block, re.MULTILINE)
        if not head:
            continue
        rate = re.search(r"Ray Data throughput: (?P<rate>[\d.]+) rows/s", block)
        stages.append(
            {
                "name": head["name"],
                "summary": head["summary"],
                "rows_per_s": float(rate["rate"]) if rate else None,
            }
        )
    return stages


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("rayjobs", "ray", "torch", "transformers", "pyarrow"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
