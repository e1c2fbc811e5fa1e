"""Small pieces shared by the loss functions: masked means, cross entropies, the
resolution filter, pairwise distances and input checks.

Everything here is plain tensor algebra in the caller's dtype; the public loss functions
run it in fp32 with autocast off (:func:`~uni_fold.geometry.precision.fp32_no_autocast`).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

Tensor = torch.Tensor


def masked_mean(mask: Tensor, value: Tensor, dim: Sequence[int] | None = None,
                eps: float = 1e-10) -> Tensor:
    """``sum(mask * value) / (sum(mask) * b + eps)`` over ``dim`` (all dims when None).

    ``mask`` has ``value``'s rank; a mask axis of size 1 broadcasts and counts ``b`` times,
    ``b`` being the size of that axis in ``value`` (the convention of AF2's ``mask_mean``).
    """
    if mask.dim() != value.dim():
        raise ValueError(f"masked_mean: mask has rank {mask.dim()} (shape "
                         f"{tuple(mask.shape)}) but value has rank {value.dim()} (shape "
                         f"{tuple(value.shape)}); add size-1 axes to the mask")
    dims = list(range(value.dim())) if dim is None else [d % value.dim() for d in dim]
    broadcast = 1.0
    for d in dims:
        if mask.shape[d] == 1 and value.shape[d] != 1:
            broadcast *= value.shape[d]
        elif mask.shape[d] != value.shape[d]:
            raise ValueError(f"masked_mean: mask axis {d} has size {mask.shape[d]}, value "
                             f"axis {d} has size {value.shape[d]}")
    num = (mask * value).sum(dim=dims)
    return num / (mask.sum(dim=dims) * broadcast + eps)


def softmax_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """``-sum(labels * log_softmax(logits))`` over the last axis: ``[*, C] -> [*]``.

    ``labels`` is a distribution (e.g. one-hot) of ``logits``' shape.
    """
    return -(labels * F.log_softmax(logits, dim=-1)).sum(dim=-1)


def class_cross_entropy(logits: Tensor, classes: Tensor) -> Tensor:
    """Cross entropy of integer ``classes [*]`` under ``logits [*, C]`` -> ``[*]``.

    The same number as :func:`softmax_cross_entropy` with one-hot labels, without building
    the one-hot tensor.
    """
    log_p = F.log_softmax(logits, dim=-1)
    return -log_p.gather(-1, classes.long().unsqueeze(-1)).squeeze(-1)


def sigmoid_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Elementwise binary cross entropy of ``labels`` in [0, 1] under ``logits``."""
    return -labels * F.logsigmoid(logits) - (1.0 - labels) * F.logsigmoid(-logits)


def resolution_weight(resolution: Tensor | float, min_resolution: float,
                      max_resolution: float, like: Tensor) -> Tensor:
    """1.0 where ``min_resolution <= resolution <= max_resolution`` else 0.0, shaped to
    multiply a per-example loss ``like [*]``.

    NMR and self-distillation examples carry resolution 0 and so drop out of the losses
    that AF2 trains only on high-resolution structures (pLDDT, PAE, resolved atoms).
    """
    res = torch.as_tensor(resolution, dtype=like.dtype, device=like.device)
    if res.dim() > like.dim():
        if res.shape[-1] != 1:
            raise ValueError(f"resolution has shape {tuple(res.shape)}; expected one value per "
                             f"example, i.e. shape {tuple(like.shape)} or scalar")
        res = res[..., 0]
    keep = (res >= min_resolution) & (res <= max_resolution)
    return keep.to(like.dtype)


def pairwise_distances(x: Tensor, y: Tensor, eps: float) -> Tensor:
    """``sqrt(eps + |x_i - y_j|^2)`` for points ``x [*, I, 3]`` and ``y [*, J, 3]`` ->
    ``[*, I, J]``, by explicit differences (exact for nearby points, unlike the
    ``|x|^2 + |y|^2 - 2 x.y`` expansion)."""
    diff = x[..., :, None, :] - y[..., None, :, :]
    return torch.sqrt(eps + (diff * diff).sum(dim=-1))


def require(batch: Mapping[str, Any], keys: Sequence[str], what: str) -> None:
    """Raise a ValueError naming every key of ``keys`` missing from ``batch``."""
    missing = [k for k in keys if k not in batch]
    if missing:
        raise ValueError(
            f"{what} needs the batch features {missing}; build ground-truth features with "
            "uni_fold.data (process_features on raw features holding all_atom_positions, "
            "all_atom_mask and resolution) or uni_fold.data.ground_truth"
        )


def check_last_dims(name: str, x: Tensor, dims: tuple[int, ...]) -> None:
    """Raise a ValueError unless ``x`` is a tensor whose trailing shape is ``dims``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < len(dims) or tuple(x.shape[x.dim() - len(dims):]) != dims:
        want = "[*, " + ", ".join(str(d) for d in dims) + "]"
        raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {want}")


def check_same_shape(names: Sequence[str], tensors: Sequence[Tensor]) -> None:
    """Raise a ValueError unless every tensor has the first one's shape."""
    first = tuple(tensors[0].shape)
    for name, t in zip(names[1:], tensors[1:], strict=True):
        if tuple(t.shape) != first:
            raise ValueError(f"{name} has shape {tuple(t.shape)} but {names[0]} has {first}; "
                             "they must match")
