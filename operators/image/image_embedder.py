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
    optional_inputs: ClassVar[tuple[str, ...]] = ("frame_count",)  # video windows (embed_videos)
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
        pixels = batch[self.inputs[0]]
        if getattr(pixels, "ndim", 0) == 5:  # rows of frames (a video window): their mean vector
            return {"embedding": self._windows(pixels, np.asarray(batch["frame_count"]))}
        return {"embedding": self._embed(pixels).cpu().numpy()}

    def _embed(self, pixels):
        import torch

        out = self.features(pixel_values=self.pixels(pixels))
        vectors = (out if isinstance(out, torch.Tensor) else out.pooler_output).float()
        if self.normalize:
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=-1)
        return vectors

    def _windows(self, pixels: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Each row's first counts[i] frames embedded (padding is never run), then averaged; unit
        length again when `normalize` (the mean of unit vectors is shorter)."""
        import torch

        present = np.arange(pixels.shape[1])[None, :] < counts[:, None]
        vectors = self._embed(np.ascontiguousarray(pixels[present]))
        owners = torch.from_numpy(np.repeat(np.arange(len(counts)), counts)).to(vectors.device)
        sums = torch.zeros(len(counts), vectors.shape[1], device=vectors.device).index_add_(
            0, owners, vectors
        )
        means = sums / torch.from_numpy(np.maximum(counts, 1)).to(sums).unsqueeze(1)
        if self.normalize:
            means = torch.nn.functional.normalize(means, p=2, dim=-1)
        return means.cpu().numpy()
