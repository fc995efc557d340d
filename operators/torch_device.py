"""Where a model runs and in which precision.

Operator modules import torch inside their functions, never at module level: the driver
imports them to check a config, and torch costs it seconds before the pipeline can start.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

DTYPE_NAMES = ("float32", "float16", "bfloat16")
Method = TypeVar("Method", bound=Callable[..., Any])


def pick_device(device: str | torch.device = "auto") -> torch.device:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """ "auto": float16 on GPU (tensor cores), float32 on CPU (half is slow there)."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"dtype must be auto or one of {', '.join(DTYPE_NAMES)}, got {dtype!r}")
    return getattr(torch, dtype)


def inference_mode(method: Method) -> Method:
    """`torch.inference_mode()` around a method, with torch imported on the first call."""

    @functools.wraps(method)
    def run(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.inference_mode():
            return method(*args, **kwargs)

    return run  # type: ignore[return-value]
