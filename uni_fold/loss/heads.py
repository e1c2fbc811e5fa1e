"""Losses of the auxiliary heads, Jumper et al. 2021, Suppl. Sections 1.9.6-1.9.10.

============================== ================================= ============================
loss                           target                            AF2 section
============================== ================================= ============================
:func:`distogram_loss`         binned pseudo-beta distances       1.9.8
:func:`masked_msa_loss`        the MSA before BERT corruption     1.9.9
:func:`predicted_lddt_loss`    binned per-residue lDDT-C-alpha    1.9.6, Alg. 29
:func:`experimentally_resolved_loss`  resolved atoms (atom37)     1.9.10
:func:`predicted_aligned_error_loss`  binned aligned errors       1.9.7
============================== ================================= ============================

The last three are trained only on structures with resolution in
``[min_resolution, max_resolution]`` when their config says ``filter_by_resolution``.
All losses are per example (``[*]``) and run in fp32 with autocast off.
"""
from __future__ import annotations

import logging

import torch

from uni_fold.geometry.precision import fp32_no_autocast
from uni_fold.geometry.rigid import Rigid
from uni_fold.loss.common import (
    check_last_dims,
    class_cross_entropy,
    resolution_weight,
    sigmoid_cross_entropy,
)
from uni_fold.loss.lddt import lddt_ca

logger = logging.getLogger(__name__)

Tensor = torch.Tensor

__all__ = [
    "distogram_loss",
    "masked_msa_loss",
    "predicted_lddt_loss",
    "experimentally_resolved_loss",
    "predicted_aligned_error_loss",
]


def _resolution_filtered(loss: Tensor, resolution: Tensor | float | None,
                         filter_by_resolution: bool, min_resolution: float,
                         max_resolution: float, name: str) -> Tensor:
    if not filter_by_resolution:
        return loss
    if resolution is None:
        raise ValueError(f"{name}: filter_by_resolution is on but no resolution was given; "
                         "pass the batch's 'resolution' (0 for NMR / distillation examples)")
    return loss * resolution_weight(resolution, min_resolution, max_resolution, loss)


@fp32_no_autocast
def distogram_loss(
    logits: Tensor,
    pseudo_beta: Tensor,
    pseudo_beta_mask: Tensor,
    first_break: float = 2.3125,
    last_break: float = 21.6875,
    num_bins: int = 64,
) -> dict[str, Tensor]:
    """Suppl. Section 1.9.8: cross entropy of the distogram against binned true distances.

    Args:
        logits: ``[*, N, N, num_bins]``.
        pseudo_beta: ``[*, N, 3]`` CB positions (CA for glycine), Å.
        pseudo_beta_mask: ``[*, N]``.
        first_break, last_break, num_bins: the ``num_bins - 1`` inner bin edges are
            ``linspace(first_break, last_break)``; the last bin is open-ended.
    Returns:
        ``loss [*]`` and ``true_dist [*, N, N]`` (Å).
    """
    check_last_dims("logits", logits, (num_bins,))
    check_last_dims("pseudo_beta", pseudo_beta, (3,))
    edges = torch.linspace(first_break, last_break, num_bins - 1, dtype=logits.dtype,
                           device=logits.device)
    diff = pseudo_beta[..., :, None, :] - pseudo_beta[..., None, :, :]
    dist2 = (diff * diff).sum(dim=-1)  # [*, N, N]
    true_bins = (dist2[..., None] > edges * edges).sum(dim=-1)
    errors = class_cross_entropy(logits, true_bins)
    mask = pseudo_beta_mask.to(logits.dtype)
    square_mask = mask[..., None, :] * mask[..., :, None]
    loss = (errors * square_mask).sum(dim=(-2, -1)) / (1e-6 + square_mask.sum(dim=(-2, -1)))
    return {"loss": loss, "true_dist": torch.sqrt(1e-6 + dist2)}


@fp32_no_autocast
def masked_msa_loss(logits: Tensor, true_msa: Tensor, bert_mask: Tensor) -> Tensor:
    """Suppl. Section 1.9.9: BERT-style reconstruction of the masked MSA entries.

    Args:
        logits: ``[*, N_seq, N_res, 23]``.
        true_msa: ``[*, N_seq, N_res]`` integer classes (0..21) before masking.
        bert_mask: ``[*, N_seq, N_res]`` 1 where the entry was masked.
    Returns:
        ``[*]`` cross entropy averaged over the masked entries.
    """
    if tuple(true_msa.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"true_msa has shape {tuple(true_msa.shape)} but logits have "
                         f"{tuple(logits.shape)}; expected logits [*, N_seq, N_res, C]")
    errors = class_cross_entropy(logits, true_msa)
    mask = bert_mask.to(logits.dtype)
    return (errors * mask).sum(dim=(-2, -1)) / (1e-8 + mask.sum(dim=(-2, -1)))


@fp32_no_autocast
def predicted_lddt_loss(
    logits: Tensor,
    final_atom_positions: Tensor,
    all_atom_positions: Tensor,
    all_atom_mask: Tensor,
    resolution: Tensor | float | None = None,
    filter_by_resolution: bool = True,
    min_resolution: float = 0.1,
    max_resolution: float = 3.0,
) -> Tensor:
    """Suppl. Section 1.9.6 / Alg. 29: the pLDDT head against the per-residue lDDT-C-alpha
    of the predicted structure, binned into ``num_bins`` equal bins of [0, 1].

    Args:
        logits: ``[*, N, num_bins]``.
        final_atom_positions: ``[*, N, 37, 3]`` predicted atoms (the target is computed
            from them without gradient).
        all_atom_positions: ``[*, N, 37, 3]``; all_atom_mask: ``[*, N, 37]``.
        resolution: ``[*]`` or scalar (Å).
        filter_by_resolution, min_resolution, max_resolution: AF2's head config.
    Returns:
        ``[*]`` cross entropy averaged over residues with a resolved C-alpha.
    """
    check_last_dims("all_atom_mask", all_atom_mask, (37,))
    num_bins = logits.shape[-1]
    target = lddt_ca(final_atom_positions.detach(), all_atom_positions, all_atom_mask,
                     cutoff=15.0, per_residue=True)
    bins = torch.floor(target * num_bins).long().clamp(max=num_bins - 1)
    errors = class_cross_entropy(logits, bins)
    mask_ca = all_atom_mask[..., 1].to(logits.dtype)
    loss = (errors * mask_ca).sum(dim=-1) / (mask_ca.sum(dim=-1) + 1e-8)
    return _resolution_filtered(loss, resolution, filter_by_resolution, min_resolution,
                                max_resolution, "predicted_lddt_loss")


@fp32_no_autocast
def experimentally_resolved_loss(
    logits: Tensor,
    atom37_atom_exists: Tensor,
    all_atom_mask: Tensor,
    resolution: Tensor | float | None = None,
    filter_by_resolution: bool = True,
    min_resolution: float = 0.1,
    max_resolution: float = 3.0,
) -> Tensor:
    """Suppl. Section 1.9.10: per-atom sigmoid cross entropy of "is this atom resolved".

    Args:
        logits: ``[*, N, 37]``.
        atom37_atom_exists: ``[*, N, 37]`` atoms the residue type has (the average runs
            over them).
        all_atom_mask: ``[*, N, 37]`` resolved atoms (the labels).
        resolution, filter_by_resolution, min_resolution, max_resolution: as
            :func:`predicted_lddt_loss`.
    Returns:
        ``[*]``.
    """
    check_last_dims("logits", logits, (37,))
    xent = sigmoid_cross_entropy(logits, all_atom_mask.to(logits.dtype))
    exists = atom37_atom_exists.to(logits.dtype)
    loss = (xent * exists).sum(dim=(-2, -1)) / (1e-8 + exists.sum(dim=(-2, -1)))
    return _resolution_filtered(loss, resolution, filter_by_resolution, min_resolution,
                                max_resolution, "experimentally_resolved_loss")


@fp32_no_autocast
def predicted_aligned_error_loss(
    logits: Tensor,
    final_affines: Tensor,
    backbone_affine_tensor: Tensor,
    backbone_affine_mask: Tensor,
    max_error_bin: float = 31.0,
    resolution: Tensor | float | None = None,
    filter_by_resolution: bool = True,
    min_resolution: float = 0.1,
    max_resolution: float = 3.0,
) -> Tensor:
    """Suppl. Section 1.9.7: the PAE (pTM) head against binned aligned errors.

    The error of residue j in the frame of residue i is the distance between the
    C-alpha of j expressed in the frame of i, predicted versus true (no gradient).

    Args:
        logits: ``[*, N, N, num_bins]`` (row i: alignment frame, column j: residue).
        final_affines: ``[*, N, 7]`` predicted backbone frames (quaternion + Å), used as
            given (AF2 does not re-normalise the quaternion here).
        backbone_affine_tensor: ``[*, N, 7]`` true frames; backbone_affine_mask ``[*, N]``.
        max_error_bin: the ``num_bins - 1`` inner edges are ``linspace(0, max_error_bin)``.
        resolution, filter_by_resolution, min_resolution, max_resolution: as
            :func:`predicted_lddt_loss`.
    Returns:
        ``[*]`` cross entropy averaged over pairs of resolved residues.
    """
    check_last_dims("final_affines", final_affines, (7,))
    check_last_dims("backbone_affine_tensor", backbone_affine_tensor, (7,))
    num_bins = logits.shape[-1]
    with torch.no_grad():
        pred = Rigid.from_tensor_7(final_affines.detach(), normalize_quat=False)
        true = Rigid.from_tensor_7(backbone_affine_tensor, normalize_quat=False)
        local_pred = pred[..., None].invert_apply(pred.trans[..., None, :, :])
        local_true = true[..., None].invert_apply(true.trans[..., None, :, :])
        diff = local_pred - local_true
        error2 = (diff * diff).sum(dim=-1)  # [*, N, N]
        edges = torch.linspace(0.0, max_error_bin, num_bins - 1, dtype=logits.dtype,
                               device=logits.device)
        true_bins = (error2[..., None] > edges * edges).sum(dim=-1)
    errors = class_cross_entropy(logits, true_bins)
    mask = backbone_affine_mask.to(logits.dtype)
    square_mask = mask[..., :, None] * mask[..., None, :]
    loss = (errors * square_mask).sum(dim=(-2, -1)) / (1e-8 + square_mask.sum(dim=(-2, -1)))
    return _resolution_filtered(loss, resolution, filter_by_resolution, min_resolution,
                                max_resolution, "predicted_aligned_error_loss")
