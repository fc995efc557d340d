"""One way for every operator to load its model: resolve the reference, pick device and dtype, load
safetensors weights under the trust_remote_code policy, switch to eval mode on the device.

Works for transformers classes (a folder with config.json) and diffusers classes (a pipeline's
model_index.json, or a component's config.json) alike, without importing either library here:
torch, transformers and diffusers are imported by the caller or inside the functions
(operators/torch_device.py says why).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from operators.model_files import local_model_dir
from operators.torch_device import pick_device, pick_dtype

if TYPE_CHECKING:
    import torch

DIFFUSERS_DTYPE_SINCE = (0, 40)  # diffusers renamed torch_dtype to dtype there, as transformers 5 did


class NoClassLoads(ValueError):
    """None of the candidate classes knows the checkpoint's configuration."""


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode on its device, with the choices made while loading it."""

    model: Any
    folder: str  # the local checkpoint folder: tokenizer, processor and pixel settings are read from it
    device: torch.device
    dtype: torch.dtype


def load_pretrained(
    model_class: type | Sequence[type],
    path: str,
    *,
    revision: str | None = None,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    trust_remote_code: bool = False,
    **kwargs: Any,
) -> LoadedModel:
    """`model_class` loaded from a hub id, local folder or fsspec URL, ready for inference.

    `device` / `dtype` "auto": the GPU in float16 when there is one, else the CPU in float32.
    `model_class` may be a sequence of classes (auto classes, say): the first that knows the
    checkpoint's configuration loads it (`NoClassLoads` if none does). Extra keyword arguments
    go to `from_pretrained`.
    """
    folder = local_model_dir(path, revision)
    where = pick_device(device)
    precision = pick_dtype(dtype, where)
    model = from_pretrained(
        model_class, folder, dtype=precision, trust_remote_code=trust_remote_code, **kwargs
    )
    if hasattr(model, "eval"):  # a diffusers pipeline has none: each of its modules is loaded in eval mode
        model = model.eval()
    return LoadedModel(model=model.to(where), folder=folder, device=where, dtype=precision)


def from_pretrained(
    model_class: type | Sequence[type],
    folder: str,
    *,
    dtype: torch.dtype,
    trust_remote_code: bool = False,
    **kwargs: Any,
) -> Any:
    """`model_class.from_pretrained(folder)` under the project's policy, on the CPU as stored.

    Weights load from safetensors only (a pickled .bin could run code while loading); the
    checkpoint's own Python code runs only when `trust_remote_code` is True.
    """
    trust_remote_code = trust_flag(trust_remote_code)
    fixed = sorted({"use_safetensors", "torch_dtype"} & kwargs.keys())
    if fixed:
        raise TypeError(f"from_pretrained sets {', '.join(fixed)} itself")
    classes = tuple(model_class) if isinstance(model_class, Sequence) else (model_class,)
    errors = []
    for cls in classes:
        options = {**kwargs, "use_safetensors": True, "trust_remote_code": trust_remote_code}
        options[dtype_keyword(cls)] = dtype
        try:
            return cls.from_pretrained(folder, **options)
        except ValueError as error:
            if not trust_remote_code and "trust_remote_code" in str(error):
                raise ValueError(
                    f"{folder} needs the checkpoint's own code to load; rayjobs runs it only with "
                    "model.trust_remote_code=true (read that code first)"
                ) from error
            if len(classes) == 1:
                raise
            # "Unrecognized configuration class": this auto class does not know it, try the next
            errors.append(f"{cls.__name__}: {str(error).splitlines()[0]}")
    names = ", ".join(cls.__name__ for cls in classes)
    raise NoClassLoads(f"{folder}: none of {names} loads it ({'; '.join(errors)})")


def trust_flag(trust_remote_code: object) -> bool:
    """`trust_remote_code` checked to be a real bool: a stray "false" string must not switch it on."""
    if not isinstance(trust_remote_code, bool):
        raise TypeError(f"trust_remote_code must be true or false, got {trust_remote_code!r}")
    return trust_remote_code


def dtype_keyword(model_class: type) -> str:
    """The name `from_pretrained` gives the dtype: `dtype`, but `torch_dtype` for diffusers before 0.40."""
    bases = getattr(model_class, "__mro__", (model_class,))
    if not any(getattr(base, "__module__", "").split(".")[0] == "diffusers" for base in bases):
        return "dtype"
    return "dtype" if diffusers_version() >= DIFFUSERS_DTYPE_SINCE else "torch_dtype"


def diffusers_version() -> tuple[int, int]:
    """(major, minor) of the installed diffusers, (0, 0) when unknown (its oldest naming then)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        major, minor = version("diffusers").split(".")[:2]
        return int(major), int(minor)
    except (PackageNotFoundError, ValueError):
        return 0, 0
