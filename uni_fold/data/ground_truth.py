"""Ground-truth features for the losses, from a structure's atom37 coordinates.

What AF2's losses read (Jumper et al. 2021, Suppl. Section 1.9): atom14
coordinates with the alternative naming of symmetric side chains (Suppl. Table 3), the 8
rigid-group frames (Suppl. Table 2), the backbone frame as a quaternion affine, chi angles
and the pseudo-beta atom. Everything is computed by :mod:`uni_fold.geometry.all_atom`
(one geometry implementation for model, losses and data).
"""
from __future__ import annotations

import logging

import torch

from data_pipeline import residue_constants as rc
from uni_fold.data.transforms import pseudo_beta_fn
from uni_fold.geometry import all_atom, rot_to_quat

logger = logging.getLogger(__name__)

__all__ = ["make_atom14_positions", "make_ground_truth_features"]

_RENAMING = torch.from_numpy(rc.restype_atom14_renaming_matrices).float()
_IS_AMBIGUOUS = torch.from_numpy(rc.restype_atom14_is_ambiguous).float()


def make_atom14_positions(
    aatype: torch.Tensor, all_atom_positions: torch.Tensor, all_atom_mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """atom14 ground truth and its name-swapped alternative.

    Args:
        aatype: ``[N_res]`` ids 0..20.
        all_atom_positions: ``[N_res, 37, 3]``; all_atom_mask: ``[N_res, 37]``.
    Returns:
        ``atom14_gt_positions [N_res, 14, 3]`` (zero where unresolved),
        ``atom14_gt_exists [N_res, 14]``, ``atom14_alt_gt_positions``,
        ``atom14_alt_gt_exists`` (the same with each symmetric atom pair of ASP, GLU, PHE,
        TYR swapped) and ``atom14_atom_is_ambiguous [N_res, 14]``.
    """
    exists = all_atom.atom37_to_atom14(all_atom_mask.float(), aatype)
    positions = all_atom.atom37_to_atom14(all_atom_positions.float(), aatype) * exists[..., None]
    index = aatype.clamp(max=rc.restype_num)
    renaming = _RENAMING[index]  # [N, 14, 14]; row i has a 1 at i's partner
    return {
        "atom14_gt_positions": positions,
        "atom14_gt_exists": exists,
        "atom14_alt_gt_positions": torch.einsum("nij,nic->njc", renaming, positions),
        "atom14_alt_gt_exists": torch.einsum("nij,ni->nj", renaming, exists),
        "atom14_atom_is_ambiguous": _IS_AMBIGUOUS[index],
    }


def make_ground_truth_features(
    aatype: torch.Tensor, all_atom_positions: torch.Tensor, all_atom_mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Every ground-truth feature of :mod:`uni_fold.data.schema` (group ``ground_truth``)
    except the raw ``all_atom_*`` and ``resolution``.

    Args:
        aatype: ``[N_res]`` ids 0..20 in our order.
        all_atom_positions: ``[N_res, 37, 3]`` (Å); all_atom_mask: ``[N_res, 37]``.
    Returns:
        ``pseudo_beta``, ``pseudo_beta_mask``, the atom14 features of
        :func:`make_atom14_positions`, ``rigidgroups_*`` (frames as AF2's flat12
        ``[N_res, 8, 12]``), ``backbone_affine_tensor [N_res, 7]`` (quaternion w, x, y, z
        then translation), ``backbone_affine_mask``, ``chi_angles [N_res, 4]`` (radians)
        and ``chi_mask``.
    """
    pos = all_atom_positions.float()
    mask = all_atom_mask.float()
    out: dict[str, torch.Tensor] = {}
    out["pseudo_beta"], out["pseudo_beta_mask"] = pseudo_beta_fn(aatype, pos, mask)
    out.update(make_atom14_positions(aatype, pos, mask))

    frames = all_atom.atom37_to_frames(aatype, pos, mask)
    gt_frames = frames["rigidgroups_gt_frames"]
    out["rigidgroups_gt_frames"] = all_atom.rigid_to_flat12(gt_frames)
    out["rigidgroups_gt_exists"] = frames["rigidgroups_gt_exists"]
    out["rigidgroups_group_exists"] = frames["rigidgroups_group_exists"]
    out["rigidgroups_group_is_ambiguous"] = frames["rigidgroups_group_is_ambiguous"]
    out["rigidgroups_alt_gt_frames"] = all_atom.rigid_to_flat12(frames["rigidgroups_alt_gt_frames"])

    backbone_rot = gt_frames.rot[..., 0, :, :]
    out["backbone_affine_tensor"] = torch.cat(
        [rot_to_quat(backbone_rot), gt_frames.trans[..., 0, :]], dim=-1
    )
    out["backbone_affine_mask"] = frames["rigidgroups_gt_exists"][..., 0]

    torsions = all_atom.atom37_to_torsion_angles(aatype, pos, mask)
    chi_sin_cos = torsions["torsion_angles_sin_cos"][..., 3:, :]
    out["chi_angles"] = torch.atan2(chi_sin_cos[..., 0], chi_sin_cos[..., 1])
    out["chi_mask"] = torsions["torsion_angles_mask"][..., 3:]
    return out
