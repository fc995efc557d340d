"""Queries embedded with the model that embedded the index: text through the text tower, images
through the same decode and image tower the embedding job used (embed_images, or embed_videos,
whose frames went through the same processor and tower)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from operators.arrow_tensors import arrow_to_tensor

TEXT_JOBS = ("embed_texts",)
IMAGE_JOBS = ("embed_images", "embed_videos")  # jobs whose vectors an image query can match


class QueryError(ValueError):
    """A query this index cannot answer (the message says why); HTTP answers it with a 4xx."""


@dataclass(frozen=True)
class TextQuery:
    """A text query as the model saw it: its vector, and whether it was cut to the model's limit."""

    vector: np.ndarray
    tokens: int  # tokens of the whole query, special tokens included
    limit: int  # the most tokens the model takes

    @property
    def truncated(self) -> bool:
        return self.tokens > self.limit


class QueryEncoder:
    """Loads the index's model lazily, once per process; `model` is index.json's `model`."""

    def __init__(self, model: dict[str, Any]) -> None:
        self.model = model
        self._text = None
        self._image = None

    @property
    def options(self) -> dict[str, Any]:
        keys = ("revision", "dtype", "trust_remote_code")
        return {k: self.model[k] for k in keys if self.model.get(k) is not None}

    def text(self, query: str) -> np.ndarray:
        """One vector for a text query (a sentence model, or a CLIP/SigLIP text tower)."""
        return self.encode_text(query).vector

    def encode_text(self, query: str) -> TextQuery:
        """The query's vector, cut (as the embedding jobs cut texts) to what the model takes."""
        if not self.model.get("path"):
            raise QueryError("this index does not record the model that made its vectors: search by vector")
        from operators.text.text_embedder import TextEmbedder
        from operators.text.tokenize_texts import load_tokenizer

        tokenizer, limit, lowercase = load_tokenizer(self.model["path"], self.model.get("revision"))
        if self._text is None:
            extra = {k: self.model[k] for k in ("pooling", "normalize") if self.model.get(k) is not None}
            self._text = TextEmbedder(self.model["path"], **self.options, **extra)
        # `limit` is capped at the text tower's positions (a tokenizer may record none, or too many).
        text = query.lower() if lowercase else query
        ids = tokenizer([text], truncation=True, max_length=limit)["input_ids"][0]
        if not ids:
            raise QueryError("the query has no tokens this model reads")
        # Only a query that fills the limit can have been cut: count it whole to tell.
        tokens = len(tokenizer([text])["input_ids"][0]) if len(ids) >= limit else len(ids)
        vector = self._text({"input_ids": [np.asarray(ids, dtype=np.int32)]})["embedding"][0]
        return TextQuery(vector=vector, tokens=tokens, limit=limit)

    def image(self, data: bytes) -> np.ndarray:
        """One vector for an image query, decoded as the embedding job decoded its images."""
        if self.model.get("job") not in IMAGE_JOBS:
            raise QueryError(
                f"this index holds {self.model.get('job') or 'unknown'} vectors: search it with text"
            )
        from operators.image.decode_images import decode_images
        from operators.image.image_embedder import ImageEmbedder
        from operators.row_errors import ERROR

        table = decode_images(
            pa.table({"image": pa.array([data], pa.binary())}),
            model_path=self.model["path"],
            revision=self.model.get("revision"),
            image_column="image",
        )
        problem = table[ERROR][0].as_py()
        if problem:
            raise QueryError(f"not a readable image: {problem}")
        if self._image is None:
            self._image = ImageEmbedder(self.model["path"], **self.options)
        return self._image({"pixel_values": arrow_to_tensor(table["pixel_values"])})["embedding"][0]
