"""Model operators (run inside Ray actors) and the CPU stages that feed them."""

from operators.image_captioner import ImageCaptioner
from operators.image_embedder import ImageEmbedder
from operators.text_embedder import TextEmbedder
from operators.text_generator import TextGenerator

__all__ = ["ImageCaptioner", "ImageEmbedder", "TextEmbedder", "TextGenerator"]
