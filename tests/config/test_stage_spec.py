import pytest
from ray.data import ActorPoolStrategy, TaskPoolStrategy

from rayjobs.config.config_error import ConfigError
from rayjobs.config.stage_spec import StageSpec


def test_parse_reads_every_key():
    spec = StageSpec.parse(
        {"batch_size": 64, "num_cpus": 0.5, "num_gpus": 1, "concurrency": [1, 4], "memory": 2**30}, "model"
    )
    assert spec == StageSpec(64, 0.5, 1.0, (1, 4), 2**30)


def test_actor_args_fixed_pool_and_gpus():
    args = StageSpec(32, 1.0, 1.0, 3).ray_args(actor=True, cluster_gpus=4)
    assert args["batch_size"] == 32 and args["num_gpus"] == 1.0 and args["num_cpus"] == 1.0
    assert isinstance(args["compute"], ActorPoolStrategy)
    assert (args["compute"].min_size, args["compute"].max_size) == (3, 3)


def test_gpu_actors_run_the_operators_gpu_calls_at_once():
    gpu = StageSpec(32, num_gpus="auto", concurrency=2).ray_args(actor=True, cluster_gpus=2, gpu_calls=2)
    compute = gpu["compute"]
    assert (compute.max_concurrent_calls_per_actor, compute.enable_true_multi_threading) == (2, True)
    assert compute.min_size == compute.max_size == 2
    cpu = StageSpec(32, num_gpus="auto").ray_args(actor=True, cluster_gpus=0, gpu_calls=2)["compute"]
    assert cpu.max_concurrent_calls_per_actor is None  # on CPUs two calls would share the same cores
    serial = StageSpec(32, num_gpus=1).ray_args(actor=True, cluster_gpus=1)["compute"]
    assert serial.max_concurrent_calls_per_actor is None


def test_actor_args_autoscaling_pool():
    compute = StageSpec(8, concurrency=(2, 5)).ray_args(actor=True)["compute"]
    assert (compute.min_size, compute.max_size) == (2, 5)


def test_task_args_cap_concurrency_only_when_asked():
    assert "compute" not in StageSpec(8).ray_args(actor=False)
    compute = StageSpec(8, concurrency=3).ray_args(actor=False)["compute"]
    assert isinstance(compute, TaskPoolStrategy) and compute.size == 3


def test_auto_gpus_follow_the_cluster():
    spec = StageSpec(8, num_gpus="auto")
    assert "num_gpus" not in spec.ray_args(actor=True, cluster_gpus=0)
    assert spec.ray_args(actor=True, cluster_gpus=2)["num_gpus"] == 1.0


@pytest.mark.parametrize(
    ("node", "key"),
    [
        ({"batch_size": 0}, "model.batch_size"),
        ({"batch_size": -3}, "model.batch_size"),
        ({"batch_size": "big"}, "model.batch_size"),
        ({"batch_size": 8, "num_cpus": -1}, "model.num_cpus"),
        ({"batch_size": 8, "num_gpus": "two"}, "model.num_gpus"),
        ({"batch_size": 8, "concurrency": 0}, "model.concurrency"),
        ({"batch_size": 8, "concurrency": [3, 1]}, "model.concurrency"),
        ({"batch_size": 8, "concurrency": [1, 2, 3]}, "model.concurrency"),
        ({"batch_size": 8, "concurrency": "many"}, "model.concurrency"),
        ({"batch_size": 8, "batch_tokens": 0}, "model.batch_tokens"),
        ({"batch_size": "auto", "batch_tokens": 4096}, "model.batch_tokens"),
    ],
)
def test_bad_values_name_their_key(node, key):
    with pytest.raises(ConfigError) as caught:
        StageSpec.parse(node, "model", auto=True)
    assert caught.value.key == key
    assert "\n" not in str(caught.value)


def test_whole_block_batches_only_where_allowed():
    assert StageSpec.parse({"batch_size": None}, "preprocess", whole_blocks=True).batch_size is None
    assert StageSpec(None).ray_args(actor=False)["batch_size"] is None
    with pytest.raises(ConfigError):
        StageSpec.parse({"batch_size": None}, "model")


def test_auto_batch_size_only_where_allowed_and_one_call_per_block():
    spec = StageSpec.parse({"batch_size": "auto"}, "model", auto=True)
    assert spec.batch_size == "auto" and spec.ray_args(actor=True)["batch_size"] is None
    with pytest.raises(ConfigError, match=r"preprocess\.batch_size: must be a positive integer, got 'auto'"):
        StageSpec.parse({"batch_size": "auto"}, "preprocess", whole_blocks=True)
    with pytest.raises(
        ConfigError, match=r"model\.batch_size: must be a positive integer or auto, got 'big'"
    ):
        StageSpec.parse({"batch_size": "big"}, "model", auto=True)


def test_token_budgets_and_auto_pools_let_the_actor_cut_whole_blocks():
    node = {"batch_size": 64, "batch_tokens": 8192, "concurrency": "auto"}
    spec = StageSpec.parse(node, "model", auto=True)
    assert (spec.batch_tokens, spec.concurrency) == (8192, "auto")
    args = spec.ray_args(actor=True)
    assert args["batch_size"] is None  # the actor cuts by tokens
    assert args["compute"].min_size == args["compute"].max_size == 1  # auto unsized: one actor
    with pytest.raises(ConfigError, match=r"preprocess\.concurrency: must be n >= 1, \[min, max\], got 'a"):
        StageSpec.parse({"batch_size": 8, "concurrency": "auto"}, "preprocess")
