"""Status polling against the Batch API on loopback: requests/s and latency under many clients.

    python -m benchmarks.batch_api_load [--clients 50] [--seconds 10]

Starts `python -m rayjobs.serve_batches` on 127.0.0.1 over a temporary storage folder, creates
one batch per client (each fails validation at once, so no job competes for the CPUs), then
`clients` threads, each on its own keep-alive connection with an API key, GET their batch as
fast as they can for `seconds`. Client and server share this machine's cores. Writes
benchmarks/results/batch_api_load-<time>.json and prints it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from benchmarks.report import publish_result

KEY = "bench-key"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(
    conn: http.client.HTTPConnection, method: str, path: str, body: bytes = b"", kind: str = ""
) -> dict:
    headers = {"Authorization": f"Bearer {KEY}"}
    if kind:
        headers["Content-Type"] = kind
    conn.request(method, path, body=body or None, headers=headers)
    answer = conn.getresponse()
    data = answer.read()
    if answer.status != 200:
        raise RuntimeError(f"{method} {path}: {answer.status} {data[:200]!r}")
    return json.loads(data)


def _batch(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    boundary = uuid.uuid4().hex
    form = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.jsonl"\r\n\r\n'
        f"not a request\r\n--{boundary}--\r\n"
    ).encode()
    file = _request(conn, "POST", "/v1/files", form, f"multipart/form-data; boundary={boundary}")
    body = {"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    return _request(conn, "POST", "/v1/batches", json.dumps(body).encode(), "application/json")["id"]


def load(port: int, clients: int, seconds: float) -> dict:
    ids = [_batch(port) for _ in range(clients)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    start = threading.Barrier(clients + 1)  # every client starts at once
    stop_at = [0.0]  # set by the main thread just before it passes the barrier

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        start.wait()
        while time.monotonic() < stop_at[0]:
            began = time.perf_counter()
            _request(conn, "GET", f"/v1/batches/{ids[k]}")
            latencies[k].append(time.perf_counter() - began)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.monotonic() + seconds
    began = time.monotonic()
    start.wait()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - began
    every = sorted(x for mine in latencies for x in mine)
    return {
        "clients": clients,
        "requests": len(every),
        "requests_per_s": round(len(every) / wall, 1),
        "latency_ms": {
            "p50": round(1000 * statistics.median(every), 2),
            "p99": round(1000 * every[int(0.99 * (len(every) - 1))], 2),
            "max": round(1000 * every[-1], 2),
        },
        "seconds": round(wall, 2),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="batch-load-") as storage:
        service = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rayjobs.serve_batches",
                f"storage.path={storage}",
                f"http.port={port}",
                f"api_keys=[{KEY}]",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or service.poll() is not None:
                        raise RuntimeError("serve_batches did not start") from None
                    time.sleep(0.3)
            figures = load(port, args.clients, args.seconds)
        finally:
            service.terminate()
            service.wait(timeout=30)
    result = {
        "job": "batch_api_load",
        "device": f"CPU ({os.cpu_count()} cores, client and server together)",
        "endpoint": "GET /v1/batches/{id}",
        "figures": figures,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    publish_result(result, args.json)
    return result


if __name__ == "__main__":
    main()
