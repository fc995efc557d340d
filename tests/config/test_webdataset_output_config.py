"""output=webdataset: the preset composes for the image jobs, and a bad value (or a job that makes
no images) fails in the job's own checks, before Ray, naming its key."""

import importlib

import pytest

import rayjobs
from rayjobs.config.config_error import ConfigError
from rayjobs.config.run_spec import parse_run
from rayjobs.pipeline.job_run import check_job

pytestmark = pytest.mark.timeout(120)
REQUIRED = ["input.path=/data/in", "output.path=/data/out", "output=webdataset"]


def check(job: str, *overrides: str) -> None:
    check_job(importlib.import_module(f"rayjobs.{job}").run, rayjobs.compose(job, [*REQUIRED, *overrides]))


def test_the_preset_parses_into_the_output_spec():
    cfg = rayjobs.compose("transform_images", [*REQUIRED, "output.tar_size_mb=0.5", "output.tar_samples=100"])
    spec = parse_run(cfg, ("transform",), (), webdataset=True).output
    assert (spec.format, spec.tar_size_mb, spec.tar_samples) == ("webdataset", 0.5, 100)
    assert (
        parse_run(rayjobs.compose("transform_images", REQUIRED[:2]), ("transform",), ()).output.format
        == "parquet"
    )
    check("transform_images")  # every check the job makes passes


@pytest.mark.parametrize(
    ("job", "overrides", "key"),
    [
        ("transform_images", ["output.tar_size_mb=0"], "output.tar_size_mb"),
        ("transform_images", ["output.tar_size_mb=big"], "output.tar_size_mb"),
        ("transform_images", ["output.tar_samples=0"], "output.tar_samples"),
        ("transform_images", ["output.format=zip"], "output.format"),
        ("score_images", ["score.text=a photo", "output.tar_size_mb=-1"], "output.tar_size_mb"),
        ("embed_texts", [], "output.format"),  # makes no images: nothing to put in a tar
        ("caption_images", [], "output.format"),
    ],
)
def test_bad_values_fail_before_ray_with_their_key(job, overrides, key):
    with pytest.raises(ConfigError) as caught:
        check(job, *overrides)
    assert caught.value.key == key and "\n" not in str(caught.value)
