"""ChatCaptioner: whole RGB images (and an optional prompt) in, a caption per image out.

For vision-language chat models (SmolVLM / Idefics3, Qwen2-VL, LLaVA-style checkpoints): the
checkpoint's own processor tiles, resizes and normalises the images and expands the image
placeholders of the chat-templated prompt, so it runs here, next to the model; the CPU stage
(`decode_rgb`) only decodes, orients and bounds the size. Prompts are left-padded so a batch
of different prompts and image sizes generates in one call.

With a `constraint` (operators/text/output_grammar.py: a JSON schema, regex or choices) every
caption is decoded under it, e.g. SEO metadata as JSON for each product photo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from operators.image.caption_decoding import caption_generation_config
from operators.image.decode_images import rgb_image
from operators.load_pretrained import load_pretrained, trust_flag
from operators.model_files import local_model_dir
from operators.text.output_grammar import NEUTRAL_SAMPLING, GrammarDecoding, token_ids
from operators.torch_device import inference_mode

if TYPE_CHECKING:
    import torch
    from PIL import Image

DEFAULT_PROMPT = "Describe this image in one sentence."


class ChatCaptioner:
    """Generates one caption per image by chatting with a vision-language model."""

    inputs: ClassVar[tuple[str, ...]] = ("image_rgb", "image_shape")
    optional_inputs: ClassVar[tuple[str, ...]] = ("prompt",)  # per-row prompts, when the job makes them
    outputs: ClassVar[tuple[str, ...]] = ("caption", "generated_tokens")

    def __init__(
        self,
        path: str,
        revision: str | None = None,
        prompt: str | None = None,
        system_prompt: str | None = None,
        max_new_tokens: int = 64,
        num_beams: int = 1,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int = 0,
        dtype: str = "auto",
        device: str = "auto",
        trust_remote_code: bool = False,
        constraint: str | None = None,
        keep_images: bool = False,
    ) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if constraint is not None and num_beams > 1:
            raise ValueError("a constrained caption decodes one beam: set num_beams=1")

        folder = local_model_dir(path, revision)
        self.processor = AutoProcessor.from_pretrained(
            folder, trust_remote_code=trust_flag(trust_remote_code)
        )
        self.tokenizer = getattr(self.processor, "tokenizer", None)
        if self.tokenizer is None or not getattr(self.processor, "chat_template", None):
            raise ValueError(f"{path}: no processor with a tokenizer and a chat template (not a chat VLM)")
        self.tokenizer.padding_side = "left"  # generation continues every prompt from its last token
        # The processor is checked first: a checkpoint that is no chat VLM fails before its weights load.
        loaded = load_pretrained(
            AutoModelForImageTextToText,
            folder,
            device=device,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
        )
        self.model, self.device, self.dtype = loaded.model, loaded.device, loaded.dtype
        self.prompt = prompt or DEFAULT_PROMPT
        self.system_prompt = system_prompt
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
        self.special = set(self.tokenizer.all_special_ids)
        self.keeps_inputs = keep_images  # edit_images encodes the images it described after this stage
        self.constraint = constraint
        self.sampling = (temperature if do_sample else 0.0, top_p)
        if constraint is not None:
            self.grammar = GrammarDecoding(
                self.model, self.tokenizer, token_ids(self.generation.eos_token_id)
            )
            if do_sample:  # the warpers come after the grammar's mask
                self.generation.update(**NEUTRAL_SAMPLING)

    def chat_text(self, prompt: str) -> str:
        """The chat-templated text for one image and `prompt`, ending where the answer begins."""
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]})
        return self.processor.apply_chat_template(messages, add_generation_prompt=True)

    def encode(self, images: list[Image.Image], prompts: list[str]) -> dict[str, torch.Tensor]:
        """The processor's batch on the model's device: chat-templated, left-padded prompts, tiles."""
        import torch

        rendered = {prompt: self.chat_text(prompt) for prompt in dict.fromkeys(prompts)}  # once per prompt
        texts = [rendered[prompt] for prompt in prompts]
        encoded = self.processor(
            text=texts, images=[[image] for image in images], return_tensors="pt", padding=True
        )
        return {
            name: value.to(self.device, dtype=self.dtype)
            if value.is_floating_point()
            else value.to(self.device)
            for name, value in encoded.items()
            # BERT-style tokenizers add token_type_ids, which decoder-only generate() refuses
            if isinstance(value, torch.Tensor) and name != "token_type_ids"
        }

    @inference_mode
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        images = [
            rgb_image(raw, shape) for raw, shape in zip(batch["image_rgb"], batch["image_shape"], strict=True)
        ]
        prompts = batch.get("prompt")
        if prompts is None:
            prompts = [self.prompt] * len(images)
        inputs = self.encode(images, [str(prompt or self.prompt) for prompt in prompts])
        processors = None
        if self.constraint is not None:
            prompt_length = inputs["input_ids"].shape[1]
            processors = self.grammar.processors(self.constraint, len(images), prompt_length, *self.sampling)
        torch.manual_seed(self.seed)
        out = self.model.generate(**inputs, generation_config=self.generation, logits_processor=processors)
        answers = out[:, inputs["input_ids"].shape[1] :].tolist()  # left padding: new tokens start here
        captions = np.empty(len(images), dtype=object)
        counts = np.zeros(len(images), dtype=np.int32)
        for row, tokens in enumerate(answers):
            kept = [token for token in tokens if token not in self.special]
            captions[row] = self.tokenizer.decode(kept, skip_special_tokens=True).strip()
            counts[row] = len(kept)
        return {"caption": captions, "generated_tokens": counts}
