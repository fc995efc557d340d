"""A bounded load test of the search service on loopback: latency percentiles and queries/s.

    python -m benchmarks.search_load [--rows 2000] [--clients 8] [--queries 400]

Embeds synthetic texts with the real all-MiniLM-L6-v2 (embed_texts), builds an exact index,
serves it with rayjobs.serve_index on 127.0.0.1, then `clients` threads send `queries` text
queries in all (each a fresh query string, so nothing is cached). Writes
benchmarks/results/search_load-<time>.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks import models, synthetic
from benchmarks.report import publish_result

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(rows: int, work: Path) -> Path:
    import rayjobs

    source = synthetic.write_texts(work / "texts.parquet", rows)
    common = ["runtime.progress_bars=false", "job.overwrite=true"]
    embed = [
        f"input.path={source}",
        "input.id_column=id",
        f"output.path={work / 'emb'}",
        "model=minilm_offline",
    ]
    rayjobs.run(rayjobs.compose("embed_texts", [*embed, *common]))
    index = work / "index"
    overrides = [f"input.path={work / 'emb'}", f"index.path={index}", "index.overwrite=true"]
    rayjobs.run(rayjobs.compose("build_index", [*overrides, "runtime.progress_bars=false"]))
    return index


def load(url: str, clients: int, queries: int, k: int) -> dict:
    texts = synthetic.texts(queries, seed=11, max_words=12)

    def one(text: str) -> float:
        started = time.perf_counter()
        query = urllib.parse.urlencode({"q": text, "k": k})
        with urllib.request.urlopen(f"{url}api/search?{query}", timeout=60) as response:
            json.loads(response.read())
            assert response.status == 200
        return (time.perf_counter() - started) * 1000

    for text in texts[: min(10, queries)]:
        one(text)  # warm-up: model load in the replica, first-request paths
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = sorted(pool.map(one, texts))
    seconds = time.perf_counter() - started
    return {
        "queries": queries,
        "clients": clients,
        "k": k,
        "qps": queries / seconds,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "max_ms": latencies[-1],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray
    from ray import serve

    import rayjobs
    from rayjobs.serve_index import start

    work = models.CACHE / f"work-search-{args.rows}"
    index = build(args.rows, work)
    cfg = rayjobs.compose("serve_index", [f"index.path={index}", f"http.port={_free_port()}"])
    url = start(cfg)
    try:
        figures = load(url, args.clients, args.queries, args.k)
    finally:
        serve.shutdown()
        ray.shutdown()
    result = {
        "job": "search_load",
        "model": "all-MiniLM-L6-v2",
        "device": f"CPU ({os.cpu_count()} cores)",
        "rows": args.rows,
        "index": "flat",
        "figures": figures,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    publish_result(result, args.json)
    return result


if __name__ == "__main__":
    main()
