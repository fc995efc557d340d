"""ImageEmbedder: uint8 pixels in, one vector per image out (CLIP / SigLIP family)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from operators.image.device_pixels import DevicePixels
from operators.image.pixel_normalizer import PixelNormalizer
from operators.load_pretrained import load_pretrained
from operators.torch_device import compiled, inference_mode


class ImageEmbedder:
    """Embeds images with a model's `get_image_features` (its projected image embedding).

    Takes the uint8 output of `decode_images`; rescaling and normalisation with the
    checkpoint's own mean/std happen here, on the model's device. `decode="device"`: takes the
    encoded files instead (`read_image_data`) and decodes, resizes and crops them here too
    (`DevicePixels`: nvJPEG on a GPU).
    """

    inputs: ClassVar[tuple[str, ...]] = ("pixel_values",)
    outputs: ClassVar[tuple[str, ...]] = ("embedding",)
    gpu_calls: ClassVar[int] = 2  # calls share no state: on a GPU two run at once (thread_stream)

    def __init__(
        self,
        path: str,
        revision: str | None = None,
        normalize: bool = True,
        dtype: str = "auto",
        device: str = "auto",
        trust_remote_code: bool = False,
        decode: str = "host",
        compile: bool | str = False,
    ) -> None:
        from transformers import AutoModel

        loaded = load_pretrained(
            AutoModel,
            path,
            revision=revision,
            device=device,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
        )
        if not hasattr(loaded.model, "get_image_features"):
            raise ValueError(
                f"{type(loaded.model).__name__} has no get_image_features: not an image-text model"
            )
        self.model, self.device, self.dtype = loaded.model, loaded.device, loaded.dtype
        self.normalize = normalize
        self.features = compiled(self.model.get_image_features, compile)
        if decode == "device":
            self.inputs = ("image_data",)
            self.pixels = DevicePixels(loaded.folder, self.device, self.dtype)
        else:
            self.pixels = PixelNormalizer(loaded.folder, self.device, self.dtype)

    @inference_mode
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        out = self.features(pixel_values=self.pixels(batch[self.inputs[0]]))
        vectors = (out if isinstance(out, torch.Tensor) else out.pooler_output).float()
        if self.normalize:
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=-1)
        return {"embedding": vectors.cpu().numpy()}
