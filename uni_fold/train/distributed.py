"""Process groups and model wrapping: one CPU process, ``torchrun`` + DDP (gloo on the CPU,
NCCL on GPUs) or DeepSpeed ZeRO stage 1/2.

``torchrun`` (and ``deepspeed``, and :file:`scripts/train_slurm.sh`) set ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them. Without them the run is a single process.

DeepSpeed is optional (``pip install deepspeed``). On the CPU it runs with its CPU
accelerator, which falls back to gloo when Intel's oneCCL bindings are absent. The model
stays fp32 inside DeepSpeed (no DeepSpeed ``bf16`` section): bf16 comes from the model's
own autocast (:class:`uni_fold.model.runtime.RuntimeConfig`), so the structure module
keeps its fp32 geometry either way.
"""
from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from uni_fold.train.stages import TrainConfig

logger = logging.getLogger(__name__)

__all__ = [
    "DistributedContext",
    "init_distributed",
    "wrap_model",
    "unwrap_model",
    "deepspeed_config",
    "all_reduce_sum",
    "all_reduce_min",
    "broadcast_object",
    "barrier",
    "shutdown",
]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its node,
    its ``device`` and the collective ``backend`` (None for a single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None and self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer; it is "
                         "set by torchrun / the SLURM script") from None


def init_distributed(
    device: str | None = None, backend: str | None = None, timeout_s: float = 1800.0
) -> DistributedContext:
    """Join the process group described by the ``torchrun`` environment variables.

    Args:
        device: ``"cpu"``, ``"cuda"`` or None (CUDA when available). On CUDA each process
            takes GPU ``LOCAL_RANK``.
        backend: collective backend; default NCCL on CUDA, gloo on the CPU.
        timeout_s: collective timeout.
    Returns:
        The :class:`DistributedContext`; a single process when ``WORLD_SIZE`` is unset or 1.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device='cuda' asked for but torch sees no GPU; use device='cpu'")
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    elif device == "cpu":
        dev = torch.device("cpu")
    else:
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if world_size <= 1:
        return DistributedContext(0, 1, 0, dev, None)
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise ValueError(f"WORLD_SIZE={world_size} but {name} is not set; launch with "
                             "torchrun (or scripts/train_slurm.sh), which sets it")
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {}
        if dev.type == "cuda":
            kwargs["device_id"] = dev
        dist.init_process_group(
            backend, rank=rank, world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout_s), **kwargs,
        )
    logger.info("rank %d of %d (local rank %d) on %s, backend %s", rank, world_size,
                local_rank, dev, backend)
    return DistributedContext(rank, world_size, local_rank, dev, backend)


def deepspeed_config(train: TrainConfig) -> dict[str, Any]:
    """The DeepSpeed JSON config for ``train``: one example per micro-step, ZeRO stage,
    gradient clipping; the optimiser and schedule stay ours (passed to ``initialize``)."""
    return {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": train.grad_accum_steps,
        "gradient_clipping": float(train.grad_clip_norm),
        "zero_optimization": {"stage": train.zero_stage},
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": False},
        "fp16": {"enabled": False},
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


def wrap_model(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: TrainConfig,
    ctx: DistributedContext,
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Wrap ``model`` for data parallelism: DDP when distributed with ``strategy=ddp``,
    a DeepSpeed engine with ``strategy=deepspeed`` (any world size), else unchanged.

    Returns ``(wrapped, optimizer)``; with DeepSpeed the optimiser is DeepSpeed's
    (ZeRO-partitioned) wrapper of ours.
    """
    if train.strategy == "deepspeed":
        try:
            import deepspeed
        except ImportError as err:
            raise ValueError(
                "train.strategy='deepspeed' needs DeepSpeed: pip install deepspeed (on the "
                "CPU it runs on gloo), or use train.strategy=ddp"
            ) from err
        engine, ds_optimizer, _, _ = deepspeed.initialize(
            model=model, optimizer=optimizer, config=deepspeed_config(train),
            dist_init_required=not dist.is_initialized(),
        )
        logger.info("DeepSpeed ZeRO stage %d on %d rank(s)", train.zero_stage, ctx.world_size)
        return engine, ds_optimizer
    if ctx.distributed:
        ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
        )
        return ddp, optimizer
    return model, optimizer


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain model inside a DDP module or DeepSpeed engine."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return model


def all_reduce_sum(tensor: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    """Sum over ranks, in place (a no-op in a single process)."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_min(tensor: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return tensor


def broadcast_object(value: Any, ctx: DistributedContext, src: int = 0) -> Any:
    """Rank ``src``'s picklable ``value`` on every rank."""
    if not ctx.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier(ctx: DistributedContext) -> None:
    if ctx.distributed:
        dist.barrier()


def shutdown(ctx: DistributedContext) -> None:
    """Leave the process group (if this process joined one)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
