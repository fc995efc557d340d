import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from operators.arrow_tensors import arrow_to_tensor
from operators.image.chat_captioner import DEFAULT_PROMPT, ChatCaptioner
from operators.image.decode_images import decode_rgb
from operators.row_errors import ERROR


def jpegs(sizes: list[tuple[int, int]]) -> list[bytes]:
    rng = np.random.default_rng(5)
    out = []
    for height, width in sizes:
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buffer, format="JPEG")
        out.append(buffer.getvalue())
    return out


def direct_caption(path: str, image: Image.Image, prompt: str, max_new_tokens: int) -> str:
    """The checkpoint's processor, chat template and generate(), greedy, one image alone."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor, model = AutoProcessor.from_pretrained(path), AutoModelForImageTextToText.from_pretrained(path)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(text=[text], images=[[image]], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.tokenizer.decode(
        out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True
    ).strip()


def rgb_batch(images: list[bytes], max_side: int = 1536) -> tuple[dict, pa.Table]:
    table = decode_rgb(pa.table({"image": images}), image_column="image", max_side=max_side)
    return {
        "image_rgb": table["image_rgb"].to_numpy(),
        "image_shape": arrow_to_tensor(table["image_shape"]),
    }, table


def test_a_batch_of_sizes_and_prompts_matches_each_image_captioned_alone(tiny_smolvlm):
    images = jpegs([(60, 90), (120, 40), (33, 33)])
    batch, _ = rgb_batch(images)
    prompts = np.array(["what is this?", None, "describe the photo"], dtype=object)
    out = ChatCaptioner(tiny_smolvlm, max_new_tokens=8)({**batch, "prompt": prompts})
    for data, prompt, caption in zip(images, prompts, out["caption"], strict=True):
        image = Image.open(io.BytesIO(data)).convert("RGB")
        assert caption == direct_caption(tiny_smolvlm, image, prompt or DEFAULT_PROMPT, 8)
    assert all(0 < n <= 8 for n in out["generated_tokens"])


def test_decode_rgb_bounds_the_longer_side_and_records_bad_images():
    images = [*jpegs([(300, 200)]), b"not an image", b""]
    table = decode_rgb(pa.table({"image": images}), image_column="image", max_side=100)
    shapes = arrow_to_tensor(table["image_shape"])
    assert shapes[0].tolist() == [100, 67, 3] and len(table["image_rgb"][0].as_py()) == 100 * 67 * 3
    assert table[ERROR][0].as_py() is None
    assert "cannot identify image" in table[ERROR][1].as_py() and table[ERROR][2].as_py().endswith(
        "empty file (0 bytes)"
    )
    assert table["image_rgb"][1].as_py() is None and "image" not in table.column_names


def test_a_checkpoint_without_a_chat_template_is_refused(tiny_blip):
    with pytest.raises(ValueError, match="chat template"):
        ChatCaptioner(tiny_blip)


def test_the_system_prompt_and_the_default_prompt_reach_the_chat_template(tiny_smolvlm):
    plain = ChatCaptioner(tiny_smolvlm, max_new_tokens=2)
    told = ChatCaptioner(tiny_smolvlm, system_prompt="answer in french", max_new_tokens=2)
    assert plain.chat_text(DEFAULT_PROMPT) == f"User:<image> {DEFAULT_PROMPT}<end_of_utterance>\nAssistant:"
    assert told.chat_text("hi").startswith("System: answer in french<end_of_utterance>\nUser:<image> hi")


def test_trust_remote_code_must_be_a_real_bool_before_the_processor_loads(tiny_smolvlm):
    with pytest.raises(TypeError, match="true or false"):
        ChatCaptioner(tiny_smolvlm, trust_remote_code="false")


# SEO metadata for a product photo, bounded so that the toy's completions fit its max_new_tokens.
SEO_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 12},
        "alt_text": {"type": "string", "maxLength": 16},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3},
        "category": {"enum": ["shoes", "bags", "hats"]},
    },
    "required": ["title", "alt_text", "tags", "category"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("sampling", [{}, {"do_sample": True, "temperature": 1.2, "top_p": 0.9, "seed": 3}])
def test_a_json_schema_binds_every_caption(tiny_smolvlm, sampling):
    import json

    import jsonschema

    from operators.text.output_grammar import constraint_key

    batch, _ = rgb_batch(jpegs([(60, 90), (120, 40), (33, 33), (64, 64)]))
    key = constraint_key("json_schema", SEO_SCHEMA)
    out = ChatCaptioner(tiny_smolvlm, max_new_tokens=240, constraint=key, **sampling)(batch)
    for caption in out["caption"]:
        value = json.loads(caption)
        jsonschema.validate(value, SEO_SCHEMA)
        assert list(value) == list(SEO_SCHEMA["properties"])
    free = ChatCaptioner(tiny_smolvlm, max_new_tokens=30)(batch)["caption"]
    assert not any(caption.startswith("{") for caption in free)  # the toy alone writes noise
    with pytest.raises(ValueError, match="num_beams=1"):
        ChatCaptioner(tiny_smolvlm, num_beams=2, constraint=key)
