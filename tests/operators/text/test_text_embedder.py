import numpy as np
import pyarrow as pa
import pytest
import torch

from operators.arrow_tensors import arrow_to_lists
from operators.text.text_embedder import TextEmbedder, pool
from operators.text.tokenize_texts import tokenize_texts

TEXTS = [
    "A small dog waits near the harbour at dawn.",
    "Quarterly revenue grew by four percent.",
    "hi",
    "The quick brown fox jumps over the lazy dog " * 12,
    "Über die Brücke gehen zwei Kinder.",
]


def embed(path: str, texts: list[str], **kwargs) -> np.ndarray:
    """Tokenize with the CPU stage, embed with the operator, back in input order."""
    table = tokenize_texts(
        pa.table({"i": range(len(texts)), "text": texts}), model_path=path, text_column="text"
    )
    out = TextEmbedder(path, **kwargs)({"input_ids": arrow_to_lists(table["input_ids"])})["embedding"]
    order = np.argsort(table["i"].to_numpy())
    return out[order]


def test_matches_sentence_transformers_on_the_real_minilm(minilm_path):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(minilm_path, device="cpu").encode(TEXTS, convert_to_numpy=True)
    ours = embed(minilm_path, TEXTS)
    assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    cosine = (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)  # checkpoint's Normalize


def test_checkpoint_pooling_and_normalize_files_are_followed(tiny_bert_st):
    embedder = TextEmbedder(tiny_bert_st)
    assert (embedder.pooling, embedder.normalize) == ("cls", True)
    assert (TextEmbedder(tiny_bert_st, pooling="mean", normalize=False).pooling) == "mean"


def test_plain_checkpoint_means_over_real_tokens_only(tiny_bert):
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(tiny_bert), AutoModel.from_pretrained(tiny_bert)
    texts = ["a red car", "the small white house in the park at night"]
    ours = embed(tiny_bert, texts, dtype="float32")  # float16 on a GPU would not match to 1e-5
    for text, vector in zip(texts, ours, strict=True):
        inputs = tokenizer([text], return_tensors="pt")  # alone: no padding at all
        with torch.inference_mode():
            expected = model(**inputs).last_hidden_state.mean(dim=1)[0].numpy()
        np.testing.assert_allclose(vector, expected, atol=1e-5)


def test_same_text_same_vector_whatever_the_batch(tiny_bert):
    alone = embed(tiny_bert, ["a dog runs"], dtype="float32")
    mixed = embed(tiny_bert, ["a dog runs", "the big green tree by the sea at day " * 3], dtype="float32")
    np.testing.assert_allclose(alone[0], mixed[0], atol=1e-5)


def test_compiled_model_gives_the_same_vectors(tiny_bert):
    """model.compile through torch.compile's eager backend (dynamo tracing, no C++ build: fast
    enough for a test); inductor (`compile=true`) is measured in benchmarks/."""
    embedder = TextEmbedder(tiny_bert, compile="eager")
    assert embedder.encode is not embedder.model
    table = tokenize_texts(pa.table({"text": TEXTS}), model_path=tiny_bert, text_column="text")
    rows = arrow_to_lists(table["input_ids"])
    plain = TextEmbedder(tiny_bert)
    for batch in (rows, rows[:3], rows[1:2]):  # new shapes: one recompile, then dynamic
        np.testing.assert_allclose(
            embedder({"input_ids": batch})["embedding"], plain({"input_ids": batch})["embedding"], atol=1e-5
        )


def test_pool_modes():
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 4.0], [9.0, 9.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 2.0]]
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 0.0]]
    assert pool(hidden, mask, "max").tolist() == [[3.0, 4.0]]
    assert pool(hidden, mask, "lasttoken").tolist() == [[3.0, 4.0]]


def test_unknown_pooling_is_refused(tiny_bert):
    with pytest.raises(ValueError, match="pooling"):
        TextEmbedder(tiny_bert, pooling="median")
