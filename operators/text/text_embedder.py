"""TextEmbedder: token ids in, one vector per text out (sentence-transformers-compatible)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from operators.load_pretrained import load_pretrained
from operators.model_files import local_model_dir
from operators.text.sentence_config import POOLING_MODES, read_sentence_config
from operators.torch_device import compiled, inference_mode

if TYPE_CHECKING:
    import torch


class TextEmbedder:
    """Embeds tokenized texts with a Hugging Face encoder.

    Pooling and normalisation follow the checkpoint's sentence-transformers files when present
    (mean pooling otherwise); CLIP/SigLIP-style models use their projected text features.
    """

    inputs: ClassVar[tuple[str, ...]] = ("input_ids",)
    outputs: ClassVar[tuple[str, ...]] = ("embedding",)
    gpu_calls: ClassVar[int] = 2  # calls share no state: on a GPU two run at once (thread_stream)

    def __init__(
        self,
        path: str,
        revision: str | None = None,
        pooling: str | None = None,
        normalize: bool | None = None,
        dtype: str = "auto",
        device: str = "auto",
        trust_remote_code: bool = False,
        compile: bool | str = False,
    ) -> None:
        from transformers import AutoModel

        folder = local_model_dir(path, revision)
        settings = read_sentence_config(folder)
        self.pooling = pooling or settings.pooling
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}, got {self.pooling!r}")
        self.normalize = settings.normalize if normalize is None else bool(normalize)
        loaded = load_pretrained(
            AutoModel, folder, device=device, dtype=dtype, trust_remote_code=trust_remote_code
        )
        self.model, self.device = loaded.model, loaded.device
        self.projected = hasattr(self.model, "get_text_features")
        self.encode = compiled(self.model.get_text_features if self.projected else self.model, compile)
        config = getattr(self.model.config, "text_config", self.model.config)
        self.pad_id = int(getattr(config, "pad_token_id", None) or 0)

    @inference_mode
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        input_ids, mask = self._pad(batch["input_ids"])
        out = self.encode(input_ids=input_ids, attention_mask=mask)
        if self.projected:
            vectors = out if isinstance(out, torch.Tensor) else out.pooler_output
        else:
            vectors = pool(out.last_hidden_state, mask, self.pooling)
        vectors = vectors.float()
        if self.normalize:
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=-1)
        return {"embedding": vectors.cpu().numpy()}

    def _pad(self, rows) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ids and mask, built on the host in one vectorised pass and copied once."""
        lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
        mask = np.arange(max(int(lengths.max(initial=1)), 1)) < lengths[:, None]
        ids = np.full(mask.shape, self.pad_id, dtype=np.int64)
        ids[mask] = np.concatenate(rows) if len(rows) else []
        return _to_device(ids, self.device), _to_device(mask.astype(np.int64), self.device)


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """One vector per sequence from token states, ignoring padding."""
    import torch

    if mode == "cls":
        return hidden[:, 0]
    if mode == "lasttoken":
        last = mask.sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(weights == 0, -1e9).max(dim=1).values
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    # Token ids are a few hundred KB a batch: pinning them would cost more than it saves.
    import torch

    return torch.from_numpy(array).to(device)
