"""TrimapMatting: a segmentation mask's edge refined into an alpha matte by a trimap matting
model (VitMatte): certain foreground well inside the mask, certain background well outside it,
and a band around its edge where the matting model decides (hair, fur, lace, glass)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from operators.load_pretrained import load_pretrained, trust_flag

if TYPE_CHECKING:
    import torch

FOREGROUND, UNKNOWN, BACKGROUND = 255, 128, 0  # trimap values, as VitMatte was trained on


class TrimapMatting:
    """A VitMatte checkpoint (AutoModelForImageMatting) run on the photo beside the trimap of a
    mask: `band` px either side of the mask's edge are unknown. The checkpoint's processor pads
    the photo to its size divisor at the bottom and right; the alpha is cut back to the photo.
    The whole photo goes through at full size, so bound it (edit_images' preprocess.max_side)."""

    def __init__(
        self,
        path: str,
        band: int = 10,
        *,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
    ) -> None:
        from transformers import AutoImageProcessor, AutoModelForImageMatting

        if band < 1:
            raise ValueError(f"the matting band must be at least 1 px, got {band}")
        loaded = load_pretrained(
            AutoModelForImageMatting, path, device=device, dtype=dtype, trust_remote_code=trust_remote_code
        )
        if loaded.model.config.model_type != "vitmatte":
            raise ValueError(
                f"{path} is a {loaded.model.config.model_type}: matting takes a trimap model (vitmatte); "
                "a model that mattes the photo alone goes in path instead"
            )
        self.model, self.device, self.dtype = loaded.model, loaded.device, loaded.dtype
        self.processor = AutoImageProcessor.from_pretrained(
            loaded.folder, trust_remote_code=trust_flag(trust_remote_code)
        )
        self.band = band

    def __call__(self, image: np.ndarray, mask: torch.Tensor) -> torch.Tensor:
        """The H x W alpha in [0, 1] of an H x W x 3 photo whose product `mask` (H x W bool) marks."""
        import torch
        from PIL import Image

        trimap = trimap_of(mask, self.band)
        encoded = self.processor(
            images=[Image.fromarray(image)],
            trimaps=[Image.fromarray(trimap.cpu().numpy())],
            return_tensors="pt",
        )
        height, width = image.shape[:2]
        alphas = self.model(pixel_values=encoded["pixel_values"].to(self.device, self.dtype)).alphas
        alpha = alphas[0, 0, :height, :width].float()
        # Outside the band the trimap is certain: the model's alpha counts only inside it.
        return torch.where(trimap == UNKNOWN, alpha, (trimap == FOREGROUND).float())


def trimap_of(mask: torch.Tensor, band: int) -> torch.Tensor:
    """H x W uint8: FOREGROUND where `mask` holds `band` px around, BACKGROUND where it is empty
    `band` px around, UNKNOWN between. The photo's border does not count as background."""
    import torch

    window = {"kernel_size": 2 * band + 1, "stride": 1, "padding": band}  # max_pool pads with -inf
    inside = mask.float()[None, None]
    grown = torch.nn.functional.max_pool2d(inside, **window)[0, 0] > 0.5
    shrunk = torch.nn.functional.max_pool2d(1 - inside, **window)[0, 0] < 0.5
    trimap = torch.full(mask.shape, UNKNOWN, dtype=torch.uint8, device=mask.device)
    trimap[shrunk] = FOREGROUND
    trimap[~grown] = BACKGROUND
    return trimap
