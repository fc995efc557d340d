import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    AutoImageProcessor,
    AutoModelForImageMatting,
    AutoModelForSemanticSegmentation,
    AutoModelForUniversalSegmentation,
    Mask2FormerConfig,
    OneFormerConfig,
    Sapiens2Config,
    SegformerImageProcessor,
    VitMatteConfig,
)
from transformers.modeling_outputs import SemanticSegmenterOutput

from benchmarks import random_checkpoints
from operators.image.background_remover import (
    MASK_CLASSIFICATION,
    MATTING,
    SEMANTIC,
    BackgroundRemover,
    foreground_labels,
    head_kind,
    parse_colour,
)
from operators.image.decode_images import raw_pixels, rgb_image
from operators.image.trimap_matting import trimap_of

GREY, RED, WHITE = (128, 128, 128), (255, 0, 0), (255, 255, 255)


def photos(sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    """Stripes plus noise: the tiny SegFormer's mask then covers part of each photo, not all of it."""
    rng = np.random.default_rng(3)
    out = []
    for height, width in sizes:
        y, x = np.mgrid[0:height, 0:width]
        noise = rng.integers(0, 256, (height, width))
        out.append(
            np.stack([128 + 100 * np.sin(x / 5), 128 + 100 * np.cos(y / 4), noise], -1).astype(np.uint8)
        )
    return out


def batch_of(images: list[np.ndarray]) -> dict[str, np.ndarray]:
    return {
        "image_rgb": np.array([image.tobytes() for image in images], dtype=object),
        "image_shape": np.array([image.shape for image in images], dtype=np.int32),
    }


def edited(out: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [raw_pixels(raw, shape) for raw, shape in zip(out["image_rgb"], out["image_shape"], strict=True)]


def direct_probability(path: str, image: np.ndarray, foreground: list[int]) -> np.ndarray:
    """The checkpoint's processor and model on one photo, softmax mass of `foreground`, bilinear
    up to the photo's size: the mask by hand."""
    processor = AutoImageProcessor.from_pretrained(path)
    model = AutoModelForSemanticSegmentation.from_pretrained(path).eval()
    pixels = processor(images=[Image.fromarray(image)], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        probability = model(pixel_values=pixels).logits.softmax(dim=1)[:, foreground].sum(dim=1, keepdim=True)
    up = torch.nn.functional.interpolate(
        probability, size=image.shape[:2], mode="bilinear", align_corners=False
    )
    return up[0, 0].numpy()


@pytest.mark.parametrize("classes", [None, ["product"]])
def test_masks_equal_the_processor_and_model_called_by_hand(tiny_segformer, classes):
    images = photos([(40, 48), (37, 29), (64, 64)])  # a batch of sizes
    foreground = [1, 2] if classes is None else [1]  # labels: background, product, shadow
    hard = BackgroundRemover(tiny_segformer, classes=classes, output="rgba")(batch_of(images))
    soft = BackgroundRemover(tiny_segformer, classes=classes, output="rgba", soft=True)(batch_of(images))
    for image, cut, faded, coverage in zip(
        images, edited(hard), edited(soft), hard["mask_coverage"], strict=True
    ):
        probability = direct_probability(tiny_segformer, image, foreground)
        mask = probability > 0.5
        assert 0.05 < mask.mean() < 0.95  # a real split, not all or nothing
        # Exact, except where float noise could tip a pixel sitting on the threshold.
        differs = (cut[..., 3] == 255) != mask
        assert not differs[np.abs(probability - 0.5) > 1e-5].any()
        assert set(np.unique(cut[..., 3])) <= {0, 255}
        assert np.array_equal(cut[..., :3], image)  # rgba keeps every pixel's colour
        assert coverage == pytest.approx(mask.mean(), abs=1e-6)
        assert np.abs(faded[..., 3].astype(int) - np.round(probability * 255)).max() <= 1


def up_to(probability: torch.Tensor, image: np.ndarray) -> np.ndarray:
    """An h x w probability resized bilinear to the photo."""
    size = image.shape[:2]
    return torch.nn.functional.interpolate(probability[None, None], size=size, mode="bilinear")[0, 0].numpy()


def one_at_a_time(path: str, auto_class: type, image: np.ndarray) -> object:
    """The checkpoint's processor and model on one photo: the model's outputs."""
    processor = AutoImageProcessor.from_pretrained(path)
    model = auto_class.from_pretrained(path).eval()
    with torch.no_grad():
        return model(
            pixel_values=processor(images=[Image.fromarray(image)], return_tensors="pt")["pixel_values"]
        )


def assert_alpha_follows(out: dict[str, np.ndarray], images: list[np.ndarray], probabilities: list) -> None:
    """The soft alpha is round(255 x probability) within one level, and the coverage is its share over 0.5."""
    for image, cut, coverage, probability in zip(
        images, edited(out), out["mask_coverage"], probabilities, strict=True
    ):
        assert 0.05 < (probability > 0.5).mean() < 0.95  # a real split, not all or nothing
        assert np.array_equal(cut[..., :3], image)
        assert np.abs(cut[..., 3].astype(int) - np.round(probability * 255)).max() <= 1
        assert coverage == pytest.approx((probability > 0.5).mean(), abs=0.01)


def mask_classification_by_hand(path: str, images: list[np.ndarray]) -> list[np.ndarray]:
    """The processor and model on the batch; per photo the foreground share of the class scores,
    its padding cut off by the processor's pixel mask, bilinear up to the photo's size."""
    processor = AutoImageProcessor.from_pretrained(path)
    model = AutoModelForUniversalSegmentation.from_pretrained(path).eval()
    inputs = processor(images=[Image.fromarray(image) for image in images], return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    # B x queries x (background, product, shadow): the no-object class dropped
    classes = outputs.class_queries_logits.softmax(-1)[..., :-1]
    masks = outputs.masks_queries_logits.sigmoid()  # B x queries x h x w
    scores = (classes[..., None, None] * masks[:, :, None]).sum(dim=1)  # B x classes x h x w
    probabilities = scores[:, 1:].sum(dim=1) / scores.sum(dim=1).clamp(min=1)
    found = []
    for image, probability, valid in zip(images, probabilities, inputs["pixel_mask"], strict=True):
        height, width = int(valid[:, 0].sum()), int(valid[0].sum())
        whole = up_to(probability, np.empty(valid.shape))  # at the padded input's size
        found.append(up_to(torch.from_numpy(whole[:height, :width].copy()), image))
    return found


def test_mask_classification_heads_give_the_foreground_share_of_the_class_scores(tiny_mask2former):
    images = photos([(40, 48), (37, 29), (30, 90)])  # 64 x 96, 96 x 64 and 32 x 96 for the model
    for image in images:
        out = BackgroundRemover(tiny_mask2former, output="rgba", soft=True)(batch_of([image]))
        assert_alpha_follows(out, [image], mask_classification_by_hand(tiny_mask2former, [image]))
    # Together, the processor pads them to 96 x 96; the remover cuts the padding off again.
    out = BackgroundRemover(tiny_mask2former, output="rgba", soft=True)(batch_of(images))
    assert_alpha_follows(out, images, mask_classification_by_hand(tiny_mask2former, images))


def test_matting_heads_give_their_alpha(tiny_sapiens2_matting):
    images = photos([(40, 30), (30, 60)])
    probabilities = []
    for image in images:
        alphas = one_at_a_time(tiny_sapiens2_matting, AutoModelForImageMatting, image).alphas
        probabilities.append(up_to(alphas[0, 0], image))
    out = BackgroundRemover(tiny_sapiens2_matting, output="rgba", soft=True)(batch_of(images))
    assert_alpha_follows(out, images, probabilities)
    with pytest.raises(ValueError, match="predicts the foreground itself"):
        BackgroundRemover(tiny_sapiens2_matting, classes=["product"])


def test_a_one_channel_head_gives_its_sigmoid(tmp_path):
    path = str(random_checkpoints.segformer(tmp_path / "binary", labels=("foreground",)))
    images = photos([(40, 48), (64, 64), (30, 90)])
    probabilities = []
    for image in images:
        logits = one_at_a_time(path, AutoModelForSemanticSegmentation, image).logits
        probabilities.append(up_to(logits[0, 0].sigmoid(), image))
    out = BackgroundRemover(path, output="rgba", soft=True)(batch_of(images))
    assert_alpha_follows(out, images, probabilities)


def test_the_head_kind_comes_from_the_checkpoint_s_architecture():
    matting = Sapiens2Config(architectures=["Sapiens2ForImageMatting"])
    assert head_kind(matting) == MATTING
    assert head_kind(Sapiens2Config(architectures=["Sapiens2ForSemanticSegmentation"])) == SEMANTIC
    assert head_kind(Mask2FormerConfig()) == MASK_CLASSIFICATION
    with pytest.raises(ValueError, match="vitmatte refines a trimap: give it as `matting`"):
        head_kind(VitMatteConfig())
    with pytest.raises(
        ValueError, match="oneformer checkpoints are not supported: use mask2former or maskformer"
    ):
        head_kind(OneFormerConfig())


def red_is_the_product(model: torch.nn.Module) -> None:
    """The model's forward replaced: 'product' wherever the normalised pixel is far redder than
    green (pure red), 'background' elsewhere, at the input's own size: a mask known exactly."""

    def forward(pixel_values: torch.Tensor, **_) -> SemanticSegmenterOutput:
        redness = pixel_values[:, 0] - pixel_values[:, 1]  # red 4.3, grey -0.1 after ImageNet mean/std
        product = 50 * (redness - 2)
        return SemanticSegmenterOutput(
            logits=torch.stack([torch.zeros_like(product), product, torch.full_like(product, -50.0)], dim=1)
        )

    model.forward = forward


@pytest.fixture
def full_size_segformer(tiny_segformer, tmp_path) -> str:
    """The tiny SegFormer with a processor that does not resize: the mask keeps the photo's pixels."""
    folder = tmp_path / "segformer"
    shutil.copytree(tiny_segformer, folder)
    SegformerImageProcessor(do_resize=False).save_pretrained(folder)
    return str(folder)


def photo_with(shape: tuple[int, int], paint) -> np.ndarray:
    image = np.full((*shape, 3), GREY, dtype=np.uint8)
    paint(image)
    return image


def remover(path: str, **options) -> BackgroundRemover:
    op = BackgroundRemover(path, **options)
    red_is_the_product(op.model)
    return op


def test_a_rectangle_is_scaled_into_the_padded_canvas_and_centred(full_size_segformer):
    def rectangle(image):
        image[10:25, 5:45] = RED  # 15 x 40 px

    image = photo_with((60, 80), rectangle)
    out = remover(full_size_segformer, canvas=100, padding=0.1)(batch_of([image]))
    # margin 10 px, room 80 x 80: x2 to 30 x 80, centred at rows 35..65, columns 10..90
    expected = np.full((100, 100, 3), WHITE, dtype=np.uint8)
    expected[35:65, 10:90] = RED
    assert np.array_equal(edited(out)[0], expected)
    assert out["mask_coverage"][0] == pytest.approx(15 * 40 / (60 * 80))


def test_on_the_photo_s_own_canvas_the_product_touches_the_padding_on_its_tight_axis(full_size_segformer):
    def rectangle(image):
        image[40:55, 2:42] = RED  # in a corner

    image = photo_with((60, 80), rectangle)
    result = edited(remover(full_size_segformer, padding=0.1, background_color="#ffffff")(batch_of([image])))[
        0
    ]
    assert result.shape == (60, 80, 3)
    rows, cols = np.nonzero((result != WHITE).any(axis=-1))
    top, bottom, left, right = rows.min(), 60 - 1 - rows.max(), cols.min(), 80 - 1 - cols.max()
    assert left == right == 6  # margin = 0.1 x the shorter side; the width is the tight axis
    assert abs(top - bottom) <= 1 and top >= 6
    assert (result[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] == RED).all()


def test_outside_the_moved_and_scaled_shape_everything_is_the_background_colour(full_size_segformer):
    def disc(image):
        y, x = np.mgrid[0:60, 0:80]
        image[(y - 20) ** 2 + (x - 60) ** 2 <= 12**2] = RED  # off-centre, radius 12 (25 px across)

    image = photo_with((60, 80), disc)
    colour = (0, 128, 255)
    result = edited(
        remover(full_size_segformer, canvas=64, padding=0.125, background_color=list(colour))(
            batch_of([image])
        )
    )[0]
    # margin 8 px: the 25 px disc grows to 48 px, centred at (32, 32) with radius 24
    y, x = np.mgrid[0:64, 0:64]
    distance = np.hypot(y - 31.5, x - 31.5)
    # Bicubic reaches 2 source px (4 output px) across the disc's stair-stepped edge; its lobes
    # leave 1-level ripples up to 6 px inside.
    assert (result[distance > 24 + 4] == colour).all()
    assert (result[distance < 24 - 6] == RED).all()
    assert (result[:8] == colour).all() and (result[-8:] == colour).all()  # the padding
    assert (result[:, :8] == colour).all() and (result[:, -8:] == colour).all()
    rows, cols = np.nonzero((result != colour).any(axis=-1))
    assert abs(rows.mean() - 31.5) < 0.5 and abs(cols.mean() - 31.5) < 0.5


def test_a_photo_without_foreground_keeps_its_row_with_coverage_0(full_size_segformer):
    image = photo_with((30, 40), lambda image: None)
    plain = remover(full_size_segformer, canvas=50)(batch_of([image]))
    assert plain["mask_coverage"][0] == 0
    assert np.array_equal(edited(plain)[0], np.full((50, 50, 3), WHITE, dtype=np.uint8))
    cut = remover(full_size_segformer, output="rgba")(batch_of([image]))
    assert (edited(cut)[0][..., 3] == 0).all()


def test_rgba_output_reads_back_as_an_rgba_image_for_the_encode_stage(full_size_segformer):
    def rectangle(image):
        image[5:10, 5:20] = RED

    image = photo_with((20, 30), rectangle)
    out = remover(full_size_segformer, output="rgba")(batch_of([image]))
    picture = rgb_image(out["image_rgb"][0], out["image_shape"][0])
    assert picture.mode == "RGBA" and picture.size == (30, 20)
    alpha = np.asarray(picture)[..., 3]
    assert (alpha[5:10, 5:20] == 255).all() and alpha.sum() == 255 * 5 * 15


def test_a_trimap_leaves_a_band_either_side_of_the_mask_s_edge():
    mask = torch.zeros(20, 30, dtype=torch.bool)
    mask[5:15, 0:12] = True  # touches the photo's left border
    trimap = trimap_of(mask, band=2).numpy()
    expected = np.zeros((20, 30), dtype=np.uint8)
    expected[3:17, 0:14] = 128  # grown by 2 (the border is no background)
    expected[7:13, 0:10] = 255  # shrunk by 2 from the edges inside the photo
    assert np.array_equal(trimap, expected)


def test_a_vitmatte_refines_the_mask_s_edge_band_only(
    full_size_segformer, tiny_vitmatte, tiny_sapiens2_matting
):
    def rectangle(image):
        image[10:30, 12:40] = RED

    image = photo_with((44, 52), rectangle)
    out = remover(full_size_segformer, output="rgba", soft=True, matting=tiny_vitmatte, matting_band=3)(
        batch_of([image])
    )
    alpha = edited(out)[0][..., 3].astype(int)
    mask = torch.zeros(44, 52, dtype=torch.bool)
    mask[10:30, 12:40] = True
    trimap = trimap_of(mask, band=3).numpy()
    processor = AutoImageProcessor.from_pretrained(tiny_vitmatte)
    model = AutoModelForImageMatting.from_pretrained(tiny_vitmatte).eval()
    inputs = processor(
        images=[Image.fromarray(image)], trimaps=[Image.fromarray(trimap)], return_tensors="pt"
    )
    with torch.no_grad():
        by_hand = model(**inputs).alphas[0, 0, :44, :52].numpy()  # the processor padded to 64 x 64
    band = trimap == 128
    assert band.sum() == (26 * 34 - 14 * 22)  # the rectangle grown and shrunk by 3 px
    assert np.abs(alpha[band] - np.round(by_hand[band] * 255)).max() <= 1
    assert (alpha[trimap == 255] == 255).all() and (alpha[trimap == 0] == 0).all()
    assert 0 < alpha[band].min() < alpha[band].max() < 255  # the model's own alpha, not the mask
    with pytest.raises(ValueError, match="matting takes a trimap model"):
        BackgroundRemover(full_size_segformer, matting=tiny_sapiens2_matting)


def test_foreground_labels_default_to_everything_but_the_background():
    assert foreground_labels({0: "background", 1: "product", 2: "shadow"}, None) == [1, 2]
    assert foreground_labels({"0": "person", "1": "__background__"}, None) == [0]
    assert foreground_labels({0: "LABEL_0", 1: "LABEL_1"}, None) == [1]  # no name says background: id 0
    assert foreground_labels({0: "background", 1: "Product", 2: "shadow"}, ["product", 2]) == [1, 2]
    with pytest.raises(ValueError, match="no label of the checkpoint; its labels: background, product"):
        foreground_labels({0: "background", 1: "product"}, ["shoe"])


def test_bad_options_are_refused_before_any_image(tiny_segformer):
    for options, message in [
        ({"output": "png"}, "output must be one of"),
        ({"threshold": 1.0}, "threshold"),
        ({"padding": 0.5}, "padding"),
        ({"background_color": [255, 255]}, "a colour is"),
        ({"background_color": "#zzzzzz"}, "not a colour"),
    ]:
        with pytest.raises(ValueError, match=message):
            BackgroundRemover(tiny_segformer, **options)
    assert parse_colour("white") == parse_colour([255, 255, 255]) == parse_colour("#FFFFFF") == WHITE
