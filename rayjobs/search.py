"""Search an index from the command line or a notebook.

    python -m rayjobs.search index.path=out/photos/index query="a red shoe on white" k=10
    python -m rayjobs.search index.path=out/photos/index image=query.jpg k=5

    rayjobs.search("out/photos/index", "a red shoe on white", k=10)    # -> pandas DataFrame

No Ray: the index is opened in this process (rayjobs.serve_index serves it over HTTP).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from rayjobs.config.config_error import ConfigError
from rayjobs.index.query_encoder import QueryError
from rayjobs.index.search_index import SearchIndex


@lru_cache(maxsize=4)
def open_index(path: str) -> SearchIndex:
    """Opened once per process and path: a notebook's second query skips loading."""
    return SearchIndex(path)


def search(
    index_path: str,
    query: str | None = None,
    k: int = 10,
    *,
    image: str | bytes | None = None,
    filters: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Top k items for a text query or an image (path or bytes): rank, position, id, score, metadata."""
    index = open_index(str(index_path))
    if image is not None:
        data = image if isinstance(image, bytes) else open(image, "rb").read()
        return index.search_image(data, k, filters)
    if query is None:
        raise QueryError("give a text query or an image")
    return index.search_text(query, k, filters)


def run(cfg: DictConfig) -> pd.DataFrame:
    if cfg.query is None and cfg.image is None:
        raise ConfigError("query", 'give query="some text" or image=path/to/file.jpg')
    image = _read_image(str(cfg.image)) if cfg.image is not None else None
    filters = OmegaConf.to_container(cfg.filter, resolve=True) or {}
    try:
        index = SearchIndex(str(cfg.index.path), cfg.index.get("storage_options"))
    except FileNotFoundError:
        raise ConfigError("index.path", f"{cfg.index.path!r} does not exist") from None
    if image is not None:
        return index.search_image(image, int(cfg.k), filters)
    return index.search_text(str(cfg.query), int(cfg.k), filters)


def _read_image(path: str) -> bytes:
    """The query image's bytes, read once; a missing file is a config error (before any loading)."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        raise ConfigError("image", f"cannot read {path!r}") from None


def main(argv: Sequence[str] | None = None) -> None:
    import rayjobs

    args = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(args):
        print(__doc__)
        sys.exit(0)
    try:
        results = run(rayjobs.compose("search", args))
    except ConfigError as error:
        print(f"rayjobs search: config error: {error}", file=sys.stderr)
        sys.exit(2)
    except QueryError as error:
        print(f"rayjobs search: {error}", file=sys.stderr)
        sys.exit(2)
    with pd.option_context("display.max_colwidth", 60, "display.width", 160):
        print(results.drop(columns=["position"]).to_string(index=False) if len(results) else "no results")


class _CallableModule(types.ModuleType):
    """Importing this module makes the package attribute `rayjobs.search` this module instead of
    the notebook function: calling the module calls the function, so both spellings work."""

    def __call__(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    main()
