"""Duplicate groups from planted data: range search pairs, components, exact groups, keep rules."""

import faiss
import numpy as np
import pyarrow as pa
import pytest

from benchmarks.synthetic import plant_duplicates
from rayjobs.config.config_error import ConfigError
from rayjobs.index.duplicate_search import keep_scores, range_pairs, unit_vectors
from rayjobs.index.index_files import empty_index, prepare_vectors
from rayjobs.index.index_spec import choose_index
from rayjobs.index.near_duplicates import (
    KeepRule,
    components,
    decide,
    exact_representatives,
    priorities,
    spanning_edges,
)

pytestmark = pytest.mark.timeout(120)


def loose_clusters(rows: int, dim: int, clusters: int) -> np.ndarray:
    """Vectors around centres, as IVF expects, but spread enough that none are near-duplicates."""
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(clusters, dim))
    return centres[rng.integers(0, clusters, rows)] + rng.normal(size=(rows, dim))


def index_of(vectors: np.ndarray, kind: str):
    spec = choose_index({"kind": kind}, len(vectors), vectors.shape[1])
    index = empty_index(spec)
    unit = prepare_vectors(vectors, spec)
    if not index.is_trained:
        index.train(unit)
    index.add_with_ids(unit, np.arange(len(vectors), dtype=np.int64))
    if spec.nprobe:
        faiss.extract_index_ivf(index).nprobe = spec.nprobe
    return index


def pair_scores(found: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(precision, recall) of 'same group' over all row pairs, from group labels."""

    def pairs(labels):
        return sum(n * (n - 1) // 2 for n in np.unique(labels, return_counts=True)[1])

    both = pairs(found.astype(np.int64) * (truth.max() + 1) + truth)  # rows agreeing on both labels
    return both / max(1, pairs(found)), both / max(1, pairs(truth))


def group_labels(rows: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    labels = np.arange(rows)
    nodes, roots = components(left, right)
    labels[nodes] = roots
    return labels


@pytest.mark.parametrize(
    ("kind", "bases"),
    [
        ("flat", np.random.default_rng(1).normal(size=(3000, 32))),  # random: cosines near 0
        ("ivfsq8", loose_clusters(20000, 48, 100)),  # clustered, cosine ~0.5 inside a cluster
    ],
)
def test_planted_groups_are_found_with_precision_and_recall_over_99_percent(kind, bases):
    vectors, truth = plant_duplicates(bases, fraction=0.2, seed=3)
    unit = unit_vectors(pa.array(list(vectors), pa.list_(pa.float32(), vectors.shape[1])))
    planted = np.unique(truth, return_counts=True)[1]
    assert set(planted) == {1, 2, 3, 4, 5, 6}  # groups of every size 2..6, and singletons

    left, right = range_pairs(index_of(vectors, kind), unit, np.arange(len(vectors)), 0.95)
    precision, recall = pair_scores(group_labels(len(vectors), left, right), truth)
    assert precision >= 0.99 and recall >= 0.99, (precision, recall)

    found = decide(
        np.arange(len(vectors)), left, right, priorities(np.zeros(len(vectors))), *no_keys(len(vectors))
    )
    kept = found.kept_of == np.arange(len(vectors))
    per_group = np.bincount(truth[kept], minlength=truth.max() + 1)
    assert (per_group == 1).mean() >= 0.99  # one kept row per planted group
    first = {g: np.flatnonzero(truth == g).min() for g in np.unique(truth)}
    assert all(first[truth[p]] == p for p in np.flatnonzero(kept)[:500])  # keep=first: input order


def no_keys(rows: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((rows, 2), np.uint64), np.zeros(rows, bool)


def test_components_match_a_plain_union_find_and_label_with_the_smallest_node():
    rng = np.random.default_rng(0)
    left, right = rng.integers(0, 5000, 3000), rng.integers(0, 5000, 3000)
    parent = list(range(5000))

    def root(x):
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in zip(left.tolist(), right.tolist(), strict=True):
        ra, rb = root(a), root(b)
        parent[max(ra, rb)] = min(ra, rb)
    nodes, labels = components(left, right)
    assert [root(n) for n in nodes.tolist()] == labels.tolist()
    chain = components(np.arange(1, 100), np.arange(0, 99))  # a path 0-1-...-99: one group
    assert set(chain[1].tolist()) == {0}

    forest = spanning_edges(left, right)
    assert len(forest[0]) < len(left)
    again_nodes, again_labels = components(*forest)
    assert dict(zip(again_nodes.tolist(), again_labels.tolist(), strict=True)) == {
        n: label
        for n, label in zip(nodes.tolist(), labels.tolist(), strict=True)
        if n in set(again_nodes.tolist())
    }


def test_exact_groups_keep_their_best_ranked_row_and_are_labelled_exact():
    keys = np.array([[1, 1], [2, 2], [1, 1], [3, 3], [1, 1], [2, 2]], np.uint64)
    has_key = np.array([True, True, True, True, True, False])  # the last row has no key (null text)
    scores = np.array([0.0, 0, 5, 0, 5, 0])  # rows 2 and 4 tie on score: input order decides
    rank = priorities(scores)
    representative = exact_representatives(keys, has_key, rank)
    assert representative.tolist() == [2, 1, 2, 3, 2, 5]

    found = decide(representative, np.array([1]), np.array([3]), rank, keys, has_key)  # 1 ~ 3 (near)
    assert found.kept_of.tolist() == [2, 1, 2, 1, 2, 5]
    assert found.exact.tolist() == [True, False, False, False, True, False]
    assert found.counts() == {"rows_in": 6, "exact_duplicates": 2, "near_duplicates": 1, "kept": 3}


def test_keep_rules_longest_text_and_highest_column_win_inside_a_near_group():
    table = pa.table({"text": ["ab", "abcd", None, "abc"], "score": [0.5, None, 0.9, 0.7]})
    left, right = np.array([0, 1, 2]), np.array([1, 2, 3])  # one group of four
    keys, has_key = no_keys(4)

    def kept(rule: str) -> int:
        parsed = KeepRule.parse(rule)
        keep = {"kind": parsed.kind, "column": parsed.column, "text_column": "text"}
        found = decide(np.arange(4), left, right, priorities(keep_scores(table, keep)), keys, has_key)
        assert len(set(found.kept_of.tolist())) == 1
        return int(found.kept_of[0])

    assert (kept("first"), kept("longest_text"), kept("highest:score")) == (0, 1, 2)


@pytest.mark.parametrize("rule", ["last", "highest:", "longest"])
def test_an_unknown_keep_rule_names_the_key(rule):
    with pytest.raises(ConfigError, match="dedup.keep: must be one of first, longest_text, highest:<column>"):
        KeepRule.parse(rule)
