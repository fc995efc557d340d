"""ImageCaptioner: uint8 pixels (and an optional prompt) in, a caption per image out.

For image-to-text checkpoints that take a fixed-size `pixel_values` tensor: BLIP, GIT,
VisionEncoderDecoder (ViT + GPT-2) and similar. The CPU stage resized and cropped with the
checkpoint's own image processor; rescaling and normalisation happen here, on the device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from operators.image.caption_decoding import caption_generation_config
from operators.image.pixel_normalizer import PixelNormalizer
from operators.load_pretrained import LoadedModel, NoClassLoads, load_pretrained
from operators.torch_device import inference_mode

if TYPE_CHECKING:
    import torch

# Image-to-text checkpoints register with one of these, depending on the architecture.
CAPTION_AUTO_CLASSES = ("AutoModelForImageTextToText", "AutoModelForVision2Seq", "AutoModelForCausalLM")


def load_captioner(path: str, **options: Any) -> LoadedModel:
    """The image-to-text model through whichever auto class knows it; `options` go to load_pretrained."""
    import transformers

    classes = [getattr(transformers, name) for name in CAPTION_AUTO_CLASSES if hasattr(transformers, name)]
    try:
        return load_pretrained(classes, path, **options)
    except NoClassLoads as error:
        raise ValueError(f"{path} is not an image-to-text checkpoint ({error})") from None


def load_captioning_model(folder: str, dtype: torch.dtype, trust_remote_code: bool) -> Any:
    """The bare model on the CPU, for measurements that build their own batches (benchmarks)."""
    return load_captioner(folder, device="cpu", dtype=dtype, trust_remote_code=trust_remote_code).model


class ImageCaptioner:
    """Generates one caption per image; `prompt` (or a per-row `prompt` column) conditions it."""

    inputs: ClassVar[tuple[str, ...]] = ("pixel_values",)
    optional_inputs: ClassVar[tuple[str, ...]] = ("prompt",)  # per-row prompts, when the job makes them
    outputs: ClassVar[tuple[str, ...]] = ("caption", "generated_tokens")

    def __init__(
        self,
        path: str,
        revision: str | None = None,
        prompt: str | None = None,
        max_new_tokens: int = 30,
        num_beams: int = 1,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int = 0,
        dtype: str = "auto",
        device: str = "auto",
        trust_remote_code: bool = False,
    ) -> None:
        from transformers import AutoTokenizer

        loaded = load_captioner(
            path, revision=revision, device=device, dtype=dtype, trust_remote_code=trust_remote_code
        )
        self.model, self.device, self.dtype = loaded.model, loaded.device, loaded.dtype
        self.tokenizer = AutoTokenizer.from_pretrained(loaded.folder)
        self.pixels = PixelNormalizer(loaded.folder, self.device, self.dtype)
        self.prompt = prompt
        self.seed = seed
        self.generation = caption_generation_config(
            self.model,
            self.tokenizer,
            max_new_tokens=max_new_tokens,
            num_beams=num_beams,
            do_sample=do_sample,
            temperature=temperature,
            top_p=top_p,
        )

    @inference_mode
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pixels = self.pixels(batch["pixel_values"])
        prompts = batch.get("prompt")
        if prompts is None:
            prompts = np.array([self.prompt] * len(pixels), dtype=object)
        captions = np.empty(len(pixels), dtype=object)
        counts = np.zeros(len(pixels), dtype=np.int32)
        for prompt in dict.fromkeys(prompts):  # one generate() per distinct prompt
            rows = np.flatnonzero(prompts == prompt)
            texts, lengths = self._generate(pixels[rows], prompt)
            captions[rows], counts[rows] = texts, lengths
        return {"caption": captions, "generated_tokens": counts}

    def _generate(self, pixels: torch.Tensor, prompt: str | None) -> tuple[list[str], list[int]]:
        import torch

        kwargs = {"pixel_values": pixels}
        echo: list[int] = []
        if prompt:  # tokenized as the checkpoint's own processor does (special tokens included)
            encoded = self.tokenizer([prompt] * len(pixels), return_tensors="pt")
            kwargs.update(
                {k: v.to(self.device) for k, v in encoded.items() if k in ("input_ids", "attention_mask")}
            )
            echo = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        torch.manual_seed(self.seed)
        out = self.model.generate(**kwargs, generation_config=self.generation)
        special = set(self.tokenizer.all_special_ids)
        texts, lengths = [], []
        said = self.tokenizer.decode(echo, skip_special_tokens=True).strip()
        for sequence in out:
            ids = [token for token in sequence.tolist() if token not in special]
            text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
            if echo and ids[: len(echo)] == echo:  # BLIP, GIT and decoder prompts echo the prompt
                ids = ids[len(echo) :]
                # Cut the prompt from the text, not the tokens: a caption may go on mid-word.
                text = (
                    text[len(said) :].strip() if text.startswith(said) else self.tokenizer.decode(ids).strip()
                )
            texts.append(text)
            lengths.append(len(ids))
        return texts, lengths
