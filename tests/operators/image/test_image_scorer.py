"""ImageScorer against direct CLIP / SigLIP computations on the same images and texts."""

import io

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

from operators.arrow_tensors import arrow_to_lists, arrow_to_tensor
from operators.image.decode_images import decode_images
from operators.image.image_scorer import ImageScorer
from operators.text.tokenize_texts import tokenize_texts
from tests.operators.image.test_image_embedder import jpegs

LABELS = ["a red cat", "a blue car", "the sea at night"]


def direct(
    path: str, images: list[bytes], texts: list[str], padding
) -> tuple[torch.Tensor, torch.Tensor, AutoModel]:
    model = AutoModel.from_pretrained(path).eval()
    pil = [Image.open(io.BytesIO(b)).convert("RGB") for b in images]
    with torch.inference_mode():
        image = model.get_image_features(
            **AutoImageProcessor.from_pretrained(path)(images=pil, return_tensors="pt")
        )
        text = model.get_text_features(
            **AutoTokenizer.from_pretrained(path)(texts, padding=padding, return_tensors="pt")
        )
    unit = lambda out: torch.nn.functional.normalize(getattr(out, "pooler_output", out), dim=-1)  # noqa: E731
    return unit(image), unit(text), model


def pixels(path: str, images: list[bytes]) -> np.ndarray:
    table = decode_images(pa.table({"image": images}), model_path=path, image_column="image")
    return arrow_to_tensor(table["pixel_values"])


def test_clip_score_and_zero_shot_match_a_direct_clip_computation(tiny_clip):
    images = jpegs(4)
    scorer = ImageScorer(tiny_clip, text="a red cat", labels=LABELS)
    out = scorer({"pixel_values": pixels(tiny_clip, images)})

    image, text, model = direct(tiny_clip, images, ["a red cat", *LABELS], padding=True)
    cosine = (image @ text[0]).numpy()
    np.testing.assert_allclose(out["clip_cosine"], cosine, atol=1e-5)
    np.testing.assert_allclose(out["clip_score"], 100 * np.maximum(cosine, 0), atol=1e-3)
    probs = (model.logit_scale.exp() * image @ text[1:].T).softmax(dim=-1).detach().numpy()
    np.testing.assert_allclose(out["label_probs"], probs, atol=1e-5)
    assert list(out["top_label"]) == [LABELS[i] for i in probs.argmax(axis=1)]
    assert scorer.outputs == ("clip_score", "clip_cosine", "label_probs", "top_label")


@pytest.mark.parametrize(("fixture", "padding"), [("tiny_clip", True), ("tiny_siglip", "max_length")])
def test_each_row_scored_against_its_own_text(fixture, padding, request):
    path = request.getfixturevalue(fixture)
    images, texts = jpegs(3), ["a red cat", "a blue car on the street", "sea"]
    table = tokenize_texts(pa.table({"text": texts}), model_path=path, text_column="text", keep_text=True)
    order = [texts.index(t) for t in table["text"].to_pylist()]  # the stage sorts by length
    scorer = ImageScorer(path, row_text=True)
    batch = {
        "pixel_values": pixels(path, [images[i] for i in order]),
        "input_ids": arrow_to_lists(table["input_ids"]),
    }
    out = scorer(batch)

    image, text, _ = direct(path, [images[i] for i in order], [texts[i] for i in order], padding=padding)
    np.testing.assert_allclose(out["clip_cosine"], (image * text).sum(dim=-1).numpy(), atol=1e-5)
    assert scorer.outputs == ("clip_score", "clip_cosine")


def test_siglip_labels_are_independent_sigmoids(tiny_siglip):
    images = jpegs(2)
    out = ImageScorer(tiny_siglip, labels=LABELS)({"pixel_values": pixels(tiny_siglip, images)})
    image, text, model = direct(tiny_siglip, images, LABELS, padding="max_length")
    expected = torch.sigmoid(model.logit_scale.exp() * image @ text.T + model.logit_bias).detach().numpy()
    np.testing.assert_allclose(out["label_probs"], expected, atol=1e-5)


def test_a_scorer_needs_something_to_score_against(tiny_clip):
    with pytest.raises(ValueError, match="needs a text"):
        ImageScorer(tiny_clip)


def laion_head(folder, kind: str, dim: int = 16) -> tuple[str, torch.nn.Module]:
    """A random head in a LAION aesthetic predictor's layout: one linear layer, or the MLP
    (Linear, Dropout, Linear, Dropout, Linear, Dropout, Linear, Linear) of the improved one."""
    torch.manual_seed(1)
    if kind == "linear":
        head = torch.nn.Linear(dim, 1)
    else:
        head = torch.nn.Sequential(
            torch.nn.Linear(dim, 24),
            torch.nn.Dropout(0.2),
            torch.nn.Linear(24, 12),
            torch.nn.Dropout(0.2),
            torch.nn.Linear(12, 8),
            torch.nn.Dropout(0.1),
            torch.nn.Linear(8, 4),
            torch.nn.Linear(4, 1),
        )
    state = (
        head.state_dict() if kind == "linear" else {f"layers.{k}": v for k, v in head.state_dict().items()}
    )
    path = folder / f"{kind}.safetensors" if kind == "mlp_safetensors" else folder / f"{kind}.pth"
    if kind == "mlp_safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return str(path), head.eval()


@pytest.mark.parametrize("kind", ["linear", "mlp", "mlp_safetensors"])
def test_an_aesthetic_head_scores_the_unit_image_embedding(tiny_clip, tmp_path, kind):
    images = jpegs(3)
    path, head = laion_head(tmp_path, kind)
    scorer = ImageScorer(tiny_clip, aesthetic=path)
    out = scorer({"pixel_values": pixels(tiny_clip, images)})

    image, _, _ = direct(tiny_clip, images, ["x"], padding=True)
    with torch.inference_mode():
        expected = head(image)[:, 0].numpy()
    np.testing.assert_allclose(out["aesthetic"], expected, atol=1e-5)
    assert scorer.outputs == ("aesthetic",)


def test_an_aesthetic_head_for_another_embedding_size_is_refused(tiny_clip, tmp_path):
    path, _ = laion_head(tmp_path, "linear", dim=768)  # ViT-L/14's, not the tiny CLIP's 16
    with pytest.raises(ValueError, match="takes 768-d inputs; the scorer's are 16-d"):
        ImageScorer(tiny_clip, aesthetic=path)


def test_an_image_classifier_gives_a_probability_column_per_label(tiny_clip, tiny_vit_classifier):
    from transformers import AutoModelForImageClassification

    images = jpegs(4)
    scorer = ImageScorer(tiny_clip, text="a cat", classifier=tiny_vit_classifier)
    out = scorer(
        {"pixel_values": pixels(tiny_clip, images), "classifier_pixels": pixels(tiny_vit_classifier, images)}
    )

    model = AutoModelForImageClassification.from_pretrained(tiny_vit_classifier).eval()
    pil = [Image.open(io.BytesIO(b)).convert("RGB") for b in images]
    with torch.inference_mode():
        inputs = AutoImageProcessor.from_pretrained(tiny_vit_classifier)(images=pil, return_tensors="pt")
        probs = model(**inputs).logits.softmax(dim=-1).numpy()
    assert scorer.outputs == ("clip_score", "clip_cosine", "safe", "nsfw")
    np.testing.assert_allclose(out["safe"], probs[:, 0], atol=1e-5)
    np.testing.assert_allclose(out["nsfw"], probs[:, 1], atol=1e-5)
