"""Random-weight Hugging Face checkpoints of any size, built offline in seconds.

The defaults are toy sizes (hidden size 32, two layers, 32 px images) for the tests; the
benchmarks pass real models' shapes, since throughput does not depend on the weights' values.
Shapes are mappings in each config class's own keyword names, merged over its defaults: an
empty mapping means the config class's default, which is usually the base model's shape.

This lives in `benchmarks`, not `tests`, because `benchmarks` is installed with rayjobs and
`tests` is not: a machine that gets only the package (a GPU box) still builds its benchmark
models, and the tests import their tiny ones from here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

WORDS = (
    "a the cat dog red blue shoe car tree house photo of on in with and white black small big "
    "green sky sea man woman child plays runs sits park street night day"
).split()

TOY_TOWER = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 2}
TOY_TEXT = {**TOY_TOWER, "max_position_embeddings": 64}
TOY_VISION = {**TOY_TOWER, "image_size": 32, "patch_size": 8}
TOY_GPT2 = {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 128}
TOY_LLAMA = {**TOY_TOWER, "num_key_value_heads": 1, "max_position_embeddings": 512}

# Plain "role: content" lines; the model answers after "assistant:".
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
# SmolVLM's layout: "User:<image> text<end_of_utterance>", string or list content.
VLM_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] | capitalize }}:"
    "{% if m['content'] is string %} {{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>{% elif c['type'] == 'text' %} {{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


def word_piece_tokenizer(folder: Path, model_max_length: int = 64) -> PreTrainedTokenizerFast:
    """A BERT-style WordPiece tokenizer over a tiny vocabulary, built with `tokenizers`.

    (transformers 5 ignores a bare vocab.txt: wrapping the tokenizer object keeps the vocabulary.)
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *letters, *[f"##{c}" for c in letters]]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    backend.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
    )


def byte_level_tokenizer(
    folder: Path,
    chat_template: bool = True,
    *,
    corpus: Iterable[str] | None = None,
    vocab_size: int = 300,
    min_frequency: int = 1,
    model_max_length: int = 128,
) -> PreTrainedTokenizerFast:
    """A GPT-2-style byte-level BPE tokenizer trained on `corpus` (default: the toy vocabulary)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    if corpus is None:
        corpus = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))] * 4
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        corpus,
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=["<|endoftext|>", "<|pad|>"],
    )
    # Rebuilt from vocab/merges files it would reload with an empty vocabulary under transformers 5.
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        pad_token="<|pad|>",
        model_max_length=model_max_length,
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def text_token_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """Vocabulary size and special ids for a text tower that reads `tokenizer` (BERT-style: CLS/SEP)."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    return {
        "vocab_size": len(tokenizer),
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": tokenizer.pad_token_id,
    }


def bert(
    folder: Path,
    tokenizer: PreTrainedTokenizerBase,
    text: Mapping[str, Any] = TOY_TEXT,
    *,
    sentence_transformers_files: bool = False,
) -> Path:
    """A BERT encoder with its tokenizer; optionally sentence-transformers files (cls pooling,
    Normalize, max_seq_length 16)."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), **text)
    BertModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if sentence_transformers_files:
        pooling = {"word_embedding_dimension": config.hidden_size, "pooling_mode_cls_token": True}
        (folder / "1_Pooling").mkdir(exist_ok=True)
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ]
        (folder / "modules.json").write_text(json.dumps(modules))
        (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 16}))
    return folder


def clip(
    folder: Path,
    tokenizer: PreTrainedTokenizerBase | None,
    text: Mapping[str, Any] = TOY_TEXT,
    vision: Mapping[str, Any] = TOY_VISION,
    projection_dim: int = 16,
) -> Path:
    """A CLIP (shortest-edge resize + center crop to the tower's size); without a tokenizer the
    text tower keeps its default vocabulary and no tokenizer is saved (image-only uses)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    ids = text_token_ids(tokenizer) if tokenizer is not None else {}
    config = CLIPConfig(
        text_config={**ids, **text}, vision_config=dict(vision), projection_dim=projection_dim
    )
    CLIPModel(config).eval().save_pretrained(folder)
    side = config.vision_config.image_size
    CLIPImageProcessor(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side}
    ).save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder


def vit_classifier(
    folder: Path,
    labels: Sequence[str] = ("safe", "nsfw"),
    vision: Mapping[str, Any] = TOY_VISION,
    side: int = 24,
) -> Path:
    """A ViT image classifier (plain resize to `side`, ImageNet mean/std) with `labels`."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    config = ViTConfig(
        **{**dict(vision), "image_size": side},
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    ViTForImageClassification(config).eval().save_pretrained(folder)
    ViTImageProcessor(
        size={"height": side, "width": side},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(folder)
    return folder


def siglip(
    folder: Path,
    tokenizer: PreTrainedTokenizerBase,
    text: Mapping[str, Any] = TOY_TEXT,
    vision: Mapping[str, Any] = TOY_VISION,
) -> Path:
    """A SigLIP (plain resize to the tower's size, mean/std 0.5)."""
    import torch
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    torch.manual_seed(0)
    config = SiglipConfig(text_config={**text_token_ids(tokenizer), **text}, vision_config=dict(vision))
    SiglipModel(config).eval().save_pretrained(folder)
    side = config.vision_config.image_size
    SiglipImageProcessor(size={"height": side, "width": side}).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def gpt2(folder: Path, tokenizer: PreTrainedTokenizerBase, shape: Mapping[str, Any] = TOY_GPT2) -> Path:
    """A GPT-2 causal LM with its tokenizer (and the tokenizer's chat template)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(**text_token_ids(tokenizer), **shape)).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def blip(
    folder: Path,
    tokenizer: PreTrainedTokenizerBase,
    text: Mapping[str, Any] = TOY_TEXT,
    vision: Mapping[str, Any] = TOY_VISION,
    projection_dim: int = 16,
) -> Path:
    """A BLIP captioner (BERT-style decoder: [CLS] starts a caption, [SEP] ends it)."""
    import torch
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    torch.manual_seed(0)
    tokenizer.add_special_tokens({"bos_token": "[CLS]", "eos_token": "[SEP]"})
    ids = {**text_token_ids(tokenizer), "sep_token_id": tokenizer.sep_token_id}
    config = BlipConfig(
        text_config={**ids, **text}, vision_config=dict(vision), projection_dim=projection_dim
    )
    BlipForConditionalGeneration(config).eval().save_pretrained(folder)
    side = config.vision_config.image_size
    image_processor = BlipImageProcessor(size={"height": side, "width": side})
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def smolvlm(
    folder: Path,
    tokenizer: PreTrainedTokenizerBase,
    text: Mapping[str, Any] = TOY_LLAMA,
    vision: Mapping[str, Any] = TOY_VISION,
    *,
    scale_factor: int = 2,
    tile_tokens: int = 4,
) -> Path:
    """SmolVLM's architecture (Idefics3: a SigLIP-style vision tower + Llama) with a SmolVLM-style
    chat template. Images are split into tiles of the tower's size, up to two a side plus a global
    view; each tile becomes (side / patch / scale_factor)^2 image tokens. `tile_tokens`: the
    <row_r_col_c> markers the tokenizer knows, r and c up to it."""
    import torch
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
    )

    torch.manual_seed(0)
    tiles = [f"<row_{r}_col_{c}>" for r in range(1, tile_tokens + 1) for c in range(1, tile_tokens + 1)]
    specials = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>", *tiles]
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    end = tokenizer.convert_tokens_to_ids("<end_of_utterance>")
    config = Idefics3Config(
        text_config={"model_type": "llama", **text_token_ids(tokenizer), "eos_token_id": end, **text},
        vision_config=dict(vision),
        scale_factor=scale_factor,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    model = Idefics3ForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = end
    model.save_pretrained(folder)
    side, patch = config.vision_config.image_size, config.vision_config.patch_size
    images = Idefics3ImageProcessorPil(
        size={"longest_edge": 2 * side}, max_image_size={"longest_edge": side}, do_image_splitting=True
    )
    Idefics3Processor(
        image_processor=images,
        tokenizer=tokenizer,
        image_seq_len=(side // patch // scale_factor) ** 2,
        chat_template=VLM_CHAT_TEMPLATE,
    ).save_pretrained(folder)
    return folder


TOY_UNET = {
    "block_out_channels": (8, 16),
    "layers_per_block": 1,
    "sample_size": 8,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "cross_attention_dim": 32,
    "norm_num_groups": 4,
    "attention_head_dim": 2,
}
TOY_VAE = {"block_out_channels": (8, 16), "norm_num_groups": 4}


def stable_diffusion(
    folder: Path,
    unet: Mapping[str, Any] = TOY_UNET,
    vae: Mapping[str, Any] = TOY_VAE,
    text: Mapping[str, Any] = TOY_TOWER,
) -> Path:
    """A Stable Diffusion pipeline (UNet, VAE, CLIP text encoder with a byte-level BPE tokenizer,
    DDIM). Toy defaults make 16 px images (8 px latents); an empty `unet` / `vae` mapping is
    diffusers' default shape, which is SD 1.x's."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    tokenizer, encoder = clip_text_encoder(text)
    blocks = len(vae.get("block_out_channels", (64,)))
    StableDiffusionPipeline(
        vae=AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D"] * blocks,
            up_block_types=["UpDecoderBlock2D"] * blocks,
            latent_channels=4,
            **vae,
        ),
        text_encoder=encoder,
        tokenizer=tokenizer,
        unet=UNet2DConditionModel(in_channels=4, out_channels=4, **unet),
        scheduler=DDIMScheduler(clip_sample=False, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(folder)
    return folder


def clip_text_encoder(text: Mapping[str, Any] = TOY_TOWER) -> tuple[Any, Any]:
    """A CLIP text encoder and its byte-level BPE tokenizer (77 positions), as diffusion pipelines take."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([" ".join(WORDS)] * 4, vocab_size=300, special_tokens=["<|endoftext|>"])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=77,  # without it the text encoder call overflows
    )
    encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), max_position_embeddings=77, **text))
    return tokenizer, encoder


def stable_diffusion_upscaler(folder: Path, unet: Mapping[str, Any] = TOY_UNET) -> Path:
    """A Stable Diffusion x4 upscaling pipeline: latents the size of the input image, which the
    UNet takes beside them (7 channels in) with the noise level as its class label, decoded 4x by
    a three-level VAE with the x4 upscaler's scaling factor."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableDiffusionUpscalePipeline,
        UNet2DConditionModel,
    )

    torch.manual_seed(0)
    tokenizer, encoder = clip_text_encoder()
    StableDiffusionUpscalePipeline(
        vae=AutoencoderKL(
            down_block_types=["DownEncoderBlock2D"] * 3,
            up_block_types=["UpDecoderBlock2D"] * 3,
            block_out_channels=(8, 8, 16),
            norm_num_groups=4,
            latent_channels=4,
            scaling_factor=0.08333,
        ),
        text_encoder=encoder,
        tokenizer=tokenizer,
        unet=UNet2DConditionModel(**{**unet, "in_channels": 7, "out_channels": 4, "num_class_embeds": 1000}),
        low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(clip_sample=False, steps_offset=1),
        max_noise_level=350,
    ).save_pretrained(folder)
    return folder


TOY_SEGFORMER = {
    "num_encoder_blocks": 2,
    "depths": [1, 1],
    "sr_ratios": [2, 1],
    "hidden_sizes": [8, 16],
    "patch_sizes": [7, 3],
    "strides": [4, 2],
    "num_attention_heads": [1, 2],
    "mlp_ratios": [2, 2],
    "decoder_hidden_size": 16,
    "initializer_range": 0.5,  # at 0.02 a toy head gives every pixel the same probabilities
}


def segformer(
    folder: Path,
    labels: Sequence[str] = ("background", "product", "shadow"),
    shape: Mapping[str, Any] = TOY_SEGFORMER,
    side: int = 32,
) -> Path:
    """A SegFormer semantic segmentation head with `labels` (plain resize to `side`, ImageNet
    mean/std); logits at a quarter of `side`, as real SegFormers make them."""
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    torch.manual_seed(0)
    config = SegformerConfig(
        **shape,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    SegformerForSemanticSegmentation(config).eval().save_pretrained(folder)
    SegformerImageProcessor(size={"height": side, "width": side}).save_pretrained(folder)
    return folder


TOY_MASK2FORMER = {
    "num_queries": 5,
    "hidden_dim": 32,  # the pixel decoder's GroupNorm takes 32 groups
    "mask_feature_size": 32,
    "feature_size": 32,
    "encoder_layers": 1,
    "decoder_layers": 2,
    "num_attention_heads": 2,
    "dim_feedforward": 32,
    "encoder_feedforward_dim": 32,
}
TOY_SWIN = {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2], "window_size": 4}


def mask2former(
    folder: Path,
    labels: Sequence[str] = ("background", "product", "shadow"),
    shape: Mapping[str, Any] = TOY_MASK2FORMER,
    backbone: Mapping[str, Any] = TOY_SWIN,
    side: int = 64,
) -> Path:
    """A Mask2Former (mask classification: queries x classes, queries x masks at a quarter of the
    input) on a Swin backbone; its processor keeps the aspect ratio, rounds to 32 px and pads.
    An empty `shape` is transformers' default decoder (100 queries, 10 layers), the real models'."""
    import torch
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig
    from transformers.models.mask2former import image_processing_pil_mask2former as pil

    torch.manual_seed(0)
    swin = SwinConfig(
        **backbone, image_size=side, patch_size=4, out_features=["stage1", "stage2", "stage3", "stage4"]
    )
    config = Mask2FormerConfig(
        **shape,
        backbone_config=swin,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    model = Mask2FormerForUniversalSegmentation(config).eval()
    with torch.no_grad():  # at the default init every pixel gets the same scores: sharpen the heads
        for name, weights in model.named_parameters():
            if "mask_embedder" in name and name.endswith("weight"):
                weights.mul_(10)
            elif name.startswith("class_predictor"):
                weights.mul_(3) if name.endswith("weight") else weights.zero_()
    model.save_pretrained(folder)
    # The PIL backend: the default one needs torchvision, which the test machines lack.
    pil.Mask2FormerImageProcessorPil(
        size={"shortest_edge": side, "longest_edge": 3 * side // 2}, size_divisor=32
    ).save_pretrained(folder)
    return folder


TOY_SAPIENS2 = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_attention_heads": 1,
    "num_first_full_attention_layers": 1,
    "num_last_full_attention_layers": 1,
    "num_register_tokens": 2,
    "patch_size": 16,
}


def sapiens2_matting(folder: Path, shape: Mapping[str, Any] = TOY_SAPIENS2, side: int = 64) -> Path:
    """A Sapiens2 matting model (the photo in, foreground and alpha out at a quarter of the input).
    Saved with a ViT image processor doing Sapiens2's resize and normalise: Sapiens2's own
    processor needs torchvision, which the test machines lack."""
    import torch
    from transformers import Sapiens2Config, Sapiens2ForImageMatting, ViTImageProcessor

    torch.manual_seed(0)
    config = Sapiens2Config(
        **shape,
        image_size=side,
        out_indices=[shape["num_hidden_layers"]],
        num_labels=4,  # RGB foreground and alpha
        head_config={"upsample_out_channels": [16, 8], "conv_out_channels": [8]},
    )
    Sapiens2ForImageMatting(config).eval().save_pretrained(folder)
    ViTImageProcessor(size={"height": side, "width": 3 * side // 4}).save_pretrained(folder)
    return folder


TOY_VITDET = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "mlp_ratio": 2}


def vitmatte(folder: Path, backbone: Mapping[str, Any] = TOY_VITDET, side: int = 64) -> Path:
    """A VitMatte trimap matting model (photo and trimap in, 4 channels; alpha out at the
    input's size) on a ViTDet backbone; its processor pads to a multiple of 32, bottom and right."""
    import torch
    from transformers import VitDetConfig, VitMatteConfig, VitMatteForImageMatting
    from transformers.models.vitmatte import image_processing_pil_vitmatte as pil

    torch.manual_seed(0)
    spread = 0.2  # at the default 0.02 every pixel's alpha is 0.5
    config = VitMatteConfig(
        backbone_config=VitDetConfig(
            **backbone,
            image_size=side,
            pretrain_image_size=side,
            patch_size=16,
            num_channels=4,
            initializer_range=spread,
        ),
        hidden_size=backbone["hidden_size"],
        convstream_hidden_sizes=[8, 16, 16],
        fusion_hidden_sizes=[16, 16, 8, 8],
        initializer_range=spread,
    )
    model = VitMatteForImageMatting(config).eval()
    with torch.no_grad():  # and its last conv's output still spans a few hundredths: widen it
        last = model.decoder.matting_head.matting_convs[-1]
        last.weight.mul_(100)
        last.bias.zero_()
    model.save_pretrained(folder)
    pil.VitMatteImageProcessorPil().save_pretrained(folder)  # the default backend needs torchvision
    return folder


TOY_SWIN2SR = {"embed_dim": 16, "depths": [1, 1], "num_heads": [2, 2], "window_size": 8, "mlp_ratio": 2.0}


def swin2sr(
    folder: Path,
    upscale: int = 2,
    shape: Mapping[str, Any] = TOY_SWIN2SR,
    upsampler: str = "pixelshuffledirect",
) -> Path:
    """A Swin2SR super-resolution model with its image processor (rescale, symmetric pad to a
    multiple of 8). The default upsampler is the lightweight checkpoints'; at toy size its output
    varies with the input far more than the classical ones' "pixelshuffle" (std 15 grey levels
    against 6), so tests see what tiling changes."""
    import torch
    from transformers import Swin2SRConfig, Swin2SRForImageSuperResolution, Swin2SRImageProcessor

    torch.manual_seed(0)
    config = Swin2SRConfig(**shape, upscale=upscale, upsampler=upsampler)
    Swin2SRForImageSuperResolution(config).eval().save_pretrained(folder)
    Swin2SRImageProcessor(size_divisor=8).save_pretrained(folder)
    return folder
