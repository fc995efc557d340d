"""dedup at scale: rows/s of the whole job, against faiss alone (the ceiling), in one run.

    python -m benchmarks.dedup [--rows 100000] [--dim 384] [--fraction 0.2] [key=value ...]

Writes clustered synthetic vectors (cosine ~0.5 inside a cluster) with planted near-duplicate
groups of 2..6 rows (about `fraction` of the rows are copies, cosine ~0.99 to their base) as an
embedding job's output (8 Parquet files), runs `rayjobs.dedup` on a fresh local Ray, then builds
the same index in this process with faiss and range-searches every row (train + add + search: what
no Ray plumbing can beat). Reports both rates and how many planted groups kept exactly one row.
Writes benchmarks/results/dedup-<device>-<time>.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from benchmarks import models
from benchmarks.report import publish_result
from benchmarks.synthetic import plant_duplicates, write_embeddings


def synthetic(rows: int, dim: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """About `rows` vectors (bases around 1,000 centres, then the planted copies) and their groups."""
    rng = np.random.default_rng(5)
    bases = int(rows / (1 + fraction))
    centres = rng.normal(size=(1000, dim))
    spread = centres[rng.integers(0, 1000, bases)] + rng.normal(size=(bases, dim))
    return plant_duplicates(spread, fraction=fraction, seed=6)


def faiss_ceiling(vectors: np.ndarray, index_config: dict, threshold: float) -> dict:
    """Train, fill and range-search the index dedup would choose, in this process: (seconds, pairs)."""
    import faiss

    from rayjobs.index.duplicate_search import range_pairs
    from rayjobs.index.index_files import empty_index, prepare_vectors
    from rayjobs.index.index_spec import choose_index

    started = time.perf_counter()
    spec = choose_index({**index_config, "normalize": True}, len(vectors), vectors.shape[1])
    unit = prepare_vectors(vectors, spec)
    index = empty_index(spec)
    if not index.is_trained:
        sample = np.random.default_rng(0).choice(len(unit), min(len(unit), 39 * spec.nlist), replace=False)
        index.train(unit[sample])
    index.add_with_ids(unit, np.arange(len(unit), dtype=np.int64))
    if spec.nprobe:
        faiss.extract_index_ivf(index).nprobe = spec.nprobe
    built = time.perf_counter()
    left, _ = range_pairs(index, unit, np.arange(len(unit)), threshold)
    done = time.perf_counter()
    return {
        "kind": spec.kind,
        "build_s": round(built - started, 3),
        "search_s": round(done - built, 3),
        "rows_per_s": round(len(unit) / (done - started), 1),
        "search_rows_per_s": round(len(unit) / (done - built), 1),
        "pairs": int(len(left)),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("overrides", nargs="*", help="dedup overrides, e.g. index.kind=flat")
    args = parser.parse_intermixed_args(argv)
    import ray

    import rayjobs
    from rayjobs.pipeline.cli import setup_logging

    setup_logging()  # the job's progress and summary lines, as the CLI prints them
    work = models.CACHE / f"work-dedup-{args.rows}-{args.dim}"
    shutil.rmtree(work, ignore_errors=True)
    vectors, group = synthetic(args.rows, args.dim, args.fraction)
    write_embeddings(work / "emb", vectors, files=8)
    (work / "emb" / "_SUCCESS").write_text("")
    overrides = [
        f"input.path={work / 'emb'}",
        f"output.path={work / 'out'}",
        "runtime.progress_bars=false",
        *args.overrides,
    ]
    cfg = rayjobs.compose("dedup", overrides)
    started = time.perf_counter()
    result = rayjobs.run(cfg)  # starts its own local Ray, as `python -m rayjobs.dedup` does
    whole = time.perf_counter() - started
    ray.shutdown()
    kept = result.to_pandas()["id"].str.removeprefix("item-").astype(int).to_numpy()
    per_group = np.bincount(group[kept], minlength=group.max() + 1)
    ceiling = faiss_ceiling(vectors, dict(cfg.index), float(cfg.dedup.threshold))
    report = {
        "job": "dedup",
        "device": f"CPU ({os.cpu_count()} cores)",
        "rows": len(vectors),
        "dim": args.dim,
        "planted_groups": int((np.bincount(group) > 1).sum()),
        "figures": {
            "job_rows_per_s": round(len(vectors) / result.seconds, 1),
            "job_wall_s": round(result.seconds, 3),
            "process_rows_per_s": round(len(vectors) / whole, 1),  # Ray start included
            "faiss_rows_per_s": ceiling["rows_per_s"],
            "faiss_search_rows_per_s": ceiling["search_rows_per_s"],
            "faiss": ceiling,
            "dedup": result.stats["dedup"],
            "groups_with_one_kept_row": round(float((per_group == 1).mean()), 5),
        },
        "ratios": {"job_over_faiss": round(len(vectors) / result.seconds / ceiling["rows_per_s"], 3)},
        "overrides": args.overrides,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    publish_result(report, args.json)
    print(json.dumps(report["figures"]["dedup"]))
    return report


if __name__ == "__main__":
    main()
