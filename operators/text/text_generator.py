"""TextGenerator: prompt token ids (+ per-row sampling parameters) in, n completions per row out.

Two engines. `static`: left-padded batches; rows arrive length-sorted from `build_prompts`, rows
that share parameters are generated together, and each generate() call runs until its longest
completion stops. `continuous`: transformers' continuous batching (`generate_batch`, paged KV
cache): a finished sequence's slot is refilled at once, so short completions do not wait for
long ones.

A row's `constraint` (a JSON schema, regex or choices: operators/text/output_grammar.py) masks
each step's logits through llguidance. Constrained rows run on the static engine whatever
`engine` says: continuous batching builds its logits processors from the generation config and
takes no per-request one.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from operators.load_pretrained import load_pretrained
from operators.text.output_grammar import NEUTRAL_SAMPLING, GrammarDecoding, is_json, parsed_json, token_ids
from operators.torch_device import inference_mode

KINDS = {"max_new_tokens": int, "temperature": float, "top_p": float, "n": int, "seed": int}
ENGINES = ("static", "continuous")


class TextGenerator:
    """Causal LM completions; parameters given per row (OpenAI batch lines) override the defaults."""

    inputs: ClassVar[tuple[str, ...]] = (
        "input_ids",
        "max_new_tokens",
        "temperature",
        "top_p",
        "n",
        "seed",
        "constraint",
    )
    outputs: ClassVar[tuple[str, ...]] = (
        "completions",
        "finish_reasons",
        "completion_tokens",
        "prompt_tokens",
        "json",
    )

    def __init__(
        self,
        path: str,
        revision: str | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        n: int = 1,
        seed: int = 0,
        dtype: str = "auto",
        device: str = "auto",
        trust_remote_code: bool = False,
        engine: str = "static",
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.engine = engine
        loaded = load_pretrained(
            AutoModelForCausalLM,
            path,
            revision=revision,
            device=device,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
        )
        self.model, self.device = loaded.model, loaded.device
        self.tokenizer = AutoTokenizer.from_pretrained(loaded.folder)
        self.eos = token_ids(self.model.generation_config.eos_token_id)
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = next(iter(self.eos), 0)
        self.defaults = {
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "n": n,
            "seed": seed,
        }
        self.grammar = GrammarDecoding(self.model, self.tokenizer, self.eos)

    @inference_mode
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = batch["input_ids"]
        size = len(rows)
        completions = np.empty(size, dtype=object)
        reasons = np.empty(size, dtype=object)
        counts = np.empty(size, dtype=object)
        parsed = np.full(size, None, dtype=object)
        settings = [self._settings(batch, i) for i in range(size)]
        for setting in dict.fromkeys(settings):  # one generate() per distinct parameter set
            members = [i for i in range(size) if settings[i] == setting]
            setting = dict(setting)
            texts, finish, lengths = self._generate([rows[i] for i in members], setting)
            for k, i in enumerate(members):
                completions[i], reasons[i], counts[i] = texts[k], finish[k], lengths[k]
                if is_json(setting["constraint"]):
                    parsed[i] = [parsed_json(text) for text in texts[k]]
        prompt_tokens = np.array([len(row) for row in rows], dtype=np.int32)
        return {
            "completions": completions,
            "finish_reasons": reasons,
            "completion_tokens": counts,
            "prompt_tokens": prompt_tokens,
            "json": parsed,
        }

    def _settings(self, batch: dict[str, np.ndarray], row: int) -> tuple:
        values = []
        for name, default in self.defaults.items():
            value = batch[name][row] if name in batch else None
            if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
                value = default
            values.append((name, KINDS[name](value)))
        constraint = batch["constraint"][row] if "constraint" in batch else None
        return (*values, ("constraint", constraint or None))

    def _generate(self, rows: list[np.ndarray], setting: dict) -> tuple[list, list, list]:
        import torch
        from transformers import GenerationConfig

        if self.engine == "continuous" and setting["constraint"] is None:
            return self._decode(self._generate_continuous(rows, setting), len(rows), setting["n"])
        longest = max(len(row) for row in rows)
        ids = np.full((len(rows), longest), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), longest), dtype=np.int64)
        for i, row in enumerate(rows):  # left padding: every prompt ends where generation starts
            ids[i, longest - len(row) :] = row
            mask[i, longest - len(row) :] = 1
        sample = setting["temperature"] > 0
        processors, warp = None, {"temperature": setting["temperature"], "top_p": setting["top_p"]}
        if setting["constraint"] is not None:  # the warpers come after the grammar's mask
            sequences = len(rows) * setting["n"]
            processors = self.grammar.processors(
                setting["constraint"], sequences, longest, setting["temperature"], setting["top_p"]
            )
            warp = NEUTRAL_SAMPLING
        config = GenerationConfig(
            max_new_tokens=setting["max_new_tokens"],
            do_sample=sample,
            num_return_sequences=setting["n"],
            **(warp if sample else {"temperature": None, "top_p": None}),
            pad_token_id=self.pad_id,
            eos_token_id=sorted(self.eos) or None,
        )
        torch.manual_seed(setting["seed"])
        out = self.model.generate(
            input_ids=torch.from_numpy(ids).to(self.device),
            attention_mask=torch.from_numpy(mask).to(self.device),
            generation_config=config,
            logits_processor=processors,
        )
        return self._decode(out[:, longest:].tolist(), len(rows), setting["n"])

    def _generate_continuous(self, rows: list[np.ndarray], setting: dict) -> list[list[int]]:
        """n requests per row through the paged-cache scheduler; sequences back in input order."""
        import torch
        from transformers import GenerationConfig

        sample = setting["temperature"] > 0
        config = GenerationConfig(
            max_new_tokens=setting["max_new_tokens"],
            do_sample=sample,
            temperature=setting["temperature"] if sample else None,
            top_p=setting["top_p"] if sample else None,
            pad_token_id=self.pad_id,
            eos_token_id=sorted(self.eos) or -1,
        )
        requests = [[int(t) for t in row] for row in rows for _ in range(setting["n"])]
        torch.manual_seed(setting["seed"])
        # Its scheduler thread updates cache tensors in place: not allowed on inference tensors.
        with torch.inference_mode(False):
            out = self.model.generate_batch(requests, generation_config=config, progress_bar=False)
        if len(out) != len(requests):
            raise RuntimeError(f"continuous batching returned {len(out)} of {len(requests)} sequences")
        failed = [result for result in out.values() if getattr(result, "error", None)]
        if failed:  # a failed request comes back empty: raise, so its rows are retried or recorded
            raise RuntimeError(f"continuous batching failed: {failed[0].error}")
        # Request ids are req_<position>: sort numerically to line results up with the rows.
        order = sorted(out, key=lambda key: int(str(key).rsplit("_", 1)[-1]))
        return [list(out[key].generated_tokens) for key in order]

    def _decode(self, new: list[list[int]], rows: int, n: int) -> tuple[list, list, list]:
        """Completions cut at the first end-of-sequence token, with finish reasons and lengths."""
        texts, finish, lengths = [], [], []
        for i in range(rows):
            row_texts, row_finish, row_lengths = [], [], []
            for sequence in new[i * n : (i + 1) * n]:
                tokens, stopped = [], False
                for token in sequence:
                    if token in self.eos:
                        stopped = True
                        break
                    tokens.append(token)
                row_texts.append(self.tokenizer.decode(tokens, skip_special_tokens=True))
                row_finish.append("stop" if stopped else "length")
                row_lengths.append(len(tokens))
            texts.append(row_texts)
            finish.append(row_finish)
            lengths.append(row_lengths)
        return texts, finish, lengths
