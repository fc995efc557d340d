"""ImageScorer: CLIP score against a text, zero-shot label probabilities, an aesthetic score
and an image classifier's label probabilities, per image."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from operators.image.pixel_normalizer import PixelNormalizer
from operators.load_pretrained import load_pretrained
from operators.torch_device import inference_mode

if TYPE_CHECKING:
    import torch


class ImageScorer:
    """Scores images with a CLIP / SigLIP checkpoint.

    - `clip_score` = 100 x max(cosine, 0) between the image and a text (torchmetrics' CLIP
      score), and the raw `clip_cosine`. The text is one fixed `text` for every image, or with
      `row_text` each row's own (`input_ids`, tokenized by the CPU stage from a column such as
      the prompt).
    - `labels`: zero-shot probabilities per label (`label_probs`, in the order given) and the
      most likely one (`top_label`): a softmax over the labels for CLIP, a sigmoid per label for
      SigLIP (what each was trained with).
    - `aesthetic`: a weights file of linear layers over the unit CLIP image embedding, applied
      in order without activations (both LAION aesthetic predictors: the single linear layer and
      the 5-layer MLP, `.pth` or `.safetensors`) -> `aesthetic`.
    - `classifier`: any AutoModelForImageClassification checkpoint (an NSFW or watermark
      detector); it gets its own pixels (`classifier_pixels`, made by the CPU stage with its
      processor) -> one probability column per label of its config (softmax, or a sigmoid per
      label for multi-label checkpoints).
    """

    inputs: ClassVar[tuple[str, ...]] = ("pixel_values",)
    optional_inputs: ClassVar[tuple[str, ...]] = ("input_ids", "classifier_pixels")
    outputs: ClassVar[tuple[str, ...]] = (
        "clip_score",
        "clip_cosine",
        "label_probs",
        "top_label",
        "aesthetic",
    )
    gpu_calls: ClassVar[int] = 2  # calls share no state: on a GPU two run at once (thread_stream)

    def __init__(
        self,
        path: str,
        revision: str | None = None,
        text: str | None = None,
        row_text: bool = False,
        labels: Sequence[str] = (),
        aesthetic: str | None = None,
        classifier: str | None = None,
        classifier_revision: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        trust_remote_code: bool = False,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        if not (text or row_text or labels or aesthetic or classifier):
            raise ValueError("ImageScorer needs a text, row texts, labels, an aesthetic head or a classifier")
        loaded = load_pretrained(
            AutoModel,
            path,
            revision=revision,
            device=device,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
        )
        self.model, self.device = loaded.model, loaded.device
        self.pixels = PixelNormalizer(loaded.folder, self.device, loaded.dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(loaded.folder)
        self.siglip = hasattr(self.model, "logit_bias")
        self.labels = list(labels)
        self.text = self._embed_texts([text]) if text else None
        self.label_vectors = self._embed_texts(self.labels) if self.labels else None
        if aesthetic:
            config = self.model.config
            dim = getattr(config, "projection_dim", None) or config.vision_config.hidden_size
            self.head = aesthetic_head(aesthetic, self.device, dim)
        else:
            self.head = None
        self.classifier, self.class_names = None, []
        if classifier:
            from transformers import AutoModelForImageClassification

            found = load_pretrained(
                AutoModelForImageClassification,
                classifier,
                revision=classifier_revision,
                device=device,
                dtype=dtype,
            )
            self.classifier = found.model
            self.classifier_pixels = PixelNormalizer(found.folder, self.device, found.dtype)
            config = found.model.config
            self.class_names = label_names(config.id2label)
            self.multi_label = config.problem_type == "multi_label_classification"
        # This instance's outputs: a CLIP score needs a text, probabilities need labels.
        scores = ("clip_score", "clip_cosine") if text or row_text else ()
        self.outputs = (
            *scores,
            *(("label_probs", "top_label") if self.labels else ()),
            *(("aesthetic",) if self.head is not None else ()),
            *self.class_names,
        )

    @inference_mode
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        images = _unit(self.model.get_image_features(pixel_values=self.pixels(batch["pixel_values"])))
        result: dict[str, np.ndarray] = {}
        if "clip_score" in self.outputs:
            texts = self.text if self.text is not None else self._row_texts(batch["input_ids"])
            cosine = (images * texts).sum(dim=-1)
            result["clip_cosine"] = cosine.cpu().numpy()
            result["clip_score"] = (100 * cosine.clamp(min=0)).cpu().numpy()
        if self.labels:
            logits = self.model.logit_scale.exp().float() * images @ self.label_vectors.T
            if self.siglip:
                probs = torch.sigmoid(logits + self.model.logit_bias.float())
            else:
                probs = logits.softmax(dim=-1)
            result["label_probs"] = probs.cpu().numpy()
            result["top_label"] = np.array(
                [self.labels[i] for i in probs.argmax(dim=-1).tolist()], dtype=object
            )
        if self.head is not None:
            result["aesthetic"] = self.head(images).cpu().numpy()
        if self.classifier is not None:
            logits = self.classifier(
                pixel_values=self.classifier_pixels(batch["classifier_pixels"])
            ).logits.float()
            probs = torch.sigmoid(logits) if self.multi_label else logits.softmax(dim=-1)
            for k, name in enumerate(self.class_names):
                result[name] = probs[:, k].cpu().numpy()
        return result

    @inference_mode
    def _embed_texts(self, texts: list[str]) -> torch.Tensor:
        # SigLIP was trained on max-length padding; CLIP pools at its end token, padding aside.
        padding = "max_length" if self.siglip else True
        tokens = self.tokenizer(texts, padding=padding, truncation=True, return_tensors="pt")
        return _unit(self.model.get_text_features(**{k: v.to(self.device) for k, v in tokens.items()}))

    def _row_texts(self, rows: list[np.ndarray]) -> torch.Tensor:
        """The rows' token ids as unit text vectors, padded as the checkpoint was trained."""
        import torch

        lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
        # SigLIP pools its last position: it needs its fixed length and pad token, as trained.
        width = self.tokenizer.model_max_length if self.siglip else max(int(lengths.max(initial=1)), 1)
        mask = np.arange(width) < lengths[:, None]
        ids = np.full(mask.shape, self.tokenizer.pad_token_id or 0, dtype=np.int64)
        ids[mask] = np.concatenate(rows) if len(rows) else []
        inputs = {"input_ids": torch.from_numpy(ids).to(self.device)}
        if "attention_mask" in self.tokenizer.model_input_names:  # as its tokenizer would call it
            inputs["attention_mask"] = torch.from_numpy(mask.astype(np.int64)).to(self.device)
        return _unit(self.model.get_text_features(**inputs))


def _unit(out) -> torch.Tensor:
    """A features call's output (a tensor, or a model output's pooler_output), L2-normalised."""
    import torch

    vectors = out if isinstance(out, torch.Tensor) else out.pooler_output
    return torch.nn.functional.normalize(vectors.float(), dim=-1)


def label_names(id2label: Mapping) -> list[str]:
    """A classifier's labels in class order (config.json's keys are strings, a config's ints)."""
    return [str(id2label[k]) for k in sorted(id2label, key=int)]


def aesthetic_head(path: str, device: torch.device, dim: int):
    """The weights file's linear layers (in key order) as one function of unit image vectors."""
    import fsspec
    import torch

    with fsspec.open(path, "rb") as handle:
        data = handle.read()
    if path.endswith(".safetensors"):
        from safetensors.torch import load as load_safetensors

        state = load_safetensors(data)
    else:
        import io

        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    layers = []
    for key in sorted((k for k in state if k.endswith("weight") and state[k].dim() == 2), key=_layer_order):
        bias = state.get(key[: -len("weight")] + "bias")
        layers.append((state[key].float().to(device), None if bias is None else bias.float().to(device)))
    if not layers:
        raise ValueError(f"{path}: no linear layer weights in it")

    if layers[0][0].shape[1] != dim:
        raise ValueError(
            f"aesthetic head {path} takes {layers[0][0].shape[1]}-d inputs; the scorer's are {dim}-d"
        )

    def score(vectors: torch.Tensor) -> torch.Tensor:
        out = vectors.float()
        for weight, bias in layers:
            out = torch.nn.functional.linear(out, weight, bias)
        return out[:, 0]

    return score


def _layer_order(key: str) -> tuple:
    """'layers.10.weight' after 'layers.2.weight': numeric parts compare as numbers."""
    return tuple(int(part) if part.isdigit() else -1 for part in key.split("."))
