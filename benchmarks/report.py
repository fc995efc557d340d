"""Benchmark results: one JSON per run, one row per run in benchmarks/README.md's table."""

from __future__ import annotations

import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
TABLE_END = "<!-- results table end -->"
SHOWN_OVERRIDES = ("model.decode", "model.engine", "model.batch_tokens", "model.compile")


def write_result(result: dict, path: Path | None = None) -> Path:
    if path is None:
        device = "gpu" if "CPU" not in result["device"] else "cpu"
        path = RESULTS / f"{result['job']}-{device}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path


def publish_result(result: dict, path: Path | None = None) -> Path:
    """write_result, then print the result and where it went."""
    path = write_result(result, path)
    print(json.dumps(result, indent=2))
    print(f"result: {path}")
    return path


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if abs(value) >= 1 else f"{value:.3g}"  # 0.081 captions/s, not 0.1


def _batch(result: dict) -> str:
    """The baselines' batch size, and rayjobs' when it probed its own (auto)."""
    if result.get("rayjobs_batch_size") != "auto":
        return str(result["batch_size"])
    chosen = result["figures"].get("rayjobs_batch_size") or ["?"]
    return f"{result['batch_size']} (rayjobs auto: {', '.join(map(str, chosen))})"


def _job(result: dict) -> str:
    """The job, its unit when not rows/s, and the overrides that change what it measures."""
    unit = result.get("unit", "rows/s")
    named = [o for o in result.get("overrides", []) if o.split("=")[0] in SHOWN_OVERRIDES]
    return " ".join([result["job"], *([f"({unit})"] if unit != "rows/s" else []), *named])


def _decode(figures: dict) -> str:
    host, actor = figures.get("decode_ceiling"), figures.get("device_decode_ceiling")
    return _fmt(host) + (f" (in the actor: {_fmt(actor)})" if actor else "")


def table_row(result: dict) -> str:
    f, r = result["figures"], result["ratios"]
    cells = [
        result["time"][:10],
        _job(result),
        result["model"],
        result["device"],
        f"{result['rows']:,}",
        _batch(result),
        _fmt(f.get("model_ceiling")),
        _decode(f),
        _fmt(f.get("encode")),
        _fmt(f.get("textbook_ray")),
        _fmt(f.get("rayjobs_model_stage")),
        _fmt(f["rayjobs_e2e"]),
        _fmt(f["rayjobs_e2e_with_ray_start"]),
        " / ".join(f"{k.split('/')[1]} {v:.2f}" for k, v in r.items()),
        f"{f['peak_driver_mib']:,.0f} / {f['peak_worker_mib']:,.0f}",
    ]
    return "| " + " | ".join(cells) + " |"


def append_table_row(readme: Path, result: dict) -> None:
    text = readme.read_text()
    row = table_row(result)
    if TABLE_END in text:
        text = text.replace(TABLE_END, f"{row}\n{TABLE_END}")
    else:
        text += f"\n{row}\n"
    readme.write_text(text)


def main(paths: list[str]) -> None:
    """python -m benchmarks.report results/x.json ...: add runs measured elsewhere (a GPU machine)."""
    readme = Path(__file__).resolve().parent / "README.md"
    for path in paths:
        result = json.loads(Path(path).read_text())
        append_table_row(readme, result)
        write_result(result, RESULTS / Path(path).name)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
