"""Frame aligned point error (FAPE) losses, Jumper et al. 2021, Suppl. Section 1.9.2-1.9.3.

* :func:`frame_aligned_point_error` - Suppl. Alg. 28 "computeFAPE": every point is
  expressed in every frame, predicted and true, and the distance between the two local
  positions is averaged over (frame, point) pairs.
* :func:`backbone_loss` - Alg. 20 line 17: FAPE of the C-alpha positions under the backbone
  frames, per structure-module layer, with AF2's mix of clamped and unclamped FAPE
  (Suppl. Section 1.11.5).
* :func:`find_optimal_renaming` / :func:`compute_renamed_ground_truth` - Suppl. Alg. 26
  "renameSymmetricGroundTruthAtoms": for each residue with a pi-symmetric side chain (ASP,
  GLU, PHE, TYR), pick the naming of the ground-truth atoms closer to the prediction.
* :func:`sidechain_loss` - Alg. 20 line 19: FAPE of all atom14 atoms under all 8 rigid-group
  frames of the last layer, against the renamed ground truth.

All functions run in fp32 (fp64 inputs stay fp64) with autocast off. Leading batch dims
``*`` are allowed everywhere; the structure-module layer axis is ``L``.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from data_pipeline import residue_constants as rc
from uni_fold.geometry.all_atom import rigid_from_flat12
from uni_fold.geometry.precision import fp32_no_autocast
from uni_fold.geometry.rigid import Rigid
from uni_fold.loss.common import check_last_dims, check_same_shape

logger = logging.getLogger(__name__)

Tensor = torch.Tensor

__all__ = [
    "frame_aligned_point_error",
    "backbone_loss",
    "find_optimal_renaming",
    "compute_renamed_ground_truth",
    "sidechain_loss",
]

# Regulariser under the square root and in the normalisation of FAPE (AF2's epsilon).
FAPE_EPS = 1e-4
# atom14 slots that hold a pi-symmetric atom in some residue type (Suppl. Table 3); only
# these rows can enter the renaming decision.
_AMBIGUOUS_SLOTS = np.flatnonzero(rc.restype_atom14_is_ambiguous.any(axis=0))
_AMBIGUOUS_SLICE = slice(int(_AMBIGUOUS_SLOTS.min()), int(_AMBIGUOUS_SLOTS.max()) + 1)


def _local_error(pred_frames: Rigid, target_frames: Rigid, pred_positions: Tensor,
                 target_positions: Tensor, eps: float) -> Tensor:
    """``sqrt(|T_pred,i^-1 x_pred,j - T_true,i^-1 x_true,j|^2 + eps)``: ``[*, F, P]``."""
    local_pred = pred_frames.invert()[..., None].apply(pred_positions[..., None, :, :])
    local_true = target_frames.invert()[..., None].apply(target_positions[..., None, :, :])
    diff = local_pred - local_true
    return torch.sqrt((diff * diff).sum(dim=-1) + eps)


def _average_error(error: Tensor, frames_mask: Tensor, positions_mask: Tensor,
                   length_scale: float, eps: float) -> Tensor:
    """Masked mean of ``error [*, F, P] / length_scale`` over frames and points -> ``[*]``."""
    normed = error / length_scale
    normed = normed * frames_mask[..., :, None] * positions_mask[..., None, :]
    count = frames_mask.sum(dim=-1) * positions_mask.sum(dim=-1)
    return normed.sum(dim=(-2, -1)) / (eps + count)


def _check_clamp(l1_clamp_distance: float | None) -> None:
    if l1_clamp_distance is not None and not l1_clamp_distance > 0:
        raise ValueError(f"l1_clamp_distance must be positive or None (no clamp), got "
                         f"{l1_clamp_distance}")


@fp32_no_autocast
def frame_aligned_point_error(
    pred_frames: Rigid,
    target_frames: Rigid,
    frames_mask: Tensor,
    pred_positions: Tensor,
    target_positions: Tensor,
    positions_mask: Tensor,
    length_scale: float,
    l1_clamp_distance: float | None = None,
    eps: float = FAPE_EPS,
) -> Tensor:
    """Suppl. Alg. 28 (Jumper et al. 2021): frame aligned point error.

    Args:
        pred_frames, target_frames: ``Rigid [*, F]`` (batch dims broadcast).
        frames_mask: ``[*, F]`` 1 for frames to align on.
        pred_positions, target_positions: ``[*, P, 3]`` (Å).
        positions_mask: ``[*, P]`` 1 for points to score.
        length_scale: the error is divided by it (AF2: 10 Å).
        l1_clamp_distance: distances are clipped to ``[0, l1_clamp_distance]`` before
            averaging (no gradient beyond it); None for no clamp.
        eps: added under the square root and to the normaliser.
    Returns:
        ``[*]`` the masked mean of the scaled distances.
    """
    if not isinstance(pred_frames, Rigid) or not isinstance(target_frames, Rigid):
        raise TypeError("pred_frames and target_frames must be Rigid values; build them with "
                        "Rigid.from_tensor_4x4 / Rigid.from_tensor_7 / rigid_from_flat12")
    check_last_dims("pred_positions", pred_positions, (3,))
    check_last_dims("target_positions", target_positions, (3,))
    _check_clamp(l1_clamp_distance)
    error = _local_error(pred_frames, target_frames, pred_positions, target_positions, eps)
    if l1_clamp_distance is not None:
        error = torch.clamp(error, 0.0, l1_clamp_distance)
    return _average_error(error, frames_mask, positions_mask, length_scale, eps)


@fp32_no_autocast
def backbone_loss(
    traj: Tensor,
    backbone_affine_tensor: Tensor,
    backbone_affine_mask: Tensor,
    clamp_distance: float = 10.0,
    loss_unit_distance: float = 10.0,
    use_clamped_fape: Tensor | float | None = None,
) -> Tensor:
    """Suppl. Alg. 20 line 17: backbone FAPE of every structure-module layer.

    Frames and points are the backbone frames and their origins (C-alpha). Quaternions are
    used as given (AF2 does not re-normalise them here).

    Args:
        traj: ``[L, *, N_res, 7]`` per-layer frames, quaternion (w, x, y, z) + translation in
            Å (the structure module's ``sm["affine"]``).
        backbone_affine_tensor: ``[*, N_res, 7]`` true backbone frames, same layout.
        backbone_affine_mask: ``[*, N_res]`` 1 where N, CA, C are resolved.
        clamp_distance: AF2's ``fape.clamp_distance`` (Å).
        loss_unit_distance: AF2's ``fape.loss_unit_distance`` (Å).
        use_clamped_fape: ``[*]`` or scalar in [0, 1]: the weight of the clamped FAPE, the
            unclamped FAPE getting ``1 - use_clamped_fape`` (Suppl. 1.11.5; AF2's training
            data draws 1 with probability 0.9). None: clamped only.
    Returns:
        ``[L, *]`` FAPE per layer. The loss is its mean over ``L``; AF2 reports the last
        layer as ``fape``.
    """
    check_last_dims("traj", traj, (7,))
    check_last_dims("backbone_affine_tensor", backbone_affine_tensor, (7,))
    if traj.dim() != backbone_affine_tensor.dim() + 1:
        raise ValueError(f"traj has shape {tuple(traj.shape)}; expected a leading layer axis "
                         "in front of backbone_affine_tensor's "
                         f"{tuple(backbone_affine_tensor.shape)}")
    _check_clamp(clamp_distance)
    pred = Rigid.from_tensor_7(traj, normalize_quat=False)
    true = Rigid.from_tensor_7(backbone_affine_tensor, normalize_quat=False)
    mask = backbone_affine_mask.to(traj.dtype)
    error = _local_error(pred, true, pred.trans, true.trans, FAPE_EPS)
    clamped = _average_error(torch.clamp(error, 0.0, clamp_distance), mask, mask,
                             loss_unit_distance, FAPE_EPS)
    if use_clamped_fape is None:
        return clamped
    unclamped = _average_error(error, mask, mask, loss_unit_distance, FAPE_EPS)
    weight = torch.as_tensor(use_clamped_fape, dtype=traj.dtype, device=traj.device)
    return clamped * weight + unclamped * (1.0 - weight)


@torch.no_grad()
@fp32_no_autocast
def find_optimal_renaming(
    atom14_gt_positions: Tensor,
    atom14_alt_gt_positions: Tensor,
    atom14_atom_is_ambiguous: Tensor,
    atom14_gt_exists: Tensor,
    atom14_pred_positions: Tensor,
) -> Tensor:
    """Suppl. Alg. 26 lines 1-5: which residues should use the swapped atom names.

    For each residue, the distances from its ambiguous atoms to every unambiguous atom of
    the protein are compared with the predicted distances, under both namings; the naming
    with the smaller summed absolute difference wins. Not differentiable (a decision).

    Args:
        atom14_gt_positions, atom14_alt_gt_positions: ``[*, N_res, 14, 3]`` true positions
            and the same with each symmetric pair swapped.
        atom14_atom_is_ambiguous: ``[*, N_res, 14]`` 1 for atoms with a swap partner.
        atom14_gt_exists: ``[*, N_res, 14]`` 1 for resolved atoms.
        atom14_pred_positions: ``[*, N_res, 14, 3]``.
    Returns:
        ``[*, N_res]`` 1.0 where the alternative naming is closer to the prediction.
    """
    check_same_shape(("atom14_gt_positions", "atom14_alt_gt_positions", "atom14_pred_positions"),
                     (atom14_gt_positions, atom14_alt_gt_positions, atom14_pred_positions))
    check_last_dims("atom14_gt_positions", atom14_gt_positions, (14, 3))
    check_same_shape(("atom14_atom_is_ambiguous", "atom14_gt_exists"),
                     (atom14_atom_is_ambiguous, atom14_gt_exists))
    sl = _AMBIGUOUS_SLICE
    lead = atom14_pred_positions.shape[:-2]

    def dists(rows: Tensor, cols: Tensor) -> Tensor:
        # [*, N, a, 3] x [*, N, 14, 3] -> [*, N(i), N(j), a, 14]
        r = rows.reshape(lead[:-1] + (-1, 3))
        c = cols.reshape(lead[:-1] + (-1, 3))
        diff = r[..., :, None, :] - c[..., None, :, :]
        d = torch.sqrt(1e-10 + (diff * diff).sum(dim=-1))
        return d.reshape(lead + (rows.shape[-2],) + lead[-1:] + (14,)).transpose(-3, -2)

    pred = atom14_pred_positions
    pred_d = dists(pred[..., sl, :], pred)
    gt_d = dists(atom14_gt_positions[..., sl, :], atom14_gt_positions)
    alt_d = dists(atom14_alt_gt_positions[..., sl, :], atom14_alt_gt_positions)
    err = torch.sqrt(1e-10 + (pred_d - gt_d) ** 2)
    alt_err = torch.sqrt(1e-10 + (pred_d - alt_d) ** 2)

    exists = atom14_gt_exists.to(pred.dtype)
    ambiguous = atom14_atom_is_ambiguous.to(pred.dtype)
    rows = (exists * ambiguous)[..., sl]  # [*, N, a]
    cols = exists * (1.0 - ambiguous)  # [*, N, 14]
    mask = rows[..., :, None, :, None] * cols[..., None, :, None, :]  # [*, N, N, a, 14]
    per_res = (mask * err).sum(dim=(-3, -2, -1))
    alt_per_res = (mask * alt_err).sum(dim=(-3, -2, -1))
    return (alt_per_res < per_res).to(pred.dtype)


@fp32_no_autocast
def compute_renamed_ground_truth(
    atom14_gt_positions: Tensor,
    atom14_alt_gt_positions: Tensor,
    atom14_atom_is_ambiguous: Tensor,
    atom14_gt_exists: Tensor,
    atom14_alt_gt_exists: Tensor,
    atom14_pred_positions: Tensor,
) -> dict[str, Tensor]:
    """Suppl. Alg. 26: the ground truth under the naming closer to the prediction.

    Args: as :func:`find_optimal_renaming`, plus ``atom14_alt_gt_exists [*, N_res, 14]``.
    Returns:
        ``alt_naming_is_better [*, N_res]``, ``renamed_atom14_gt_positions
        [*, N_res, 14, 3]`` and ``renamed_atom14_gt_exists [*, N_res, 14]``.
    """
    alt = find_optimal_renaming(atom14_gt_positions, atom14_alt_gt_positions,
                                atom14_atom_is_ambiguous, atom14_gt_exists,
                                atom14_pred_positions)
    positions = ((1.0 - alt[..., None, None]) * atom14_gt_positions
                 + alt[..., None, None] * atom14_alt_gt_positions)
    exists = ((1.0 - alt[..., None]) * atom14_gt_exists
              + alt[..., None] * atom14_alt_gt_exists)
    return {
        "alt_naming_is_better": alt,
        "renamed_atom14_gt_positions": positions,
        "renamed_atom14_gt_exists": exists,
    }


@fp32_no_autocast
def sidechain_loss(
    pred_frames: Rigid,
    pred_positions: Tensor,
    rigidgroups_gt_frames: Tensor,
    rigidgroups_alt_gt_frames: Tensor,
    rigidgroups_gt_exists: Tensor,
    renamed_atom14_gt_positions: Tensor,
    renamed_atom14_gt_exists: Tensor,
    alt_naming_is_better: Tensor,
    clamp_distance: float = 10.0,
    length_scale: float = 10.0,
) -> Tensor:
    """Suppl. Alg. 20 line 19 with Alg. 26 line 7: all-atom FAPE of one layer.

    All atom14 atoms are scored under all 8 rigid-group frames; the true frames of
    residues whose atom names were swapped are the alternative (pi-rotated) frames.

    Args:
        pred_frames: ``Rigid [*, N_res, 8]`` predicted rigid-group frames (Å).
        pred_positions: ``[*, N_res, 14, 3]`` predicted atom14 positions.
        rigidgroups_gt_frames, rigidgroups_alt_gt_frames: ``[*, N_res, 8, 12]`` true frames
            in AF2's flat12 layout, and those of the swapped naming.
        rigidgroups_gt_exists: ``[*, N_res, 8]``.
        renamed_atom14_gt_positions: ``[*, N_res, 14, 3]``, renamed_atom14_gt_exists
            ``[*, N_res, 14]`` and alt_naming_is_better ``[*, N_res]`` from
            :func:`compute_renamed_ground_truth`.
        clamp_distance: AF2's ``sidechain.atom_clamp_distance``; length_scale its
            ``sidechain.length_scale``.
    Returns:
        ``[*]`` side-chain FAPE.
    """
    check_last_dims("rigidgroups_gt_frames", rigidgroups_gt_frames, (8, 12))
    check_last_dims("pred_positions", pred_positions, (14, 3))
    if tuple(pred_frames.shape[-1:]) != (8,):
        raise ValueError(f"pred_frames has batch shape {list(pred_frames.shape)}, expected "
                         "[*, N_res, 8]")
    alt = alt_naming_is_better[..., None, None]
    gt_flat12 = (1.0 - alt) * rigidgroups_gt_frames + alt * rigidgroups_alt_gt_frames
    lead = rigidgroups_gt_frames.shape[:-3]
    num_frames = rigidgroups_gt_frames.shape[-3] * 8
    num_atoms = pred_positions.shape[-3] * 14
    true_frames = rigid_from_flat12(gt_flat12.reshape(lead + (num_frames, 12)))
    flat_pred_frames = pred_frames.reshape(tuple(pred_frames.shape[:-2]) + (num_frames,))
    return frame_aligned_point_error(
        pred_frames=flat_pred_frames,
        target_frames=true_frames,
        frames_mask=rigidgroups_gt_exists.reshape(lead + (num_frames,)),
        pred_positions=pred_positions.reshape(pred_positions.shape[:-3] + (num_atoms, 3)),
        target_positions=renamed_atom14_gt_positions.reshape(lead + (num_atoms, 3)),
        positions_mask=renamed_atom14_gt_exists.reshape(lead + (num_atoms,)),
        length_scale=length_scale,
        l1_clamp_distance=clamp_distance,
    )
