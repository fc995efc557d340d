"""What a constrained-decoding library costs per generated token, for the pick behind
generate_text's structured outputs: llguidance, xgrammar and outlines-core (those importable).

    python -m benchmarks.grammar_masks [--vocab 32000] [--files N] [--json out.json]

One JSON schema, one valid document tokenized by a byte-level BPE of `--vocab` tokens (trained
here on the Python standard library's sources, offline); each library compiles the schema, then
for every token of the document computes the next-token mask and consumes the token. Reported:
compile ms (median of REPEATS) and mask microseconds per token (mean and p99 over REPEATS
documents), on one CPU thread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import sysconfig
import time
from pathlib import Path

from benchmarks.models import CACHE

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 80},
        "category": {"enum": ["shoes", "bags", "hats", "coats", "watches"]},
        "price": {"type": "number", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 8},
        "size": {
            "type": "object",
            "properties": {"width_cm": {"type": "integer"}, "height_cm": {"type": "integer"}},
            "required": ["width_cm", "height_cm"],
            "additionalProperties": False,
        },
    },
    "required": ["title", "category", "price", "tags", "size"],
    "additionalProperties": False,
}
DOCUMENT = {
    "title": "Leather ankle boots with a stacked heel and side zip, waxed finish",
    "category": "shoes",
    "price": 129.5,
    "tags": ["leather", "ankle", "boots", "autumn", "brown"],
    "size": {"width_cm": 11, "height_cm": 24},
}
SEPARATORS = (", ", ": ")  # the layout generate_text fixes (operators/text/output_grammar.JSON_LAYOUT)


def tokenizer(vocab: int, files: int | None = None):
    """A GPT-2-style byte-level BPE of `vocab` tokens trained on the standard library's sources
    (the first `files` of them in path order, or all)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    folder = CACHE / f"stdlib-bpe-{vocab}-{files or 'all'}"
    if not (folder / "tokenizer.json").exists():
        sources = sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))[:files]
        bpe = ByteLevelBPETokenizer()
        texts = (path.read_text(errors="replace") for path in sources)
        bpe.train_from_iterator(texts, vocab_size=vocab, min_frequency=2, special_tokens=["<|endoftext|>"])
        PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>").save_pretrained(
            folder
        )
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


REPEATS = 10  # documents decoded per library (a fresh matcher each): the mean settles


def timed(step, tokens: list[int]) -> list[float]:
    """Seconds of each mask computation; `step(token)` computes the mask, then consumes token."""
    seconds = []
    for token in tokens:
        started = time.perf_counter()
        step(token)
        seconds.append(time.perf_counter() - started)
    return seconds


def llguidance_run(hf, tokens: list[int]) -> tuple[float, list[float]]:
    import llguidance.hf
    from llguidance import LLMatcher
    from llguidance.torch import allocate_token_bitmask, fill_next_token_bitmask

    from operators.text.output_grammar import JSON_LAYOUT

    vocab = len(hf)
    lltok = llguidance.hf.from_tokenizer(hf, n_vocab=vocab)
    started = time.perf_counter()
    matcher = LLMatcher(lltok, LLMatcher.grammar_from_json_schema(SCHEMA, defaults=JSON_LAYOUT))
    compile_s = time.perf_counter() - started
    mask = allocate_token_bitmask(1, vocab)

    def step(token: int) -> None:
        fill_next_token_bitmask(matcher, mask, 0)
        if not matcher.consume_token(token):
            raise RuntimeError(f"llguidance refused token {token}: {matcher.get_error()}")

    return compile_s, timed(step, tokens)


def xgrammar_run(hf, tokens: list[int]) -> tuple[float, list[float]]:
    import xgrammar as xgr

    info = xgr.TokenizerInfo.from_huggingface(hf, vocab_size=len(hf))
    compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
    started = time.perf_counter()
    compiled = compiler.compile_json_schema(SCHEMA, any_whitespace=False, separators=SEPARATORS)
    compile_s = time.perf_counter() - started
    matcher = xgr.GrammarMatcher(compiled)
    mask = xgr.allocate_token_bitmask(1, info.vocab_size)

    def step(token: int) -> None:
        matcher.fill_next_token_bitmask(mask)
        if not matcher.accept_token(token):
            raise RuntimeError(f"xgrammar refused token {token}")

    return compile_s, timed(step, tokens)


def outlines_core_run(hf, tokens: list[int]) -> tuple[float, list[float]]:
    from outlines_core import Guide, Index, Vocabulary
    from outlines_core.json_schema import build_regex_from_schema

    decode = _byte_decoder()
    words: dict[bytes, list[int]] = {}
    for text, token in hf.get_vocab().items():
        if token != hf.eos_token_id:
            words.setdefault(bytes(decode[c] for c in text), []).append(token)
    vocabulary = Vocabulary(hf.eos_token_id, words)
    started = time.perf_counter()
    regex = build_regex_from_schema(json.dumps(SCHEMA), whitespace_pattern="[ ]?")
    guide = Guide(Index(regex, vocabulary))
    compile_s = time.perf_counter() - started
    import torch

    mask = torch.zeros((1, (len(hf) + 31) // 32), dtype=torch.int32)

    def step(token: int) -> None:
        guide.write_mask_into(mask.data_ptr(), mask.numel(), mask.element_size())
        if token != hf.eos_token_id:  # its final state allows EOS in the mask but not as a move
            guide.advance(token)

    return compile_s, timed(step, tokens)


def _byte_decoder() -> dict[str, int]:
    """GPT-2 byte-level BPE's printable character for each byte, inverted."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted, extra = {}, 0
    for byte in range(256):
        if byte in kept:
            shifted[chr(byte)] = byte
        else:
            shifted[chr(256 + extra)] = byte
            extra += 1
    return shifted


LIBRARIES = {"llguidance": llguidance_run, "xgrammar": xgrammar_run, "outlines_core": outlines_core_run}


def measure(vocab: int, files: int | None = None) -> dict:
    hf = tokenizer(vocab, files)
    text = json.dumps(DOCUMENT, separators=SEPARATORS)  # what each library must accept
    tokens = [*hf(text, add_special_tokens=False)["input_ids"], hf.eos_token_id]
    figures: dict = {"vocab": len(hf), "document_tokens": len(tokens), "libraries": {}}
    for name, run in LIBRARIES.items():
        try:
            runs = [run(hf, tokens) for _ in range(REPEATS)]
            compile_s = statistics.median(c for c, _ in runs)
            seconds = [s for _, times in runs for s in times]
        except ImportError as error:
            figures["libraries"][name] = {"skipped": f"not installed ({error.name})"}
            continue
        except Exception as error:  # a library that cannot take this tokenizer: say so, measure the rest
            figures["libraries"][name] = {"failed": f"{type(error).__name__}: {error}"[:300]}
            continue
        micro = sorted(s * 1e6 for s in seconds)
        figures["libraries"][name] = {
            "compile_ms": round(compile_s * 1000, 2),
            "mask_us_mean": round(statistics.fmean(micro), 1),
            "mask_us_p99": round(micro[min(len(micro) - 1, int(0.99 * len(micro)))], 1),
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--files", type=int, help="train the tokenizer on this many stdlib files")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    figures = measure(args.vocab, args.files)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    sys.exit(0)


if __name__ == "__main__":
    main()
