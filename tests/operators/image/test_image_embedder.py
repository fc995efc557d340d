import io

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from operators.arrow_tensors import arrow_to_tensor
from operators.image.decode_images import decode_images
from operators.image.image_embedder import ImageEmbedder


def jpegs(count: int) -> list[bytes]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(count):
        array = rng.integers(0, 255, (30 + 7 * i, 50 - 3 * i, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=95)
        out.append(buffer.getvalue())
    return out


@pytest.mark.parametrize("fixture", ["tiny_clip", "tiny_siglip"])
def test_matches_a_direct_model_call(fixture, request):
    from transformers import AutoImageProcessor, AutoModel

    path = request.getfixturevalue(fixture)
    images = jpegs(4)
    table = decode_images(pa.table({"image": images}), model_path=path, image_column="image")
    ours = ImageEmbedder(path)({"pixel_values": arrow_to_tensor(table["pixel_values"])})["embedding"]

    model, processor = AutoModel.from_pretrained(path).eval(), AutoImageProcessor.from_pretrained(path)
    pil = [Image.open(io.BytesIO(b)).convert("RGB") for b in images]
    with torch.inference_mode():
        out = model.get_image_features(**processor(images=pil, return_tensors="pt"))
    expected = torch.nn.functional.normalize(getattr(out, "pooler_output", out), dim=-1).numpy()
    assert ours.shape == expected.shape and len(ours) == 4
    cosine = (ours * expected).sum(axis=1)
    assert cosine.min() >= 0.999


def test_normalize_off_keeps_the_raw_projection(tiny_clip):
    table = decode_images(pa.table({"image": jpegs(2)}), model_path=tiny_clip, image_column="image")
    pixels = arrow_to_tensor(table["pixel_values"])
    raw = ImageEmbedder(tiny_clip, normalize=False)({"pixel_values": pixels})["embedding"]
    unit = ImageEmbedder(tiny_clip)({"pixel_values": pixels})["embedding"]
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), unit, atol=1e-5)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)


def test_a_text_model_is_refused(tiny_bert):
    with pytest.raises(ValueError, match="get_image_features"):
        ImageEmbedder(tiny_bert)
