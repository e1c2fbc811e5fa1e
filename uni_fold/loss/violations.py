"""Structural violations: peptide-bond geometry, steric clashes and intra-residue bounds.

Jumper et al. 2021, Suppl. Section 1.9.11 (eqs. 44-47). Three flat-bottom terms on the
predicted atom14 positions:

* :func:`between_residue_bond_loss` - the C-N peptide bond length and the CA-C-N and
  C-N-CA angles between consecutive residues (eqs. 44, 45), with tolerances of
  ``tolerance_factor`` standard deviations of PDB statistics;
* :func:`between_residue_clash_loss` - atoms of different residues closer than their
  summed van der Waals radii minus a tolerance (eq. 46);
* :func:`within_residue_violations` - atom pairs of one residue outside the bounds of
  ``residue_constants.make_atom14_dists_bounds`` (bonds, angles, clashes).

:func:`find_structural_violations` runs all three, :func:`structural_violation_loss`
combines them into the training term and :func:`compute_violation_metrics` gives the
fractions of violating residues. Leading batch dims ``*`` are allowed; ``N`` is the
residue axis. Everything runs in fp32 with autocast off.
"""
from __future__ import annotations

import functools
import logging

import numpy as np
import torch
import torch.nn.functional as F

from data_pipeline import residue_constants as rc
from uni_fold.geometry.precision import fp32_no_autocast
from uni_fold.loss.common import check_last_dims, masked_mean

logger = logging.getLogger(__name__)

Tensor = torch.Tensor

__all__ = [
    "between_residue_bond_loss",
    "between_residue_clash_loss",
    "within_residue_violations",
    "extreme_ca_ca_distance_violations",
    "find_structural_violations",
    "structural_violation_loss",
    "compute_violation_metrics",
    "atom14_atom_radius",
]

# atom14 slots of the backbone atoms.
_N, _CA, _C = 0, 1, 2
_PRO = rc.resname_to_idx["PRO"]
_CYS_SG = rc.restype_name_to_atom14_names["CYS"].index("SG")


def _atom14_radius_table() -> np.ndarray:
    """van der Waals radius of each atom14 slot by residue type, ``[21, 14]`` (0 if empty).

    The element is the first letter of the atom name (all heavy atoms here are C, N, O, S).
    """
    table = np.zeros((rc.restype_num + 1, 14), dtype=np.float32)
    for aatype, name in enumerate(rc.resnames[:-1]):
        for slot, atom in enumerate(rc.restype_name_to_atom14_names[name]):
            if atom:
                table[aatype, slot] = rc.van_der_waals_radius[atom[0]]
    return table


_RADIUS = torch.from_numpy(_atom14_radius_table())


@functools.lru_cache(maxsize=8)
def _dists_bounds(overlap_tolerance: float, bond_length_tolerance_factor: float
                  ) -> tuple[Tensor, Tensor]:
    bounds = rc.make_atom14_dists_bounds(overlap_tolerance=overlap_tolerance,
                                         bond_length_tolerance_factor=bond_length_tolerance_factor)
    return torch.from_numpy(bounds["lower_bound"]), torch.from_numpy(bounds["upper_bound"])


def atom14_atom_radius(aatype: Tensor, atom14_atom_exists: Tensor) -> Tensor:
    """van der Waals radius of every atom14 atom, ``[*, N, 14]`` (0 where it does not exist)."""
    table = _RADIUS.to(atom14_atom_exists.device, atom14_atom_exists.dtype)
    return atom14_atom_exists * table[aatype.long().clamp(max=rc.restype_num)]


def _pad_residues(x: Tensor, before: int, after: int) -> Tensor:
    """Zero-pad ``x [*, N-1]`` along its last (residue) axis."""
    return F.pad(x, (before, after))


def _norm(v: Tensor, eps: float) -> Tensor:
    return torch.sqrt(eps + (v * v).sum(dim=-1))


def _gap_free(residue_index: Tensor, dtype: torch.dtype) -> Tensor:
    """``[*, N-1]`` 1 where residue i+1 directly follows residue i."""
    r = residue_index.to(dtype)
    return ((r[..., 1:] - r[..., :-1]) == 1.0).to(dtype)


@fp32_no_autocast
def between_residue_bond_loss(
    pred_atom_positions: Tensor,
    pred_atom_mask: Tensor,
    residue_index: Tensor,
    aatype: Tensor,
    tolerance_factor_soft: float = 12.0,
    tolerance_factor_hard: float = 12.0,
) -> dict[str, Tensor]:
    """Suppl. eqs. 44-45: flat-bottom loss on the peptide bond between residues i and i+1.

    Args:
        pred_atom_positions: ``[*, N, 14, 3]`` (or atom37: N, CA, C are slots 0-2 in both).
        pred_atom_mask: ``[*, N, 14]`` (or ``[*, N, 37]``).
        residue_index: ``[*, N]`` increasing residue numbers; a jump > 1 is a chain break.
        aatype: ``[*, N]`` residue types (the C-N bond to proline is longer).
        tolerance_factor_soft: loss-free band in standard deviations.
        tolerance_factor_hard: violation threshold in standard deviations.
    Returns:
        ``c_n_loss_mean``, ``ca_c_n_loss_mean``, ``c_n_ca_loss_mean`` (``[*]``),
        ``per_residue_loss_sum [*, N]`` (each bond's loss split between its two residues)
        and ``per_residue_violation_mask [*, N]``.
    """
    check_last_dims("pred_atom_positions", pred_atom_positions, (3,))
    dtype = pred_atom_positions.dtype
    mask = pred_atom_mask.to(dtype)
    this_ca = pred_atom_positions[..., :-1, _CA, :]
    this_c = pred_atom_positions[..., :-1, _C, :]
    next_n = pred_atom_positions[..., 1:, _N, :]
    next_ca = pred_atom_positions[..., 1:, _CA, :]
    this_ca_mask, this_c_mask = mask[..., :-1, _CA], mask[..., :-1, _C]
    next_n_mask, next_ca_mask = mask[..., 1:, _N], mask[..., 1:, _CA]
    no_gap = _gap_free(residue_index, dtype)

    # C-N bond length.
    c_n_length = _norm(this_c - next_n, 1e-6)
    next_is_pro = (aatype[..., 1:] == _PRO).to(dtype)
    length_c_n, length_c_n_pro = rc.between_res_bond_length_c_n
    std_c_n, std_c_n_pro = rc.between_res_bond_length_stddev_c_n
    gt_length = (1.0 - next_is_pro) * length_c_n + next_is_pro * length_c_n_pro
    gt_std = (1.0 - next_is_pro) * std_c_n + next_is_pro * std_c_n_pro
    c_n_error = torch.sqrt(1e-6 + (c_n_length - gt_length) ** 2)
    c_n_per_res = torch.relu(c_n_error - tolerance_factor_soft * gt_std)
    m = this_c_mask * next_n_mask * no_gap
    c_n_loss = (m * c_n_per_res).sum(dim=-1) / (m.sum(dim=-1) + 1e-6)
    c_n_violation = m * (c_n_error > tolerance_factor_hard * gt_std).to(dtype)

    # Angles at C (CA-C-N) and at N (C-N-CA), as cosines.
    ca_c_length = _norm(this_ca - this_c, 1e-6)
    n_ca_length = _norm(next_n - next_ca, 1e-6)
    c_to_ca = (this_ca - this_c) / ca_c_length[..., None]
    c_to_n = (next_n - this_c) / c_n_length[..., None]
    n_to_ca = (next_ca - next_n) / n_ca_length[..., None]

    cos_ca_c_n = (c_to_ca * c_to_n).sum(dim=-1)
    # AF2 uses the C-N bond length's stddev as the tolerance unit of this angle.
    std_ca_c_n = rc.between_res_bond_length_stddev_c_n[0]
    ca_c_n_error = torch.sqrt(1e-6 + (cos_ca_c_n - rc.between_res_cos_angles_ca_c_n[0]) ** 2)
    ca_c_n_per_res = torch.relu(ca_c_n_error - tolerance_factor_soft * std_ca_c_n)
    m = this_ca_mask * this_c_mask * next_n_mask * no_gap
    ca_c_n_loss = (m * ca_c_n_per_res).sum(dim=-1) / (m.sum(dim=-1) + 1e-6)
    ca_c_n_violation = m * (ca_c_n_error > tolerance_factor_hard * std_ca_c_n).to(dtype)

    cos_c_n_ca = (-c_to_n * n_to_ca).sum(dim=-1)
    mean_c_n_ca, std_c_n_ca = rc.between_res_cos_angles_c_n_ca
    c_n_ca_error = torch.sqrt(1e-6 + (cos_c_n_ca - mean_c_n_ca) ** 2)
    c_n_ca_per_res = torch.relu(c_n_ca_error - tolerance_factor_soft * std_c_n_ca)
    m = this_c_mask * next_n_mask * next_ca_mask * no_gap
    c_n_ca_loss = (m * c_n_ca_per_res).sum(dim=-1) / (m.sum(dim=-1) + 1e-6)
    c_n_ca_violation = m * (c_n_ca_error > tolerance_factor_hard * std_c_n_ca).to(dtype)

    per_bond = c_n_per_res + ca_c_n_per_res + c_n_ca_per_res
    per_residue_loss_sum = 0.5 * (_pad_residues(per_bond, 0, 1) + _pad_residues(per_bond, 1, 0))
    violation = torch.stack([c_n_violation, ca_c_n_violation, c_n_ca_violation]).amax(dim=0)
    per_residue_violation = torch.maximum(_pad_residues(violation, 0, 1),
                                          _pad_residues(violation, 1, 0))
    return {
        "c_n_loss_mean": c_n_loss,
        "ca_c_n_loss_mean": ca_c_n_loss,
        "c_n_ca_loss_mean": c_n_ca_loss,
        "per_residue_loss_sum": per_residue_loss_sum,
        "per_residue_violation_mask": per_residue_violation,
    }


@fp32_no_autocast
def between_residue_clash_loss(
    atom14_pred_positions: Tensor,
    atom14_atom_exists: Tensor,
    atom14_atom_radius: Tensor,
    residue_index: Tensor,
    overlap_tolerance_soft: float = 1.5,
    overlap_tolerance_hard: float = 1.5,
) -> dict[str, Tensor]:
    """Suppl. eq. 46, pairs of different residues: penalise atoms closer than the sum of
    their van der Waals radii minus the tolerance. The peptide C-N bond and disulfide
    SG-SG bonds are not clashes.

    Args:
        atom14_pred_positions: ``[*, N, 14, 3]``.
        atom14_atom_exists: ``[*, N, 14]``.
        atom14_atom_radius: ``[*, N, 14]`` (:func:`atom14_atom_radius`).
        residue_index: ``[*, N]``.
        overlap_tolerance_soft / _hard: Å of allowed overlap for the loss / the violation.
    Returns:
        ``mean_loss [*]``, ``per_atom_loss_sum [*, N, 14]``, ``per_atom_clash_mask
        [*, N, 14]``.
    """
    check_last_dims("atom14_pred_positions", atom14_pred_positions, (14, 3))
    pos = atom14_pred_positions
    dtype = pos.dtype
    exists = atom14_atom_exists.to(dtype)
    # [*, N, N, 14, 14]
    diff = pos[..., :, None, :, None, :] - pos[..., None, :, None, :, :]
    dists = torch.sqrt(1e-10 + (diff * diff).sum(dim=-1))
    mask = exists[..., :, None, :, None] * exists[..., None, :, None, :]
    ri = residue_index.to(dtype)
    # Each residue pair once (i before j); same-residue pairs are within_residue's.
    mask = mask * (ri[..., :, None, None, None] < ri[..., None, :, None, None]).to(dtype)

    slot = torch.arange(14, device=pos.device)
    neighbours = (ri[..., :, None] + 1 == ri[..., None, :]).to(dtype)  # [*, N, N]
    c_n_pair = ((slot[:, None] == _C) & (slot[None, :] == _N)).to(dtype)  # [14, 14]
    mask = mask * (1.0 - neighbours[..., None, None] * c_n_pair)
    sg_pair = ((slot[:, None] == _CYS_SG) & (slot[None, :] == _CYS_SG)).to(dtype)
    mask = mask * (1.0 - sg_pair)

    radius = atom14_atom_radius.to(dtype)
    lower = mask * (radius[..., :, None, :, None] + radius[..., None, :, None, :])
    error = mask * torch.relu(lower - overlap_tolerance_soft - dists)
    mean_loss = error.sum(dim=(-4, -3, -2, -1)) / (1e-6 + mask.sum(dim=(-4, -3, -2, -1)))
    per_atom_loss_sum = error.sum(dim=(-4, -2)) + error.sum(dim=(-3, -1))
    clash = mask * (dists < lower - overlap_tolerance_hard).to(dtype)
    per_atom_clash = torch.maximum(clash.amax(dim=(-4, -2)), clash.amax(dim=(-3, -1)))
    return {
        "mean_loss": mean_loss,
        "per_atom_loss_sum": per_atom_loss_sum,
        "per_atom_clash_mask": per_atom_clash,
    }


@fp32_no_autocast
def within_residue_violations(
    atom14_pred_positions: Tensor,
    atom14_atom_exists: Tensor,
    atom14_dists_lower_bound: Tensor,
    atom14_dists_upper_bound: Tensor,
    tighten_bounds_for_loss: float = 0.0,
) -> dict[str, Tensor]:
    """Suppl. eq. 46, pairs within one residue: distances outside ``[lower, upper]``.

    Args:
        atom14_pred_positions: ``[*, N, 14, 3]``.
        atom14_atom_exists: ``[*, N, 14]``.
        atom14_dists_lower_bound, atom14_dists_upper_bound: ``[*, N, 14, 14]`` (rows of
            ``residue_constants.make_atom14_dists_bounds`` by residue type).
        tighten_bounds_for_loss: Å by which both bounds are tightened for the loss only.
    Returns:
        ``per_atom_loss_sum [*, N, 14]`` and ``per_atom_violations [*, N, 14]``.
    """
    check_last_dims("atom14_pred_positions", atom14_pred_positions, (14, 3))
    pos = atom14_pred_positions
    dtype = pos.dtype
    exists = atom14_atom_exists.to(dtype)
    off_diagonal = 1.0 - torch.eye(14, dtype=dtype, device=pos.device)
    mask = off_diagonal * exists[..., :, None] * exists[..., None, :]
    diff = pos[..., :, None, :] - pos[..., None, :, :]
    dists = torch.sqrt(1e-10 + (diff * diff).sum(dim=-1))
    lower, upper = atom14_dists_lower_bound.to(dtype), atom14_dists_upper_bound.to(dtype)
    too_close = torch.relu(lower + tighten_bounds_for_loss - dists)
    too_far = torch.relu(dists - (upper - tighten_bounds_for_loss))
    loss = mask * (too_close + too_far)
    per_atom_loss_sum = loss.sum(dim=-2) + loss.sum(dim=-1)
    violations = mask * ((dists < lower) | (dists > upper)).to(dtype)
    per_atom_violations = torch.maximum(violations.amax(dim=-2), violations.amax(dim=-1))
    return {"per_atom_loss_sum": per_atom_loss_sum, "per_atom_violations": per_atom_violations}


@fp32_no_autocast
def extreme_ca_ca_distance_violations(
    pred_atom_positions: Tensor,
    pred_atom_mask: Tensor,
    residue_index: Tensor,
    max_angstrom_tolerance: float = 1.5,
) -> Tensor:
    """Fraction of consecutive CA-CA distances more than ``max_angstrom_tolerance`` Å
    beyond the ideal 3.80 Å: ``[*]``. Positions ``[*, N, 14 or 37, 3]``."""
    dtype = pred_atom_positions.dtype
    mask = pred_atom_mask.to(dtype)
    this_ca = pred_atom_positions[..., :-1, _CA, :]
    next_ca = pred_atom_positions[..., 1:, _CA, :]
    dist = _norm(this_ca - next_ca, 1e-6)
    violation = ((dist - rc.ca_ca) > max_angstrom_tolerance).to(dtype)
    m = mask[..., :-1, _CA] * mask[..., 1:, _CA] * _gap_free(residue_index, dtype)
    return masked_mean(m, violation, dim=[-1])


@fp32_no_autocast
def find_structural_violations(
    aatype: Tensor,
    residue_index: Tensor,
    atom14_atom_exists: Tensor,
    atom14_pred_positions: Tensor,
    violation_tolerance_factor: float = 12.0,
    clash_overlap_tolerance: float = 1.5,
) -> dict[str, Tensor]:
    """All violation terms of a predicted structure (AF2's ``find_structural_violations``).

    Args:
        aatype: ``[*, N]``; residue_index: ``[*, N]``; atom14_atom_exists: ``[*, N, 14]``
            (0 for padding residues); atom14_pred_positions: ``[*, N, 14, 3]``.
        violation_tolerance_factor: AF2's ``violation_tolerance_factor`` (12 stddevs).
        clash_overlap_tolerance: AF2's ``clash_overlap_tolerance`` (1.5 Å).
    Returns:
        a flat dict: ``bonds_c_n_loss_mean``, ``angles_ca_c_n_loss_mean``,
        ``angles_c_n_ca_loss_mean``, ``clashes_mean_loss`` (``[*]``);
        ``connections_per_residue_loss_sum``, ``connections_per_residue_violation_mask``,
        ``total_per_residue_violations_mask`` (``[*, N]``); ``clashes_per_atom_loss_sum``,
        ``clashes_per_atom_clash_mask``, ``within_residues_per_atom_loss_sum``,
        ``within_residues_per_atom_violations`` (``[*, N, 14]``).
    """
    exists = atom14_atom_exists.to(atom14_pred_positions.dtype)
    index = aatype.long().clamp(max=rc.restype_num)
    bonds = between_residue_bond_loss(
        atom14_pred_positions, exists, residue_index, aatype,
        tolerance_factor_soft=violation_tolerance_factor,
        tolerance_factor_hard=violation_tolerance_factor,
    )
    clashes = between_residue_clash_loss(
        atom14_pred_positions, exists, atom14_atom_radius(index, exists), residue_index,
        overlap_tolerance_soft=clash_overlap_tolerance,
        overlap_tolerance_hard=clash_overlap_tolerance,
    )
    lower, upper = _dists_bounds(float(clash_overlap_tolerance), float(violation_tolerance_factor))
    device = atom14_pred_positions.device
    within = within_residue_violations(
        atom14_pred_positions, exists, lower.to(device)[index], upper.to(device)[index],
        tighten_bounds_for_loss=0.0,
    )
    per_residue = torch.stack([
        bonds["per_residue_violation_mask"],
        clashes["per_atom_clash_mask"].amax(dim=-1),
        within["per_atom_violations"].amax(dim=-1),
    ]).amax(dim=0)
    return {
        "bonds_c_n_loss_mean": bonds["c_n_loss_mean"],
        "angles_ca_c_n_loss_mean": bonds["ca_c_n_loss_mean"],
        "angles_c_n_ca_loss_mean": bonds["c_n_ca_loss_mean"],
        "connections_per_residue_loss_sum": bonds["per_residue_loss_sum"],
        "connections_per_residue_violation_mask": bonds["per_residue_violation_mask"],
        "clashes_mean_loss": clashes["mean_loss"],
        "clashes_per_atom_loss_sum": clashes["per_atom_loss_sum"],
        "clashes_per_atom_clash_mask": clashes["per_atom_clash_mask"],
        "within_residues_per_atom_loss_sum": within["per_atom_loss_sum"],
        "within_residues_per_atom_violations": within["per_atom_violations"],
        "total_per_residue_violations_mask": per_residue,
    }


@fp32_no_autocast
def structural_violation_loss(violations: dict[str, Tensor], atom14_atom_exists: Tensor
                              ) -> Tensor:
    """The violation training term ``[*]``: the three peptide-bond means plus clash and
    intra-residue losses summed over atoms and divided by the number of atoms.

    Args:
        violations: output of :func:`find_structural_violations`.
        atom14_atom_exists: ``[*, N, 14]``.
    """
    num_atoms = atom14_atom_exists.to(violations["clashes_per_atom_loss_sum"].dtype).sum(
        dim=(-2, -1))
    per_atom = (violations["clashes_per_atom_loss_sum"]
                + violations["within_residues_per_atom_loss_sum"])
    return (violations["bonds_c_n_loss_mean"]
            + violations["angles_ca_c_n_loss_mean"]
            + violations["angles_c_n_ca_loss_mean"]
            + per_atom.sum(dim=(-2, -1)) / (1e-6 + num_atoms))


@fp32_no_autocast
def compute_violation_metrics(
    violations: dict[str, Tensor],
    atom14_pred_positions: Tensor,
    atom14_atom_exists: Tensor,
    residue_index: Tensor,
    seq_mask: Tensor,
) -> dict[str, Tensor]:
    """Fractions of residues with violations (AF2's ``compute_violation_metrics``), ``[*]``:
    ``violations_extreme_ca_ca_distance``, ``violations_between_residue_bond``,
    ``violations_between_residue_clash``, ``violations_within_residue`` and
    ``violations_per_residue``."""
    mask = seq_mask.to(atom14_pred_positions.dtype)
    return {
        "violations_extreme_ca_ca_distance": extreme_ca_ca_distance_violations(
            atom14_pred_positions, atom14_atom_exists, residue_index),
        "violations_between_residue_bond": masked_mean(
            mask, violations["connections_per_residue_violation_mask"], dim=[-1]),
        "violations_between_residue_clash": masked_mean(
            mask, violations["clashes_per_atom_clash_mask"].amax(dim=-1), dim=[-1]),
        "violations_within_residue": masked_mean(
            mask, violations["within_residues_per_atom_violations"].amax(dim=-1), dim=[-1]),
        "violations_per_residue": masked_mean(
            mask, violations["total_per_residue_violations_mask"], dim=[-1]),
    }
