import pytest

from rayjobs.config.config_error import ConfigError
from rayjobs.index.index_spec import IndexSpec, choose_index, train_rows


def test_auto_is_exact_below_the_threshold_and_ivf_sq8_above():
    assert choose_index({"kind": "auto", "exact_below": 1000}, 999, 64) == IndexSpec("flat", 64, True)
    spec = choose_index({"kind": "auto", "exact_below": 1000}, 1_000_000, 384)
    assert spec.kind == "ivfsq8" and spec.nlist == 4000 and spec.nprobe == 250
    assert spec.factory() == "IVF4000,SQ8" and train_rows(spec, {}) == 39 * 4000
    pq = choose_index({"kind": "ivfpq"}, 1_000_000, 384)
    assert pq.factory() == "IVF4000,PQ192x8" and train_rows(pq, {}) == 39 * 4000


def test_small_tables_get_lists_faiss_can_train_and_odd_dimensions_a_divisor():
    spec = choose_index({"kind": "ivfpq"}, 2000, 100)
    assert spec.nlist == 2000 // 39 and 100 % spec.pq_m == 0 and spec.pq_m == 50
    assert choose_index({"kind": "ivfpq"}, 2000, 7).pq_m == 1


def test_overrides_win_and_bad_values_name_their_key():
    spec = choose_index({"kind": "ivfpq", "nlist": 64, "pq_m": 8, "nprobe": 4}, 10**6, 64)
    assert (spec.nlist, spec.pq_m, spec.nprobe) == (64, 8, 4)
    assert choose_index({"kind": "hnsw", "normalize": False}, 10, 8).factory() == "IDMap2,HNSW32"
    with pytest.raises(ConfigError, match="index.kind: must be one of"):
        choose_index({"kind": "annoy"}, 10, 8)
    with pytest.raises(ConfigError, match="index.pq_m: must divide the vectors' dimension 64"):
        choose_index({"kind": "ivfpq", "pq_m": 10}, 10**6, 64)
    with pytest.raises(ConfigError, match="index.nlist: must be a positive integer"):
        choose_index({"kind": "ivfpq", "nlist": -1}, 10**6, 64)
