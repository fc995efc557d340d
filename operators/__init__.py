"""Model operators (run inside Ray actors) and the CPU stages that feed them."""

from operators.image_captioner import ImageCaptioner
from operators.image_embedder import ImageEmbedder
from operators.text_embedder import TextEmbedder

__all__ = ["ImageCaptioner", "ImageEmbedder", "TextEmbedder"]
