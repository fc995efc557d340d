"""Where a model runs and in which precision.

Operator modules import torch inside their functions, never at module level: the driver
imports them to check a config, and torch costs it seconds before the pipeline can start.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

DTYPE_NAMES = ("float32", "float16", "bfloat16")
Method = TypeVar("Method", bound=Callable[..., Any])
_streams = threading.local()


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

        with torch.inference_mode(), thread_stream():
            return method(*args, **kwargs)

    return run  # type: ignore[return-value]


def compiled(function: Callable, option: bool | str) -> Callable:
    """`model.compile`: false (as is), true (torch.compile, inductor) or a torch.compile backend
    name. Shapes change from call to call (batch tails, token lengths): after the first change
    torch recompiles once for dynamic shapes instead of once per shape."""
    if not option:
        return function
    import torch

    return torch.compile(function, backend="inductor" if option is True else str(option))


def thread_stream() -> contextlib.AbstractContextManager:
    """On a GPU, this thread's own CUDA stream: a GPU actor runs two calls at once
    (StageSpec.ray_args), and on separate streams one call's copies and decode overlap the
    other's compute instead of queueing behind it on the default stream."""
    import torch

    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return contextlib.nullcontext()
    stream = getattr(_streams, "stream", None)
    if stream is None:
        stream = _streams.stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())  # weights loaded on the default stream
    return torch.cuda.stream(stream)
