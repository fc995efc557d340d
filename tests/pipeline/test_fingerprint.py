"""Every result-deciding key of every job is in the fingerprint (a change is refused, naming the
key); resources, runtime, paths and progress settings are not."""

import copy

import pytest
from omegaconf import OmegaConf

import rayjobs
from rayjobs.config.compose import CPU_JOBS, EDIT_JOBS, MODEL_JOBS
from rayjobs.config.config_error import ConfigError
from rayjobs.config.stage_spec import STAGE_KEYS
from rayjobs.io.shards import InputPlan, Shard
from rayjobs.io.storage import filesystem
from rayjobs.pipeline import run_record
from rayjobs.pipeline.fingerprint import UNFINGERPRINTED, fingerprint_parts
from rayjobs.pipeline.output_folder import claim_output

PLAN = InputPlan("in", [Shard(0, 10, path="in/a.parquet")], None, 1)


def leaves(tree, prefix=""):
    if isinstance(tree, dict) and tree:
        for key, value in tree.items():
            yield from leaves(value, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix, tree


def other(value):
    """A different value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, list):
        return [*value, "x"]
    if isinstance(value, dict):
        return {"x": 1}
    return f"{value}x" if value is not None else "x"


def compose(job):
    return rayjobs.compose(job, ["input.path=in", "output.path=out"])


def is_resource(key: str) -> bool:
    section, _, leaf = key.partition(".")
    return leaf in STAGE_KEYS or any(key == k or key.startswith(f"{k}.") for k in UNFINGERPRINTED)


@pytest.mark.parametrize("job", [*MODEL_JOBS, *CPU_JOBS, *EDIT_JOBS])
def test_each_result_deciding_key_changes_the_fingerprint_and_is_named(job):
    cfg = compose(job)
    base = fingerprint_parts(cfg, PLAN)
    tree = OmegaConf.to_container(cfg, resolve=True)
    checked = 0
    for key, value in leaves(tree):
        if key == "job.name":
            continue
        changed = copy.deepcopy(cfg)
        OmegaConf.update(changed, key, other(value), force_add=True)
        parts = fingerprint_parts(changed, PLAN)
        if is_resource(key):
            assert run_record.fingerprint(parts) == run_record.fingerprint(base), key
        else:
            assert run_record.fingerprint(parts) != run_record.fingerprint(base), key
            named = [name for name, _, _ in run_record.changed_keys(base, parts)]
            assert named == ([f"{key}.x"] if value == {} else [key])  # an empty section names its new key
            checked += 1
    assert (
        checked >= 8
    )  # the job's own sections (prompt.*, model.*, preprocess.*, transform.*) and input/output


def test_generate_text_prompt_template_is_fingerprinted():
    """The case a new user hit: another template into the same output answered 'already finished'."""
    before = rayjobs.compose(
        "generate_text", ["input.path=in", "output.path=out", "prompt.template='Say {x}'"]
    )
    after = rayjobs.compose(
        "generate_text", ["input.path=in", "output.path=out", "prompt.template='Tell {x}'"]
    )
    changed = run_record.changed_keys(fingerprint_parts(before, PLAN), fingerprint_parts(after, PLAN))
    assert changed == [("prompt.template", "Say {x}", "Tell {x}")]


def test_a_changed_key_is_refused_naming_it_and_overwrite_redoes(tmp_path):
    cfg = rayjobs.compose(
        "transform_images", ["input.path=in", f"output.path={tmp_path}", "transform.quality=70"]
    )
    fs, root = filesystem(str(tmp_path))
    parts = fingerprint_parts(cfg, PLAN)
    record = {"job": "transform_images", "fingerprint": run_record.fingerprint(parts), "fingerprinted": parts}
    run_record.write_record(fs, root, record)
    run_record.write_progress(fs, root, {0})
    assert claim_output(cfg, fs, root, record["fingerprint"], parts, PLAN) == {0}  # same config: resume

    changed = rayjobs.compose(
        "transform_images", ["input.path=in", f"output.path={tmp_path}", "transform.quality=80"]
    )
    new_parts = fingerprint_parts(changed, PLAN)
    with pytest.raises(ConfigError) as caught:
        claim_output(changed, fs, root, run_record.fingerprint(new_parts), new_parts, PLAN)
    assert caught.value.key == "transform.quality"
    assert (
        "70" in str(caught.value) and "80" in str(caught.value) and "job.overwrite=true" in str(caught.value)
    )

    OmegaConf.update(changed, "job.overwrite", True)
    assert claim_output(changed, fs, root, run_record.fingerprint(new_parts), new_parts, PLAN) == set()
    assert not (tmp_path / "_run.json").exists()
