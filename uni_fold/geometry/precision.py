"""Full-precision guard for geometry code.

Frames, quaternions and atom coordinates lose too much in bf16/fp16 (a 100 A coordinate
has a bf16 step of 0.5 A), so geometry always runs in fp32 even inside a mixed-precision
region. This module provides the one tool for that:

* ``fp32_no_autocast`` - decorator: promotes half-precision tensor arguments to fp32 and
  runs the wrapped function with autocast switched off (CPU and CUDA).
* ``autocast_disabled`` - the context manager the decorator uses.
* ``to_fp32`` - the argument promotion on its own (walks tuples, lists and dicts).

fp64 tensors are left in fp64 (useful for ``torch.autograd.gradcheck`` and for numerical
tests); only dtypes narrower than fp32 are promoted.
"""
from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def to_fp32(x: Any) -> Any:
    """Return ``x`` with every fp16/bf16 tensor cast to fp32.

    Tuples, lists and dicts are walked recursively; other objects (ints, fp32/fp64/integer
    tensors, ``Rigid`` values, None) come back unchanged.
    """
    if isinstance(x, torch.Tensor):
        return x.float() if x.dtype in _LOW_PRECISION else x
    if isinstance(x, tuple):
        if hasattr(x, "_fields"):  # namedtuple
            return type(x)(*(to_fp32(v) for v in x))
        return tuple(to_fp32(v) for v in x)
    if isinstance(x, list):
        return [to_fp32(v) for v in x]
    if isinstance(x, dict):
        return {k: to_fp32(v) for k, v in x.items()}
    return x


@contextlib.contextmanager
def autocast_disabled() -> Iterator[None]:
    """Switch autocast off for CPU (and CUDA when it is available) inside the block."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.autocast("cpu", enabled=False))
        if torch.cuda.is_available():
            stack.enter_context(torch.autocast("cuda", enabled=False))
        yield


def fp32_no_autocast(fn: F) -> F:
    """Decorator: run ``fn`` in fp32 with autocast disabled.

    Half-precision tensor arguments (positional or keyword, also inside tuples, lists and
    dicts) are cast to fp32 before the call; the result is whatever ``fn`` returns, so a
    function built from fp32 inputs returns fp32 even under
    ``torch.autocast(..., dtype=torch.bfloat16)``.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with autocast_disabled():
            return fn(*to_fp32(args), **to_fp32(kwargs))

    return wrapper  # type: ignore[return-value]
