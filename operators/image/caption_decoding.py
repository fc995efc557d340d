"""The decoding settings both captioners share: greedy, beam search or seeded sampling."""

from __future__ import annotations

from typing import Any


def caption_generation_config(
    model: Any,
    tokenizer: Any,
    *,
    max_new_tokens: int,
    num_beams: int,
    do_sample: bool,
    temperature: float,
    top_p: float,
):
    """A GenerationConfig with the checkpoint's own special tokens and the job's decoding keys."""
    from transformers import GenerationConfig

    defaults = model.generation_config
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else defaults.pad_token_id
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
        do_sample=do_sample,
        temperature=temperature if do_sample else None,  # unset when greedy: no "unused flag" warnings
        top_p=top_p if do_sample else None,
        pad_token_id=pad,
        eos_token_id=defaults.eos_token_id,
        bos_token_id=defaults.bos_token_id,
        decoder_start_token_id=defaults.decoder_start_token_id,
    )
