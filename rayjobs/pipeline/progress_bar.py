"""In a notebook, a running job shows one progress bar (rows, rows/s, ETA) instead of log lines."""

from __future__ import annotations

import sys
import warnings
from typing import Any


def in_notebook() -> bool:
    """True inside a Jupyter kernel (not a terminal IPython, not a script)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return type(shell).__name__ == "ZMQInteractiveShell"


class ProgressBar:
    """tqdm's notebook bar (its text bar where ipywidgets is missing) over a job's input rows."""

    def __init__(self, name: str, total: int, done: int) -> None:
        with warnings.catch_warnings():  # tqdm.auto warns when it falls back to the text bar
            warnings.simplefilter("ignore")
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=done, desc=name, unit="rows", dynamic_ncols=True)

    def update(self, done: int, outputs: dict[str, Any]) -> None:
        self.bar.n = done
        self.bar.set_postfix(errors=outputs["errors"], filtered=outputs["filtered"], refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
