"""Model operators (run inside Ray actors) and the CPU stages that feed them.

The operators are imported on first use: CPU tasks (tokenize, decode) import this package
too, and must not pay for torch and transformers (seconds per worker on a small machine).
"""

from importlib import import_module
from typing import Any

_OPERATORS = {
    "BackgroundRemover": "operators.image.background_remover",
    "ChatCaptioner": "operators.image.chat_captioner",
    "ImageCaptioner": "operators.image.image_captioner",
    "ImageEmbedder": "operators.image.image_embedder",
    "ImageGenerator": "operators.image.image_generator",
    "ImageScorer": "operators.image.image_scorer",
    "ImageUpscaler": "operators.image.image_upscaler",
    "TextEmbedder": "operators.text.text_embedder",
    "TextGenerator": "operators.text.text_generator",
}

__all__ = sorted(_OPERATORS)


def __getattr__(name: str) -> Any:
    if name in _OPERATORS:
        return getattr(import_module(_OPERATORS[name]), name)
    raise AttributeError(f"module 'operators' has no attribute {name!r}")
