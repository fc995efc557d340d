"""Which rows of a table are duplicates and which one of each group is kept: keep rules, exact
groups (equal hashes), near-duplicate pairs joined into connected components, the final choice.

Rows are named by their position in the whole input (shard offset + row), so every decision is
the same however the input is cut into shards. Everything here is numpy on the driver (or in one
Ray task); nothing holds more than a few integers per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rayjobs.config.config_error import ConfigError

KEEP_RULES = ("first", "longest_text", "highest:<column>")
HIGHEST = "highest:"


@dataclass(frozen=True)
class KeepRule:
    """Which row of a duplicate group is kept: the highest score, ties (and `first`) by input order."""

    kind: str  # first | longest_text | highest
    column: str | None = None  # highest: the numeric column compared

    @classmethod
    def parse(cls, value: str) -> KeepRule:
        text = str(value)
        if text in ("first", "longest_text"):
            return cls(text)
        if text.startswith(HIGHEST) and text[len(HIGHEST) :]:
            return cls("highest", text[len(HIGHEST) :])
        raise ConfigError("dedup.keep", f"must be one of {', '.join(KEEP_RULES)}, got {text!r}")


def priorities(scores: np.ndarray) -> np.ndarray:
    """Rank of each position when a group chooses its kept row: 0 is kept first. Higher score
    wins; equal scores go by position (input order), so the choice never depends on sharding."""
    order = np.lexsort((np.arange(len(scores)), -scores))
    rank = np.empty(len(scores), np.int64)
    rank[order] = np.arange(len(scores))
    return rank


def exact_representatives(keys: np.ndarray, has_key: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """For each position, the position kept for its exact-duplicate group (equal `keys` rows,
    (n, 2) uint64 hashes); a row without a key, or with a unique one, represents itself."""
    representative = np.arange(len(keys), dtype=np.int64)
    rows = np.flatnonzero(has_key)
    if not len(rows):
        return representative
    order = rows[np.lexsort((rank[rows], keys[rows, 1], keys[rows, 0]))]
    sorted_keys = keys[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (sorted_keys[1:] != sorted_keys[:-1]).any(axis=1)
    representative[order] = order[starts][np.cumsum(starts) - 1]
    return representative


def components(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nodes, label of each node) of the graph with edges left[i]-right[i]: a node's label is the
    smallest node of its connected component (union-find by hooking roots, then path halving to
    the root, vectorised: a few passes over the edges, whatever their order)."""
    nodes, inverse = np.unique(np.concatenate([left, right]).astype(np.int64), return_inverse=True)
    a, b = inverse[: len(left)], inverse[len(left) :]
    parent = np.arange(len(nodes))
    while True:
        pa, pb = parent[a], parent[b]  # roots: parent is flattened below
        low, high = np.minimum(pa, pb), np.maximum(pa, pb)
        linked = low != high
        if not linked.any():
            break
        np.minimum.at(parent, high[linked], low[linked])  # a root only ever points lower: no cycles
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    return nodes, nodes[parent]


def spanning_edges(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges with the same components as left-right, one per node (node -> its label): what a
    search task sends back, so a dense group of m rows costs m edges, not m^2 pairs."""
    if not len(left):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    nodes, labels = components(left, right)
    moved = nodes != labels
    return nodes[moved], labels[moved]


@dataclass(frozen=True)
class Decisions:
    """The outcome of every position: kept, or a duplicate of another (kept) position."""

    kept_of: np.ndarray  # position -> the position kept for its group (itself when kept)
    exact: np.ndarray  # bool: dropped as an exact duplicate of the kept row (same key)

    @property
    def dropped(self) -> np.ndarray:
        return np.flatnonzero(self.kept_of != np.arange(len(self.kept_of)))

    def counts(self) -> dict[str, int]:
        dropped = self.dropped
        exact = int(self.exact[dropped].sum())
        return {
            "rows_in": len(self.kept_of),
            "exact_duplicates": exact,
            "near_duplicates": len(dropped) - exact,
            "kept": len(self.kept_of) - len(dropped),
        }


def decide(
    representative: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    rank: np.ndarray,
    keys: np.ndarray,
    has_key: np.ndarray,
) -> Decisions:
    """Join exact groups (`representative`) with near-duplicate edges between representatives
    (left-right); each component keeps its best-ranked representative, which is also the
    best-ranked row of the whole component (each exact group's representative is its best row)."""
    kept_of = np.arange(len(representative), dtype=np.int64)
    if len(left):
        nodes, labels = components(left, right)
        order = np.lexsort((rank[nodes], labels))
        starts = np.ones(len(order), dtype=bool)
        starts[1:] = labels[order][1:] != labels[order][:-1]
        kept_of[nodes[order]] = nodes[order][starts][np.cumsum(starts) - 1]
    kept_of = kept_of[representative]
    same_key = (keys == keys[kept_of]).all(axis=1)
    exact = has_key & has_key[kept_of] & same_key & (kept_of != np.arange(len(kept_of)))
    return Decisions(kept_of, exact)
