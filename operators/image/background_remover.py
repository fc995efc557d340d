"""BackgroundRemover: whole images in, the product cut out (RGBA) or centred on a plain
background (composite) out, with a segmentation or matting checkpoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from operators.image.decode_images import raw_pixels
from operators.image.transform_images import parse_background
from operators.image.trimap_matting import TrimapMatting
from operators.load_pretrained import load_pretrained, trust_flag
from operators.model_files import local_model_dir
from operators.torch_device import inference_mode

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig

OUTPUTS = ("rgba", "composite")
BACKGROUND_NAMES = ("background", "bg")  # compared lowercased, without surrounding "_" or spaces
# What a checkpoint's head gives, by the auto class that loads it; the probability is made to match.
SEMANTIC, MASK_CLASSIFICATION, MATTING = "semantic", "mask classification", "matting"
# Of the universal segmentation models: oneformer also takes task tokens, detr names its outputs apart.
MASK_CLASSIFIERS = ("mask2former", "maskformer")


class BackgroundRemover:
    """Separates the product from its background with a checkpoint that transformers loads
    natively, of one of three kinds:

    - semantic segmentation (AutoModelForSemanticSegmentation: SegFormer, DPT, BEiT, MobileViT,
      UperNet ...): foreground probability = the softmax mass of the `classes` labels; a
      one-channel head (a binary foreground model): its sigmoid.
    - mask classification (AutoModelForUniversalSegmentation: Mask2Former, MaskFormer): each
      query's class softmax (no-object dropped) times its mask's sigmoid, summed over queries,
      gives per-class scores as in transformers' semantic post-processing; the probability is the
      `classes` share of those scores at each pixel, where a total under 1 counts the rest as
      background (a pixel no query claims is background).
    - matting (AutoModelForImageMatting, models that matte the photo alone: Sapiens2): the
      predicted alpha; `soft` keeps its fine edges (hair, fur, glass).

    The checkpoint's image processor runs here, on the batch, with its centre crop (if any)
    turned off so the mask covers the whole photo; padding it adds (Mask2Former) is cut off again.
    The probability is taken at the model's output size and resized bilinear to the photo; the
    mask is probability > `threshold`. Alpha is that mask, or with `soft` the probability itself.

    - `classes`: label names (any case) or ids of config.id2label that count as foreground.
      Default: every label but those named background / bg (e.g. "__background__"), or, when no
      label has such a name, every label but id 0. Checkpoints without a background class
      (ADE20K's "wall", "floor" ...) need `classes`; one-channel and matting heads take none.
    - `matting`: a trimap matting checkpoint (VitMatte) that refines the mask's edge: `matting_band`
      px either side of it are left to that model, whose alpha replaces the probability (with
      `soft`, fine edges stay soft); operators/image/trimap_matting.py.
    - `output="rgba"`: the photo with the alpha as a fourth channel, same size.
    - `output="composite"`: the photo blended onto `background_color` by alpha, cropped to the
      mask's bounding box, scaled (up or down) to fit the canvas less `padding` (a fraction of
      the canvas's shorter side, on every side) and centred on a canvas of that colour: the
      photo's size, or `canvas` x `canvas`. Every product then sits the same way.
    - `mask_coverage`: the mask's share of the photo's pixels. A photo where nothing is found
      keeps its row, with coverage 0: rgba gives it alpha 0 everywhere, composite a plain canvas.
      A filter rule (`mask_coverage > 0.01`) moves such rows to filtered/ for review; raising
      instead would make ModelStage rerun the whole batch row by row to find one empty mask.
    """

    inputs: ClassVar[tuple[str, ...]] = ("image_rgb", "image_shape")
    outputs: ClassVar[tuple[str, ...]] = ("image_rgb", "image_shape", "mask_coverage")

    def __init__(
        self,
        path: str,
        revision: str | None = None,
        classes: Sequence[str | int] | None = None,
        threshold: float = 0.5,
        soft: bool = False,
        output: str = "composite",
        background_color: str | Sequence[int] = "#ffffff",
        padding: float = 0.05,
        canvas: int | None = None,
        matting: str | None = None,
        matting_band: int = 10,
        dtype: str = "auto",
        device: str = "auto",
        trust_remote_code: bool = False,
    ) -> None:
        from transformers import (
            AutoConfig,
            AutoImageProcessor,
            AutoModelForImageMatting,
            AutoModelForSemanticSegmentation,
            AutoModelForUniversalSegmentation,
        )

        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if not 0 <= padding < 0.5:
            raise ValueError(f"padding must be in [0, 0.5), got {padding}")
        if canvas is not None and canvas < 1:
            raise ValueError(f"canvas must be a positive size in px, got {canvas}")
        self.colour = parse_colour(background_color)
        folder = local_model_dir(path, revision)
        # One model_type (sapiens2) has both segmentation and matting heads: the checkpoint's
        # architecture says which it is, so the auto class is picked, not tried in turn.
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_flag(trust_remote_code))
        self.kind = head_kind(config)
        auto_class = {
            SEMANTIC: AutoModelForSemanticSegmentation,
            MASK_CLASSIFICATION: AutoModelForUniversalSegmentation,
            MATTING: AutoModelForImageMatting,
        }[self.kind]
        loaded = load_pretrained(
            auto_class,
            folder,
            revision=revision,
            device=device,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
        )
        self.model, self.device, self.dtype = loaded.model, loaded.device, loaded.dtype
        self.processor = AutoImageProcessor.from_pretrained(
            loaded.folder, trust_remote_code=trust_flag(trust_remote_code)
        )
        # A centre crop would leave the photo's edges out of the mask.
        self.process_options = (
            {"do_center_crop": False} if getattr(self.processor, "do_center_crop", None) else {}
        )
        labels = self.model.config.id2label
        if (len(labels) == 1 or self.kind == MATTING) and classes is not None:
            raise ValueError(
                f"{path} predicts the foreground itself (one channel or alpha): no classes to pick"
            )
        picks = len(labels) > 1 and self.kind != MATTING
        self.foreground_ids = foreground_labels(labels, classes) if picks else []
        self.threshold, self.soft, self.output = threshold, soft, output
        self.padding, self.canvas = padding, canvas
        self.matting = (
            TrimapMatting(
                matting, matting_band, device=device, dtype=dtype, trust_remote_code=trust_remote_code
            )
            if matting
            else None
        )

    @inference_mode
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        images = [
            raw_pixels(raw, shape)
            for raw, shape in zip(batch["image_rgb"], batch["image_shape"], strict=True)
        ]
        raws = np.empty(len(images), dtype=object)
        shapes = np.zeros((len(images), 3), dtype=np.int32)
        coverage = np.zeros(len(images), dtype=np.float32)
        for i, (image, probability) in enumerate(zip(images, self.foreground(images), strict=True)):
            if self.matting is not None:
                probability = self.matting(image, probability > self.threshold)
            mask = probability > self.threshold
            alpha = probability if self.soft else mask.float()
            pixels = torch.from_numpy(np.array(image)).to(self.device)  # a writable copy
            if self.output == "rgba":
                edited = torch.cat([pixels, alpha.mul(255).round().to(torch.uint8)[..., None]], dim=-1)
            else:
                edited = self.composite(pixels, alpha, mask)
            out = edited.cpu().numpy()
            raws[i], shapes[i] = out.tobytes(), out.shape
            coverage[i] = mask.float().mean().item()
        return {"image_rgb": raws, "image_shape": shapes, "mask_coverage": coverage}

    def foreground(self, images: list[np.ndarray]) -> list[torch.Tensor]:
        """Per H x W x 3 image, its H x W foreground probability (float32, on the device)."""
        import torch
        from PIL import Image

        for image in images:
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"BackgroundRemover takes RGB images, got shape {image.shape}")
        encoded = self.processor(images=[Image.fromarray(image) for image in images], **self.process_options)
        pixels = [torch.as_tensor(values) for values in encoded["pixel_values"]]  # numpy or torch, by backend
        # Processors that pad a batch to one size (Mask2Former) mark the photo's pixels with 1s.
        valid = [torch.as_tensor(mask) for mask in encoded["pixel_mask"]] if "pixel_mask" in encoded else None
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, values in enumerate(pixels):  # processors that keep the aspect ratio vary in size
            groups.setdefault(tuple(values.shape), []).append(i)
        found: list[torch.Tensor | None] = [None] * len(images)
        for rows in groups.values():
            inputs = {"pixel_values": torch.stack([pixels[i] for i in rows]).to(self.device, self.dtype)}
            if valid is not None:
                inputs["pixel_mask"] = torch.stack([valid[i] for i in rows]).to(self.device)
            probability = self.probability(self.model(**inputs))
            for row, small in zip(rows, probability, strict=True):
                if valid is not None:
                    small = unpadded(small, valid[row].to(small.device))
                found[row] = torch.nn.functional.interpolate(
                    small[None, None], size=images[row].shape[:2], mode="bilinear", align_corners=False
                )[0, 0]
        return found  # type: ignore[return-value]

    def probability(self, outputs: object) -> torch.Tensor:
        """B x h x w foreground probability from the head's outputs, at the model's output size."""
        if self.kind == MATTING:
            return outputs.alphas[:, 0].float()  # type: ignore[attr-defined]
        if self.kind == MASK_CLASSIFICATION:
            import torch

            # Summed at the model's size: at the photo's, B x queries x H x W would not fit in memory.
            classes = outputs.class_queries_logits.float().softmax(dim=-1)[..., :-1]  # type: ignore[attr-defined]
            masks = outputs.masks_queries_logits.float().sigmoid()  # type: ignore[attr-defined]
            scores = torch.einsum("bqc,bqhw->bchw", classes, masks)
            # Where the queries claim a pixel by less than 1 in all, the rest is background: a pixel
            # no query claims would otherwise be decided by a ratio of tiny numbers.
            return scores[:, self.foreground_ids].sum(dim=1) / scores.sum(dim=1).clamp_min(1)
        logits = outputs.logits.float()  # type: ignore[attr-defined]
        if logits.shape[1] == 1:
            return logits[:, 0].sigmoid()
        return logits.softmax(dim=1)[:, self.foreground_ids].sum(dim=1)

    def composite(self, pixels: torch.Tensor, alpha: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The masked product blended onto the background colour, scaled into the canvas less its
        padding and centred there (H' x W' x 3 uint8); a plain canvas when the mask is empty."""
        import torch

        height, width = pixels.shape[:2]
        tall, wide = (self.canvas, self.canvas) if self.canvas else (height, width)
        colour = torch.tensor(self.colour, dtype=torch.float32, device=pixels.device)
        canvas = colour.expand(tall, wide, 3).clone()
        rows, cols = torch.nonzero(mask.any(dim=1)), torch.nonzero(mask.any(dim=0))
        if len(rows):
            top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
            weight = alpha[top:bottom, left:right, None]
            crop = pixels[top:bottom, left:right].float() * weight + colour * (1 - weight)
            margin = round(self.padding * min(tall, wide))
            room_h, room_w = max(1, tall - 2 * margin), max(1, wide - 2 * margin)
            fit = min(room_h / (bottom - top), room_w / (right - left))
            new_h = min(room_h, max(1, round((bottom - top) * fit)))
            new_w = min(room_w, max(1, round((right - left) * fit)))
            scaled = torch.nn.functional.interpolate(
                crop.permute(2, 0, 1)[None],
                size=(new_h, new_w),
                mode="bicubic",
                antialias=True,
                align_corners=False,
            )[0].permute(1, 2, 0)
            y, x = (tall - new_h) // 2, (wide - new_w) // 2
            canvas[y : y + new_h, x : x + new_w] = scaled
        return canvas.clamp(0, 255).round().to(torch.uint8)


def head_kind(config: PretrainedConfig) -> str:
    """SEMANTIC, MASK_CLASSIFICATION or MATTING: what a checkpoint's head predicts."""
    from transformers.models.auto import modeling_auto

    if config.model_type == "vitmatte":  # its processor and forward take a trimap as well
        raise ValueError(
            "vitmatte refines a trimap: give it as `matting` beside a segmentation checkpoint in `path`"
        )
    if set(config.architectures or ()) & set(modeling_auto.MODEL_FOR_IMAGE_MATTING_MAPPING_NAMES.values()):
        return MATTING
    if config.model_type in MASK_CLASSIFIERS:
        return MASK_CLASSIFICATION
    if config.model_type in modeling_auto.MODEL_FOR_UNIVERSAL_SEGMENTATION_MAPPING_NAMES:
        raise ValueError(
            f"{config.model_type} checkpoints are not supported: use {' or '.join(MASK_CLASSIFIERS)}"
        )
    return SEMANTIC


def unpadded(probability: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """`probability` (h x w, for the padded input) cut to the photo's part of the input, which
    `valid` (the processor's H x W pixel mask, padding at the bottom and right) marks."""
    import torch

    height, width = int(valid.any(dim=1).sum()), int(valid.any(dim=0).sum())
    full = torch.nn.functional.interpolate(
        probability[None, None], size=tuple(valid.shape), mode="bilinear", align_corners=False
    )
    return full[0, 0, :height, :width]


def foreground_labels(id2label: Mapping, classes: Sequence[str | int] | None) -> list[int]:
    """The label ids that count as foreground (see BackgroundRemover for the default rule)."""
    names = {int(key): str(name) for key, name in id2label.items()}
    if classes is None:
        background = [i for i, name in names.items() if name.strip("_ ").lower() in BACKGROUND_NAMES]
        return sorted(set(names) - set(background or [0]))
    by_name = {name.lower(): i for i, name in names.items()}
    picked = []
    for item in classes:
        if isinstance(item, int) and not isinstance(item, bool) and item in names:
            picked.append(item)
        elif isinstance(item, str) and item.lower() in by_name:
            picked.append(by_name[item.lower()])
        else:
            raise ValueError(
                f"{item!r} is no label of the checkpoint; its labels: {', '.join(names.values())}"
            )
    return sorted(set(picked))


def parse_colour(value: str | Sequence[int]) -> tuple[int, int, int]:
    """'#ffffff', a colour name or [r, g, b] (0-255) as an RGB triple."""
    if isinstance(value, str):
        return parse_background(value)
    triple = tuple(int(v) for v in value)
    if len(triple) != 3 or not all(0 <= v <= 255 for v in triple):
        raise ValueError(f"a colour is #rrggbb, a name or [r, g, b] in 0-255, got {value!r}")
    return triple  # type: ignore[return-value]
