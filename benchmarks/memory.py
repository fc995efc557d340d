"""Peak resident memory of this process and of Ray's worker processes, sampled from /proc."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's own peak resident set, in MiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0.0


def ray_worker_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if command.startswith(b"ray::") or b"default_worker.py" in command:
                pids.append(int(entry.name))
    return pids


class PeakMemory:
    """Context manager: .driver_mb and .worker_mb (largest single worker) peaks while inside."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.worker_peaks: dict[int, float] = {}
        self.driver_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @property
    def worker_mb(self) -> float:
        return max(self.worker_peaks.values(), default=0.0)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for pid in ray_worker_pids():
                self.worker_peaks[pid] = max(self.worker_peaks.get(pid, 0.0), peak_rss_mb(pid))
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.driver_mb = peak_rss_mb(os.getpid())
