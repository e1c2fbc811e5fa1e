"""Confidence scores from head logits: pLDDT, predicted aligned error (PAE) and pTM.

Suppl. Section 1.9.6 (pLDDT, Alg. 29) and 1.9.7 (PAE, pTM) of Jumper et al. 2021, computed
as AF2's ``alphafold.common.confidence`` computes them, in torch and batched over leading
dims. Everything is computed in fp32 (fp64 inputs stay fp64) with autocast switched off.
"""
from __future__ import annotations

import logging

import torch

from uni_fold.geometry.precision import fp32_no_autocast

logger = logging.getLogger(__name__)

Tensor = torch.Tensor

# pTM: the number of residues is clipped from below so that d0 stays positive (TM-score's
# d0(N) = 1.24 (N - 15)^(1/3) - 1.8, Yang & Skolnick 2004).
PTM_MIN_NUM_RES = 19.0


def _check_logits(logits: Tensor, min_dim: int, name: str, shape: str) -> None:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise ValueError(f"{name}: logits must be a floating-point tensor {shape}")
    if logits.dim() < min_dim:
        raise ValueError(f"{name}: logits have shape {tuple(logits.shape)}, expected {shape}")


@fp32_no_autocast
def compute_plddt(logits: Tensor) -> Tensor:
    """Per-residue pLDDT (0-100) from pLDDT-head logits.

    The expected lDDT-Ca under the predicted distribution over ``num_bins`` equal bins of
    [0, 1], each represented by its centre, times 100.

    Args:
        logits: ``[*, N_res, num_bins]`` from :class:`~uni_fold.model.heads.PredictedLDDTHead`.
    Returns:
        ``[*, N_res]`` pLDDT.
    """
    _check_logits(logits, 1, "compute_plddt", "[*, N_res, num_bins]")
    num_bins = logits.shape[-1]
    centers = (torch.arange(num_bins, device=logits.device, dtype=logits.dtype) + 0.5) / num_bins
    probs = torch.softmax(logits, dim=-1)
    return (probs * centers).sum(dim=-1) * 100.0


def _bin_centers(breaks: Tensor) -> Tensor:
    """Bin centres ``[num_bins]`` from equally spaced edges ``[num_bins - 1]``: each edge plus
    half a step, and one more catch-all bin a step beyond the last."""
    step = breaks[1] - breaks[0]
    centers = breaks + step / 2
    return torch.cat([centers, centers[-1:] + step])


def _check_breaks(breaks: Tensor, num_bins: int, name: str) -> Tensor:
    breaks = torch.as_tensor(breaks)
    if breaks.dim() != 1 or breaks.shape[0] != num_bins - 1 or num_bins < 3:
        raise ValueError(
            f"{name}: breaks must be the {num_bins - 1} bin edges [num_bins - 1] for logits "
            f"with num_bins={num_bins} (at least 3 bins), got shape {tuple(breaks.shape)}"
        )
    return breaks


@fp32_no_autocast
def compute_predicted_aligned_error(
    logits: Tensor, max_bin: float = 31.0, num_bins: int | None = None
) -> dict[str, Tensor]:
    """Predicted aligned error (Å) from PAE-head logits.

    The bins are ``linspace(0, max_bin, num_bins - 1)`` edges (as the head's ``breaks``);
    the expectation uses their centres plus a catch-all bin a step beyond ``max_bin``.

    Args:
        logits: ``[*, N_res, N_res, num_bins]`` from
            :class:`~uni_fold.model.heads.PredictedAlignedErrorHead`; entry ``[i, j]`` is the
            error of residue ``j`` when aligned on residue ``i``'s frame.
        max_bin: the last bin edge in Å (AF2 ``max_error_bin``, 31).
        num_bins: number of bins; ``None`` takes it from ``logits``.
    Returns:
        ``aligned_confidence_probs [*, N_res, N_res, num_bins]``,
        ``predicted_aligned_error [*, N_res, N_res]`` (Å) and
        ``max_predicted_aligned_error`` (0-dim, Å: the largest value the PAE can take).
    """
    _check_logits(logits, 2, "compute_predicted_aligned_error", "[*, N_res, N_res, num_bins]")
    if num_bins is None:
        num_bins = logits.shape[-1]
    if logits.shape[-1] != num_bins:
        raise ValueError(f"compute_predicted_aligned_error: logits have {logits.shape[-1]} bins "
                         f"but num_bins={num_bins}; pass the head's num_bins")
    if num_bins < 3:
        raise ValueError(f"compute_predicted_aligned_error: need at least 3 bins, got {num_bins}")
    breaks = torch.linspace(0.0, max_bin, num_bins - 1, device=logits.device, dtype=logits.dtype)
    centers = _bin_centers(breaks)
    probs = torch.softmax(logits, dim=-1)
    return {
        "aligned_confidence_probs": probs,
        "predicted_aligned_error": (probs * centers).sum(dim=-1),
        "max_predicted_aligned_error": centers[-1],
    }


@fp32_no_autocast
def predicted_tm_score(
    logits: Tensor,
    breaks: Tensor,
    residue_weights: Tensor | None = None,
    asym_id: Tensor | None = None,
) -> Tensor:
    """Predicted TM-score (pTM), or interface pTM (ipTM) when ``asym_id`` is given.

    For every alignment frame ``i``, the expected TM-score term
    ``1 / (1 + (e_ij / d0)^2)`` under the predicted error distribution is averaged over
    residues ``j`` weighted by ``residue_weights``; the result is the largest such
    average, multiplied by the frame's own weight (AF2's ``predicted_tm_score`` as shipped
    in the reference package). ``d0`` follows TM-score with ``N`` = the sum of the weights,
    clipped below at 19. With ``asym_id`` only pairs from different chains count (ipTM).

    Args:
        logits: ``[*, N_res, N_res, num_bins]`` PAE-head logits.
        breaks: ``[num_bins - 1]`` the head's bin edges (Å).
        residue_weights: ``[*, N_res]`` weights in [0, 1] (e.g. the sequence mask);
            ``None``: all ones.
        asym_id: ``[*, N_res]`` chain ids for ipTM; ``None`` for pTM.
    Returns:
        ``[*]`` (0-dim for unbatched input) pTM in [0, 1].
    """
    _check_logits(logits, 3, "predicted_tm_score", "[*, N_res, N_res, num_bins]")
    n_res, num_bins = logits.shape[-2], logits.shape[-1]
    if logits.shape[-3] != n_res:
        raise ValueError(f"predicted_tm_score: logits have shape {tuple(logits.shape)}; "
                         "the two residue axes must be equal")
    breaks = _check_breaks(breaks, num_bins, "predicted_tm_score").to(logits)
    lead = logits.shape[:-3]
    if residue_weights is None:
        residue_weights = torch.ones(lead + (n_res,), device=logits.device, dtype=logits.dtype)
    residue_weights = residue_weights.to(logits)
    if residue_weights.shape != lead + (n_res,):
        raise ValueError(f"predicted_tm_score: residue_weights has shape "
                         f"{tuple(residue_weights.shape)}, expected {tuple(lead + (n_res,))}")

    centers = _bin_centers(breaks)
    clipped_n = torch.clamp(residue_weights.sum(dim=-1), min=PTM_MIN_NUM_RES)  # [*]
    d0 = 1.24 * (clipped_n - 15.0) ** (1.0 / 3.0) - 1.8
    tm_per_bin = 1.0 / (1.0 + centers**2 / d0[..., None] ** 2)  # [*, num_bins]
    probs = torch.softmax(logits, dim=-1)
    tm_term_ij = (probs * tm_per_bin[..., None, None, :]).sum(dim=-1)  # [*, N, N]

    if asym_id is None:
        pair_mask_ij = torch.ones_like(tm_term_ij)
    else:
        if asym_id.shape != lead + (n_res,):
            raise ValueError(f"predicted_tm_score: asym_id has shape {tuple(asym_id.shape)}, "
                             f"expected {tuple(lead + (n_res,))}")
        pair_mask_ij = (asym_id[..., :, None] != asym_id[..., None, :]).to(logits)
    tm_term_ij = tm_term_ij * pair_mask_ij
    pair_weights_ij = pair_mask_ij * residue_weights[..., :, None] * residue_weights[..., None, :]
    normed_ij = pair_weights_ij / (1e-8 + pair_weights_ij.sum(dim=-1, keepdim=True))
    per_alignment_i = (tm_term_ij * normed_ij).sum(dim=-1)
    return (per_alignment_i * residue_weights).max(dim=-1).values
