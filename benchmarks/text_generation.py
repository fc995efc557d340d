"""generate_text measurements in generated tokens/s: model ceiling (static batches of
pre-tokenized prompts, no Ray) and rayjobs end to end, on the same prompts and model."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from benchmarks.text_embedding import sync


def write_prompts(path: Path, prompts: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": list(range(len(prompts))), "prompt": prompts}), path)
    return path


def model_ceiling(
    model_path: str, prompts: list[str], batch_size: int, max_new_tokens: int, device: str
) -> float:
    """Generated tokens/s of greedy generate() on length-sorted, left-padded, pre-built batches."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    dtype = torch.float16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).eval().to(device)
    texts = sorted(
        (
            tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
            )
            if tokenizer.chat_template
            else p
            for p in prompts
        ),
        key=len,
    )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batches = [
        tokenizer(texts[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False).to(
            device
        )
        for i in range(0, len(texts), batch_size)
    ]
    generated = 0
    with torch.inference_mode():
        model.generate(**batches[0], max_new_tokens=2, do_sample=False, pad_token_id=pad)  # warm-up
        sync(device)
        started = time.perf_counter()
        for batch in batches:
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
            new = out[:, batch["input_ids"].shape[1] :]
            generated += int((new != pad).sum())
        sync(device)
    return generated / (time.perf_counter() - started)


def generated_tokens(out: Path) -> int:
    table = pq.read_table(out / "data", columns=["completion_tokens"])
    return sum(sum(row) for row in table["completion_tokens"].to_pylist())


# A label, a bounded score and a flag: short enough to finish within the harness's new tokens.
SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"enum": ["shoe", "bag", "hat", "coat"]},
        "score": {"type": "integer", "minimum": 0, "maximum": 9},
        "in_stock": {"type": "boolean"},
    },
    "required": ["label", "score", "in_stock"],
    "additionalProperties": False,
}


def write_schema(path: Path) -> Path:
    path.write_text(json.dumps(SCHEMA))
    return path


def schema_results(out: Path) -> tuple[int, float]:
    """Generated tokens and the fraction of completions that parse as JSON, of a constrained run."""
    table = pq.read_table(out / "data", columns=["completion_tokens", "json"])
    tokens = sum(sum(row) for row in table["completion_tokens"].to_pylist())
    parsed = [value for row in table["json"].to_pylist() for value in row]
    return tokens, sum(value is not None for value in parsed) / max(1, len(parsed))
