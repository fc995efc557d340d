import pyarrow as pa

from operators.arrow_tensors import arrow_to_lists
from operators.text.build_prompts import build_prompts
from operators.text.text_generator import TextGenerator

PROMPTS = ["a red car", "the big green tree by the sea", "a dog"]


def direct_greedy(path: str, prompt: str, max_new_tokens: int) -> str:
    """The checkpoint's own chat template and generate(), one prompt, no padding at all."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    out = model.generate(
        **ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    new = [t for t in out[0, ids["input_ids"].shape[1] :].tolist()]
    if tokenizer.eos_token_id in new:
        new = new[: new.index(tokenizer.eos_token_id)]
    return tokenizer.decode(new, skip_special_tokens=True)


def generate(path: str, prompts: list, constraint: str | None = None, **kwargs) -> pa.Table:
    table = build_prompts(
        pa.table({"i": range(len(prompts)), "prompt": prompts}),
        model_path=path,
        prompt_column="prompt",
        constraint=constraint,
    )
    batch = {
        name: table[name].to_numpy(zero_copy_only=False)
        for name in ("max_new_tokens", "temperature", "top_p", "n", "seed", "constraint")
    }
    batch["input_ids"] = arrow_to_lists(table["input_ids"])
    out = TextGenerator(path, dtype="float32", **kwargs)(batch)
    return table, out


def test_greedy_batched_with_left_padding_matches_one_by_one_generate(tiny_gpt2):
    table, out = generate(tiny_gpt2, PROMPTS, max_new_tokens=6)
    order = table["i"].to_pylist()
    for position, row in enumerate(order):
        assert out["completions"][position] == [direct_greedy(tiny_gpt2, PROMPTS[row], 6)]
        assert out["finish_reasons"][position][0] in ("stop", "length")
        assert 0 <= out["completion_tokens"][position][0] <= 6
    assert list(out["prompt_tokens"]) == [len(ids) for ids in arrow_to_lists(table["input_ids"])]


def test_n_samples_per_prompt_are_seeded(tiny_gpt2):
    _, first = generate(tiny_gpt2, PROMPTS[:2], max_new_tokens=5, n=3, temperature=1.0, seed=7)
    _, again = generate(tiny_gpt2, PROMPTS[:2], max_new_tokens=5, n=3, temperature=1.0, seed=7)
    assert all(len(c) == 3 for c in first["completions"])
    assert [list(c) for c in first["completions"]] == [list(c) for c in again["completions"]]


def test_bad_prompts_are_errors_not_crashes(tiny_gpt2):
    table = build_prompts(
        pa.table({"prompt": ["a car", "", None]}), model_path=tiny_gpt2, prompt_column="prompt"
    )
    assert set(table["_error"].to_pylist()) == {"empty prompt", "missing prompt (null)", None}
    templated = build_prompts(
        pa.table({"name": ["shoe"], "style": ["noir"]}),
        model_path=tiny_gpt2,
        template="Write about a {name} in {style} style",
    )
    assert templated["_error"].to_pylist() == [None] and len(arrow_to_lists(templated["input_ids"])[0]) > 5


def test_continuous_batching_matches_static_batches(tiny_gpt2):
    """Same greedy completions from transformers' paged-cache scheduler as from padded generate()."""
    table, static = generate(tiny_gpt2, PROMPTS, max_new_tokens=6)
    _, continuous = generate(tiny_gpt2, PROMPTS, max_new_tokens=6, engine="continuous")
    assert [list(c) for c in continuous["completions"]] == [list(c) for c in static["completions"]]
    assert [list(r) for r in continuous["finish_reasons"]] == [list(r) for r in static["finish_reasons"]]
    assert [list(n) for n in continuous["completion_tokens"]] == [
        list(n) for n in static["completion_tokens"]
    ]
    _, samples = generate(tiny_gpt2, PROMPTS[:2], max_new_tokens=4, n=2, temperature=1.0, engine="continuous")
    assert [len(c) for c in samples["completions"]] == [2, 2]


def test_prompts_too_long_for_the_context_are_errors_or_keep_their_last_tokens(tiny_gpt2):
    """The tiny GPT-2 attends over 128 positions; 100 new tokens leave 28 for the prompt."""
    long = " ".join(["word"] * 60)
    table = pa.table({"prompt": ["a car", long]})
    refused = build_prompts(table, model_path=tiny_gpt2, prompt_column="prompt", max_new_tokens=100)
    by_prompt = dict(zip(refused["prompt"].to_pylist(), refused["_error"].to_pylist(), strict=True))
    assert by_prompt["a car"] is None
    assert "exceeds the model's context of 128 tokens" in by_prompt[long]
    kept = build_prompts(
        table, model_path=tiny_gpt2, prompt_column="prompt", max_new_tokens=100, truncate=True
    )
    assert kept["_error"].null_count == 2
    full = build_prompts(table, model_path=tiny_gpt2, prompt_column="prompt")
    assert (
        arrow_to_lists(kept["input_ids"])[1].tolist() == arrow_to_lists(full["input_ids"])[1][-28:].tolist()
    )
