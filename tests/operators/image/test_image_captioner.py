import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from operators.arrow_tensors import arrow_to_tensor
from operators.image.decode_images import decode_images
from operators.image.image_captioner import ImageCaptioner


def pngs(count: int) -> list[bytes]:
    rng = np.random.default_rng(3)
    out = []
    for i in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (28 + 4 * i, 40, 3), dtype=np.uint8)).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def direct_captions(path: str, images: list[bytes], prompt: str | None, max_new_tokens: int) -> list[str]:
    """The checkpoint's own processor and generate(), greedy, one image at a time."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor, model = AutoProcessor.from_pretrained(path), AutoModelForImageTextToText.from_pretrained(path)
    captions = []
    for data in images:
        inputs = processor(
            images=Image.open(io.BytesIO(data)).convert("RGB"), text=prompt, return_tensors="pt"
        )
        text = processor.tokenizer.decode(
            model.generate(**inputs, max_new_tokens=max_new_tokens)[0], skip_special_tokens=True
        ).strip()
        captions.append(text[len(prompt) :].strip() if prompt and text.startswith(prompt) else text)
    return captions


@pytest.mark.parametrize("prompt", [None, "a photo of"])
def test_matches_a_direct_greedy_generate(tiny_blip, prompt):
    images = pngs(3)
    table = decode_images(pa.table({"image": images}), model_path=tiny_blip, image_column="image")
    out = ImageCaptioner(tiny_blip, prompt=prompt, max_new_tokens=8)(
        {"pixel_values": arrow_to_tensor(table["pixel_values"])}
    )
    assert list(out["caption"]) == direct_captions(tiny_blip, images, prompt, 8)
    assert all(0 < n <= 8 for n in out["generated_tokens"])
    assert not any(c.startswith("a photo of") for c in out["caption"])


def test_per_row_prompts_are_grouped(tiny_blip):
    images = pngs(4)
    pixels = arrow_to_tensor(
        decode_images(pa.table({"image": images}), model_path=tiny_blip, image_column="image")["pixel_values"]
    )
    captioner = ImageCaptioner(tiny_blip, max_new_tokens=6)
    prompts = np.array(["a photo of", None, "a photo of", None], dtype=object)
    mixed = captioner({"pixel_values": pixels, "prompt": prompts})["caption"]
    assert mixed[1] == captioner({"pixel_values": pixels[1:2]})["caption"][0]
    assert (
        mixed[2]
        == ImageCaptioner(tiny_blip, prompt="a photo of", max_new_tokens=6)({"pixel_values": pixels[2:3]})[
            "caption"
        ][0]
    )


def test_an_embedding_model_is_not_a_captioner(tiny_clip):
    with pytest.raises(ValueError, match="image-to-text"):
        ImageCaptioner(tiny_clip)
