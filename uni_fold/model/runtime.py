"""Runtime knobs of the network: how it runs, never what it computes.

Chunk size, attention backend, activation checkpointing and precision change memory use
and speed but not the architecture (up to floating-point rounding). They live in one
:class:`RuntimeConfig` that is set once on a built model with :func:`apply_runtime`,
instead of being passed through every ``forward``::

    model = EvoformerStack(...)
    apply_runtime(model, RuntimeConfig(chunk_size=64, attention_backend="sdpa"))

Every module that reads a knob derives from :class:`RuntimeAware` and reads
``self.runtime``. A module that was never given a config uses :data:`DEFAULT_RUNTIME`
(no chunking, plain torch attention, no checkpointing, fp32).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

logger = logging.getLogger(__name__)

AttentionBackend = Literal["torch", "sdpa", "deepspeed"]
Precision = Literal["fp32", "bf16"]

ATTENTION_BACKENDS: tuple[str, ...] = ("torch", "sdpa", "deepspeed")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")


@dataclass(frozen=True)
class RuntimeConfig:
    """How the network runs.

    Attributes:
      chunk_size: split attention, triangle multiplication, outer product mean and
        transitions into pieces of this many rows to bound peak memory at O(chunk * N_res^2)
        instead of O(N_res^3); ``None`` runs each op in one piece. The results equal the
        unchunked ones up to rounding.
      attention_backend: ``"torch"`` (explicit softmax, fp32 statistics), ``"sdpa"``
        (``torch.nn.functional.scaled_dot_product_attention``: FlashAttention /
        memory-efficient kernels on GPU) or ``"deepspeed"`` (DS4Sci EvoformerAttention,
        used on CUDA half-precision inputs when ``deepspeed`` is importable; otherwise the
        call falls back to ``"sdpa"`` and says so once in the log).
      checkpoint_blocks: recompute each Evoformer block's activations in the backward pass
        (activation checkpointing) while training; ignored in ``eval()`` mode.
      precision: ``"fp32"`` or ``"bf16"`` (bf16 autocast around the trunk; softmax and
        layer-norm statistics stay fp32).
    """

    chunk_size: int | None = None
    attention_backend: AttentionBackend = "torch"
    checkpoint_blocks: bool = False
    precision: Precision = "fp32"

    def __post_init__(self) -> None:
        if self.chunk_size is not None:
            if isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int):
                raise ValueError(
                    f"RuntimeConfig.chunk_size must be a positive int or None, got "
                    f"{self.chunk_size!r}"
                )
            if self.chunk_size < 1:
                raise ValueError(
                    f"RuntimeConfig.chunk_size must be >= 1 (or None for no chunking), got "
                    f"{self.chunk_size}"
                )
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(
                f"RuntimeConfig.attention_backend must be one of {ATTENTION_BACKENDS}, got "
                f"{self.attention_backend!r}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"RuntimeConfig.precision must be one of {PRECISIONS}, got {self.precision!r}"
            )

    def replace(self, **changes: object) -> RuntimeConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


DEFAULT_RUNTIME = RuntimeConfig()


class RuntimeAware:
    """Mixin for modules that read runtime knobs from ``self.runtime``.

    The class attribute is the default; :func:`apply_runtime` sets an instance attribute.
    """

    runtime: RuntimeConfig = DEFAULT_RUNTIME


def apply_runtime(model: nn.Module, runtime: RuntimeConfig) -> nn.Module:
    """Set ``runtime`` on ``model`` and every submodule that uses runtime knobs.

    Call it again after adding submodules, or to change a knob (e.g. a smaller chunk size
    after an out-of-memory error). Returns ``model`` for chaining.
    """
    if not isinstance(runtime, RuntimeConfig):
        raise TypeError(
            f"apply_runtime expects a RuntimeConfig, got {type(runtime).__name__}; build one "
            "with RuntimeConfig(chunk_size=..., attention_backend=...)"
        )
    count = 0
    for module in model.modules():
        if isinstance(module, RuntimeAware):
            module.runtime = runtime
            count += 1
    logger.debug("runtime %s applied to %d modules", runtime, count)
    return model


def autocast_context(runtime: RuntimeConfig, device_type: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``precision="bf16"``, a no-op context for ``"fp32"``."""
    if runtime.precision == "bf16":
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def fp32_region(device_type: str) -> Iterator[None]:
    """Switch autocast off, so the ops inside run in the dtype of their inputs."""
    with torch.autocast(device_type=device_type, enabled=False):
        yield


@functools.cache
def deepspeed_evoformer_attention():  # noqa: ANN201 - returns the kernel or None
    """DS4Sci ``DS4Sci_EvoformerAttention`` when DeepSpeed is importable, else ``None``."""
    try:
        from deepspeed.ops.deepspeed4science import DS4Sci_EvoformerAttention
    except Exception as err:  # ImportError, or a broken CUDA extension build
        logger.warning(
            "attention_backend='deepspeed' asked for, but DeepSpeed's DS4Sci "
            "EvoformerAttention is not importable (%s); falling back to 'sdpa'",
            err,
        )
        return None
    return DS4Sci_EvoformerAttention


@functools.cache
def _log_once(message: str) -> None:
    logger.warning(message)


def log_once(message: str) -> None:
    """Log a warning the first time ``message`` is seen in this process."""
    _log_once(message)
