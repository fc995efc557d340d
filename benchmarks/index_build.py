"""build_index at scale: rows/s, and recall@10 of the index it chose against exact search.

    python -m benchmarks.index_build [--rows 1000000] [--dim 64] [--clusters 1000] [key=value ...]

Writes clustered synthetic vectors as an embedding job's output (8 Parquet files), builds the
index on a fresh local Ray, then searches 200 perturbed rows with the index and with numpy.
Writes benchmarks/results/build_index-<device>-<time>.json and prints it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np

from benchmarks import models
from benchmarks.report import publish_result
from benchmarks.synthetic import clustered, write_embeddings


def recall_at_10(index, vectors: np.ndarray, queries: int = 200) -> tuple[float, float]:
    """(recall@10 against exact inner-product search, ms per query in one batch)."""
    rng = np.random.default_rng(7)
    picked = vectors[rng.choice(len(vectors), queries, replace=False)]
    noisy = picked + 0.1 * rng.normal(size=picked.shape)
    noisy = (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    exact = np.argsort(-(noisy @ unit.T), axis=1)[:, :10]
    started = time.perf_counter()
    _, found = index.index.search(noisy, 10)
    per_query = (time.perf_counter() - started) * 1000 / queries
    recall = float(np.mean([len(set(a) & set(e)) / 10 for a, e in zip(found, exact, strict=True)]))
    return recall, per_query


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    parser.add_argument("overrides", nargs="*", help="build_index overrides, e.g. index.kind=ivfpq")
    args = parser.parse_intermixed_args(argv)
    import rayjobs
    from rayjobs.index.search_index import SearchIndex

    work = models.CACHE / f"work-index-{args.rows}-{args.dim}"
    shutil.rmtree(work, ignore_errors=True)
    vectors = clustered(args.rows, args.dim, args.clusters, seed=5)
    write_embeddings(work / "emb", vectors, files=8)
    overrides = [f"input.path={work / 'emb'}", "runtime.progress_bars=false", *args.overrides]
    result = rayjobs.run(rayjobs.compose("build_index", overrides))
    index = SearchIndex(str(work / "emb" / "index"))
    recall, per_query = recall_at_10(index, vectors)
    report = {
        "job": "build_index",
        "device": f"CPU ({os.cpu_count()} cores)",
        "rows": args.rows,
        "dim": args.dim,
        "spec": index.spec.as_dict(),
        "figures": {**result.stats, "recall_at_10": recall, "ms_per_query_batched": per_query},
        "overrides": args.overrides,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    publish_result(report, args.json)
    return report


if __name__ == "__main__":
    main()
