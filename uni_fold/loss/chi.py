"""Torsion-angle supervision, Jumper et al. 2021, Suppl. Alg. 27 "torsionAngleLoss".

The predicted chi angles of every structure-module layer are compared with the true ones as
(sin, cos) pairs; for pi-periodic chis (ASP chi2, GLU chi3, PHE chi2, TYR chi2) the smaller
of the errors to ``chi`` and ``chi + pi`` counts. A second term keeps the unnormalised
(sin, cos) outputs of the angle ResNet near unit length.
"""
from __future__ import annotations

import logging

import torch

from data_pipeline import residue_constants as rc
from uni_fold.geometry.precision import fp32_no_autocast
from uni_fold.loss.common import check_last_dims, masked_mean

logger = logging.getLogger(__name__)

Tensor = torch.Tensor

__all__ = ["supervised_chi_loss"]

# [21, 4]: 1 where the chi is pi-periodic (row 20, unknown, is all 0).
_CHI_PI_PERIODIC = torch.tensor(rc.chi_pi_periodic, dtype=torch.float32)
# Added under the square root of the (sin, cos) norm.
_NORM_EPS = 1e-6


@fp32_no_autocast
def supervised_chi_loss(
    angles_sin_cos: Tensor,
    unnormalized_angles_sin_cos: Tensor,
    aatype: Tensor,
    seq_mask: Tensor,
    chi_mask: Tensor,
    chi_angles: Tensor,
) -> dict[str, Tensor]:
    """Suppl. Alg. 27: chi-angle loss and angle-norm loss over all layers.

    Args:
        angles_sin_cos: ``[L, *, N_res, 7, 2]`` normalised torsions per layer (omega, phi,
            psi, chi1-4); only chi1-4 are supervised.
        unnormalized_angles_sin_cos: ``[L, *, N_res, 7, 2]``, before normalisation.
        aatype: ``[*, N_res]`` residue types.
        seq_mask: ``[*, N_res]``.
        chi_mask: ``[*, N_res, 4]`` 1 for chis defined by resolved atoms.
        chi_angles: ``[*, N_res, 4]`` true chi angles (radians).
    Returns:
        ``chi_loss [*]`` (mean squared (sin, cos) error over layers and defined chis) and
        ``angle_norm_loss [*]`` (mean ``| |(sin, cos)| - 1 |`` over layers, all 7 torsions
        and residues). AF2 weights them with ``chi_weight`` and ``angle_norm_weight``.
    """
    check_last_dims("angles_sin_cos", angles_sin_cos, (7, 2))
    check_last_dims("unnormalized_angles_sin_cos", unnormalized_angles_sin_cos, (7, 2))
    check_last_dims("chi_angles", chi_angles, (4,))
    if angles_sin_cos.dim() != chi_angles.dim() + 2:
        raise ValueError(f"angles_sin_cos has shape {tuple(angles_sin_cos.shape)}; expected "
                         "[L, *, N_res, 7, 2] with a leading layer axis in front of chi_angles' "
                         f"{tuple(chi_angles.shape)}")
    dtype = angles_sin_cos.dtype
    pred_chi = angles_sin_cos[..., 3:, :]  # [L, *, N, 4, 2]

    periodic = _CHI_PI_PERIODIC.to(angles_sin_cos.device, dtype)[
        aatype.long().clamp(max=rc.restype_num)]  # [*, N, 4]
    true_chi = chi_angles.to(dtype)
    true_sin_cos = torch.stack([torch.sin(true_chi), torch.cos(true_chi)], dim=-1)
    # chi + pi flips both sin and cos.
    shifted_sin_cos = (1.0 - 2.0 * periodic)[..., None] * true_sin_cos
    sq_error = ((true_sin_cos - pred_chi) ** 2).sum(dim=-1)
    sq_error_shifted = ((shifted_sin_cos - pred_chi) ** 2).sum(dim=-1)
    sq_error = torch.minimum(sq_error, sq_error_shifted)  # [L, *, N, 4]

    # Mean over layers, residues and chis; batch dims stay.
    lead = [0, -2, -1]
    chi_loss = masked_mean(chi_mask.to(dtype)[None], sq_error, dim=lead)

    unnormed = unnormalized_angles_sin_cos
    norm = torch.sqrt((unnormed * unnormed).sum(dim=-1) + _NORM_EPS)  # [L, *, N, 7]
    norm_error = torch.abs(norm - 1.0)
    angle_norm_loss = masked_mean(seq_mask.to(dtype)[None, ..., None], norm_error, dim=lead)
    return {"chi_loss": chi_loss, "angle_norm_loss": angle_norm_loss}
