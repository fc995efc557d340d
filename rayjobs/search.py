"""Search an index from the command line or a notebook.

    python -m rayjobs.search index.path=out/photos/index query="a red shoe on white" k=10
    python -m rayjobs.search index.path=out/photos/index image=query.jpg k=5
    python -m rayjobs.search index.path=out/videos/index query="a goal" collapse=video  # one per video

    rayjobs.search("out/photos/index", "a red shoe on white", k=10)    # -> pandas DataFrame
    rayjobs.search("out/videos/index", image="frame.png", k=5, collapse="video")

An index of video frames (embed_videos) answers with each frame's video, t_start and t_end
(seconds) and score; `collapse=<column>` keeps only the best-scoring row per value of a metadata
column (still k rows when the index holds k values), e.g. one row per video.

A text query longer than the model takes is cut to its token limit, as the embedding jobs cut
texts: the CLI says so on stderr, the DataFrame in .attrs ("truncated", "query_tokens", "token_limit").

No Ray: the index is opened in this process (rayjobs.serve_index serves it over HTTP).
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, NoReturn

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from rayjobs.config.config_error import ConfigError
from rayjobs.index.query_encoder import QueryError
from rayjobs.index.search_index import SearchIndex

LITERAL_KEYS = ("query", "image")  # free text and file names, not config expressions


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
    collapse: str | None = None,
) -> pd.DataFrame:
    """Top k items for a text query or an image (path or bytes): rank, position, id, score, metadata
    (for video frames: video, t_start, t_end). `collapse`: a metadata column, e.g. "video": only
    the best row per value of it.

    For a text query, `.attrs` holds truncated, query_tokens and token_limit (a long query is cut)."""
    index = open_index(str(index_path))
    if image is not None:
        data = image if isinstance(image, bytes) else open(image, "rb").read()
        return index.search_image(data, k, filters, collapse)
    if query is None:
        raise QueryError("give a text query or an image")
    return index.search_text(query, k, filters, collapse)


def run(cfg: DictConfig) -> pd.DataFrame:
    """The results of the query a composed `search` config describes (ConfigError on a bad one)."""
    from rayjobs.config.check_config import required

    required(cfg, "index.path")
    if cfg.query is None and cfg.image is None:
        raise ConfigError("query", 'give query="some text" or image=path/to/file.jpg')
    image = _read_image(str(cfg.image)) if cfg.image is not None else None
    filters = OmegaConf.to_container(cfg.filter, resolve=True) or {}
    try:
        index = SearchIndex(str(cfg.index.path), cfg.index.get("storage_options"))
    except FileNotFoundError:
        raise ConfigError("index.path", f"{cfg.index.path!r} does not exist") from None
    collapse = None if cfg.get("collapse") is None else str(cfg.collapse)
    try:
        index.check_collapse(collapse)
    except QueryError as error:  # a key of the config: said as a config error, before the model loads
        raise ConfigError("collapse", str(error)) from None
    if image is not None:
        return index.search_image(image, int(cfg.k), filters, collapse)
    return index.search_text(str(cfg.query), int(cfg.k), filters, collapse)


def truncation_note(results: pd.DataFrame) -> str | None:
    """One line when the text query was longer than the model takes (it was cut), else None."""
    if not results.attrs.get("truncated"):
        return None
    return (
        f"note: the query has {results.attrs['query_tokens']} tokens; the model reads the first "
        f"{results.attrs['token_limit']} (truncated=true)"
    )


def _read_image(path: str) -> bytes:
    """The query image's bytes, read once; a missing file is a config error (before any loading)."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        raise ConfigError("image", f"cannot read {path!r}") from None


def main(argv: Sequence[str] | None = None) -> NoReturn:
    from rayjobs.pipeline.cli import run_cli

    args = literal_overrides(sys.argv[1:] if argv is None else argv)
    run_cli("search", args, run=print_results, about=__doc__, refused=(QueryError,))


def literal_overrides(args: Sequence[str]) -> list[str]:
    """`query=` and `image=` values as typed: Hydra's override grammar refuses emoji, accents and
    commas, so they go in as quoted strings (already quoted ones and null stay as they are)."""
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        quoted = len(value) > 1 and value[0] == value[-1] and value[0] in "'\""
        if sep and key in LITERAL_KEYS and not quoted and value != "null":
            # In a quoted Hydra string, backslashes before a quote or the end are escapes: double them.
            value = re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), value)
            arg = f"{key}='{value}'"
        out.append(arg)
    return out


def print_results(cfg: DictConfig) -> int:
    """The CLI's runner: the results table on stdout, a truncation note on stderr."""
    results = run(cfg)
    note = truncation_note(results)
    if note:  # on stderr: stdout stays the results table
        print(f"rayjobs search: {note}", file=sys.stderr)
    with pd.option_context("display.max_colwidth", 60, "display.width", 160):
        print(results.drop(columns=["position"]).to_string(index=False) if len(results) else "no results")
    return 0


class _CallableModule(types.ModuleType):
    """Importing this module makes the package attribute `rayjobs.search` this module instead of
    the notebook function: calling the module calls the function, so both spellings work."""

    def __call__(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    main()
