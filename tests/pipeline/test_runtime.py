"""Pool sizes for `concurrency: auto`, torch threads per CPU actor, and the fit check."""

from __future__ import annotations

import pytest

from rayjobs.config.config_error import ConfigError
from rayjobs.config.stage_spec import StageSpec
from rayjobs.pipeline.runtime import Cluster, check_fits, model_threads, size_pools

TASKS = {"preprocess": StageSpec(None, num_cpus=1.0)}


def test_auto_on_cpus_gives_one_single_threaded_actor_per_core_with_room_for_the_tasks():
    cluster = Cluster(cpus=2, gpus=0, nodes=1)
    sized = size_pools(cluster, TASKS, {"model": StageSpec(128, num_gpus="auto", concurrency="auto")})
    model = sized["model"]
    assert (model.concurrency, model.num_cpus) == (2, 0.5)  # 2 x 0.5 held + 1 for the tasks = 2
    assert model_threads(model, cluster, actors=2) == 1
    check_fits(cluster, TASKS, sized)  # fits: no deadlock


def test_auto_on_cpus_caps_actors_per_node_and_splits_among_cpu_stages():
    cluster = Cluster(cpus=64, gpus=0, nodes=2)  # 32 cores a node: 8 actors a node at most
    actors = {"a": StageSpec(8, concurrency="auto"), "b": StageSpec(8, concurrency="auto")}
    sized = size_pools(cluster, TASKS, actors)
    assert [sized[key].concurrency for key in "ab"] == [8, 8]
    assert sized["a"].num_cpus == 1.0  # plenty of room: the configured share stays
    assert model_threads(sized["a"], cluster, actors=16) == 4  # 32 cores / 8 actors on each node


def test_auto_on_gpus_gives_one_actor_per_gpu_shared_among_gpu_stages():
    cluster = Cluster(cpus=32, gpus=8, nodes=1)
    one = size_pools(cluster, TASKS, {"model": StageSpec(64, num_gpus="auto", concurrency="auto")})
    assert one["model"].concurrency == 8 and one["model"].num_cpus == 1.0
    halves = {
        "a": StageSpec(64, num_gpus=0.5, concurrency="auto"),
        "b": StageSpec(64, num_gpus=1, concurrency="auto"),
    }
    sized = size_pools(cluster, TASKS, halves)
    assert (sized["a"].concurrency, sized["b"].concurrency) == (8, 4)  # 4 GPUs each
    assert model_threads(sized["a"], cluster, actors=12) is None  # GPU actors keep torch's default


def test_fixed_pools_are_kept_and_count_against_the_room_of_auto_ones():
    cluster = Cluster(cpus=4, gpus=0, nodes=1)
    actors = {"fixed": StageSpec(8, num_cpus=2, concurrency=1), "auto": StageSpec(8, concurrency="auto")}
    sized = size_pools(cluster, TASKS, actors)
    assert sized["fixed"] == actors["fixed"]
    assert (sized["auto"].concurrency, sized["auto"].num_cpus) == (4, 0.25)  # (4 - 2 - 1) / 4
    check_fits(cluster, TASKS, sized)


def test_no_room_leaves_one_actor_and_check_fits_names_the_key():
    cluster = Cluster(cpus=1, gpus=0, nodes=1)
    sized = size_pools(cluster, TASKS, {"model": StageSpec(8, concurrency="auto")})
    assert sized["model"].concurrency == 1
    with pytest.raises(ConfigError, match=r"model\.num_cpus"):
        check_fits(cluster, TASKS, sized)


def test_no_more_auto_actors_than_the_input_keeps_busy():
    cluster = Cluster(cpus=8, gpus=0, nodes=1)
    actors = {"model": StageSpec(32, num_cpus=0.5, concurrency="auto")}
    assert size_pools(cluster, TASKS, actors, rows=500)["model"].concurrency == 1  # < 2 x 8 batches
    assert size_pools(cluster, TASKS, actors, rows=800)["model"].concurrency == 3
    assert size_pools(cluster, TASKS, actors, rows=10_000)["model"].concurrency == 8


@pytest.mark.parametrize("cores", [3, 5, 7, 12])
def test_auto_shares_never_round_past_what_check_fits_allows(cores):
    cluster = Cluster(cpus=cores, gpus=0, nodes=1)
    for tasks in (TASKS, {"preprocess": StageSpec(None, num_cpus=0.1)}):
        sized = size_pools(cluster, tasks, {"model": StageSpec(8, concurrency="auto")})
        assert sized["model"].concurrency == min(cores, 8)
        check_fits(cluster, tasks, sized)  # 3 cores once asked 3 x 0.667 + 1 > 3
