"""Tiny random Hugging Face checkpoints built offline in well under a second each.

The builders live in benchmarks/random_checkpoints.py (installed with the package, unlike tests/),
where the benchmarks build the same architectures at real models' sizes.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks import random_checkpoints as build
from benchmarks.random_checkpoints import WORDS, byte_level_tokenizer, word_piece_tokenizer

__all__ = ["WORDS", "byte_level_tokenizer", "word_piece_tokenizer"]


def tiny_bert(folder: Path, *, sentence_transformers_files: bool = False) -> Path:
    """A 2-layer BERT encoder with its tokenizer; optionally ST pooling/normalize files (cls)."""
    return build.bert(
        folder, word_piece_tokenizer(folder), sentence_transformers_files=sentence_transformers_files
    )


def tiny_clip(folder: Path) -> Path:
    """A CLIP with 32x32 inputs (shortest-edge resize + center crop), 16-d projections."""
    return build.clip(folder, word_piece_tokenizer(folder))


def tiny_siglip(folder: Path) -> Path:
    """A SigLIP with 32x32 inputs (plain resize, mean/std 0.5)."""
    return build.siglip(folder, word_piece_tokenizer(folder))


def tiny_vit_classifier(folder: Path) -> Path:
    """A ViT image classifier with 24x24 inputs and two labels: safe, nsfw."""
    return build.vit_classifier(folder)


def tiny_gpt2(folder: Path) -> Path:
    """A 2-layer GPT-2 causal LM with a byte-level tokenizer and a chat template."""
    return build.gpt2(folder, byte_level_tokenizer(folder))


def tiny_blip(folder: Path) -> Path:
    """A BLIP captioner with 32x32 inputs and a WordPiece text decoder."""
    return build.blip(folder, word_piece_tokenizer(folder))


def tiny_smolvlm(folder: Path) -> Path:
    """SmolVLM's architecture at toy size: 32 px tiles, 4 image tokens a tile, SmolVLM's chat layout."""
    return build.smolvlm(folder, byte_level_tokenizer(folder, chat_template=False))


def tiny_stable_diffusion(folder: Path) -> Path:
    """A Stable Diffusion pipeline of 8-16 channels and a 32-wide CLIP text encoder (16 px images)."""
    return build.stable_diffusion(folder)


def tiny_segformer(folder: Path) -> Path:
    """A SegFormer with labels background, product, shadow; 32 px inputs, 8 px logits."""
    return build.segformer(folder)


def tiny_mask2former(folder: Path) -> Path:
    """A Mask2Former with labels background, product, shadow; 5 queries, 64 px short side, padded."""
    return build.mask2former(folder)


def tiny_sapiens2_matting(folder: Path) -> Path:
    """A Sapiens2 matting model: 64 x 48 inputs, a 16 x 12 alpha."""
    return build.sapiens2_matting(folder)


def tiny_sd_upscaler(folder: Path) -> Path:
    """A Stable Diffusion x4 upscaling pipeline: two UNet levels, a three-level VAE (4x)."""
    return build.stable_diffusion_upscaler(folder)


def tiny_vitmatte(folder: Path) -> Path:
    """A VitMatte trimap matting model (ViTDet with 2 layers of 32)."""
    return build.vitmatte(folder)


def tiny_swin2sr(folder: Path) -> Path:
    """A Swin2SR x2 (embed dim 16, two one-block stages, window 8)."""
    return build.swin2sr(folder)
