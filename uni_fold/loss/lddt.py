"""lDDT (Mariani et al. 2013) as AF2 computes it: the local distance difference test
without the stereochemistry checks, used for the pLDDT targets (Suppl. Alg. 29) and as
the lDDT-C-alpha training and validation metric.

For every pair of points closer than ``cutoff`` in the true structure, the difference
between true and predicted distance is scored against the thresholds 0.5, 1, 2 and 4 Å;
the score is the mean fraction of thresholds met. No gradient flows through the score.
"""
from __future__ import annotations

import logging

import torch

from data_pipeline import residue_constants as rc
from uni_fold.geometry.precision import fp32_no_autocast
from uni_fold.loss.common import check_last_dims, check_same_shape, pairwise_distances

logger = logging.getLogger(__name__)

Tensor = torch.Tensor

__all__ = ["lddt", "lddt_ca", "LDDT_THRESHOLDS"]

LDDT_THRESHOLDS = (0.5, 1.0, 2.0, 4.0)
_CA = rc.atom_order["CA"]


@torch.no_grad()
@fp32_no_autocast
def lddt(
    predicted_points: Tensor,
    true_points: Tensor,
    true_points_mask: Tensor,
    cutoff: float = 15.0,
    per_residue: bool = False,
    eps: float = 1e-10,
) -> Tensor:
    """Approximate lDDT of ``predicted_points`` against ``true_points``.

    Args:
        predicted_points, true_points: ``[*, N, 3]`` (Å).
        true_points_mask: ``[*, N]`` 1 for points present in the true structure.
        cutoff: only pairs closer than this in the true structure are scored (Å).
        per_residue: return one score per point instead of one per structure.
        eps: regulariser of the normalisation, as AF2.
    Returns:
        ``[*]`` (or ``[*, N]`` with ``per_residue``) scores in [0, 1].
    """
    check_last_dims("predicted_points", predicted_points, (3,))
    check_same_shape(("predicted_points", "true_points"), (predicted_points, true_points))
    if tuple(true_points_mask.shape) != tuple(true_points.shape[:-1]):
        raise ValueError(f"true_points_mask has shape {tuple(true_points_mask.shape)}, "
                         f"expected {tuple(true_points.shape[:-1])} (one value per point)")
    dtype = predicted_points.dtype
    mask = true_points_mask.to(dtype)
    d_true = pairwise_distances(true_points, true_points, 1e-10)
    d_pred = pairwise_distances(predicted_points, predicted_points, 1e-10)
    n = true_points.shape[-2]
    not_self = 1.0 - torch.eye(n, dtype=dtype, device=true_points.device)
    scored = (d_true < cutoff).to(dtype) * mask[..., :, None] * mask[..., None, :] * not_self
    l1 = torch.abs(d_true - d_pred)
    score = sum((l1 < t).to(dtype) for t in LDDT_THRESHOLDS) * (1.0 / len(LDDT_THRESHOLDS))
    dims = (-1,) if per_residue else (-2, -1)
    norm = 1.0 / (eps + scored.sum(dim=dims))
    return norm * (eps + (scored * score).sum(dim=dims))


@fp32_no_autocast
def lddt_ca(
    final_atom_positions: Tensor,
    all_atom_positions: Tensor,
    all_atom_mask: Tensor,
    cutoff: float = 15.0,
    per_residue: bool = False,
) -> Tensor:
    """lDDT of the C-alpha atoms: predicted atom37 ``[*, N, 37, 3]`` against the true
    ``all_atom_positions [*, N, 37, 3]`` with ``all_atom_mask [*, N, 37]``; ``[*]`` (or
    ``[*, N]``)."""
    check_last_dims("final_atom_positions", final_atom_positions, (37, 3))
    check_last_dims("all_atom_positions", all_atom_positions, (37, 3))
    return lddt(final_atom_positions[..., _CA, :], all_atom_positions[..., _CA, :],
                all_atom_mask[..., _CA], cutoff=cutoff, per_residue=per_residue)
