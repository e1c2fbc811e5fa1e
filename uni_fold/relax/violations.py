"""Structural violation check on a `Protein`, in numpy (no torch, no OpenMM).

The relaxation loop asks, after every restrained minimisation, whether the structure still
has stereochemical violations, with the same criteria as the AF2 violation loss
(Jumper et al. 2021, Suppl. 1.9.11, eq. 44-46) and the thresholds AF2's relax uses
(`violation_tolerance_factor` 12 standard deviations, `clash_overlap_tolerance` 1.5 A):

* peptide bonds between consecutive residues: C-N length, CA-C-N and C-N-CA angles;
* clashes between heavy atoms of different residues: closer than the sum of their van der
  Waals radii minus the overlap tolerance (the peptide C-N pair and Cys SG-SG excepted);
* within a residue: bonded and 1-3 pairs outside `length +- 12 stddev`, other pairs
  closer than the summed radii minus the tolerance.

Two details follow AF2 exactly, so the decision to repeat matches the reference: the
CA-C-N angle is judged with the C-N *bond length* stddev (0.014), and the disulfide
exception is keyed on atom14 slot 5 (Cys SG) for every residue type.

Differences from AF2, which only matter for inputs AF2 never gets:
* atoms missing from `atom_mask` are ignored (AF2 assumes complete residues);
* residues are paired by their order in the `Protein`, and consecutive residues are
  peptide-bonded only within one chain, when their numbers differ by one (or by zero
  with an insertion code, 52 -> 52A); AF2 looks at the numbers alone.
"""
from __future__ import annotations

import logging

import numpy as np

from data_pipeline import residue_constants as rc
from data_pipeline.protein import Protein

logger = logging.getLogger(__name__)

VIOLATION_TOLERANCE_FACTOR = 12.0
CLASH_OVERLAP_TOLERANCE = 1.5

_N, _CA, _C = 0, 1, 2  # atom14 (and atom37) slots of the backbone atoms
_CYS_SG_SLOT = rc.restype_name_to_atom14_names["CYS"].index("SG")
_PRO = rc.resname_to_idx["PRO"]
# van der Waals radius of each atom37 slot, from the element (first letter of the name).
_ATOM37_RADIUS = np.array([rc.van_der_waals_radius[name[0]] for name in rc.atom_types])
_CLASH_BLOCK = 2048  # atoms per block of the all-pairs distance computation


def peptide_bonded_to_next(prot: Protein) -> np.ndarray:
    """[N_res - 1] bool: residue i and i+1 are consecutive in one chain.

    Consecutive means the same chain and residue numbers that differ by 1, or by 0 when
    the second carries an insertion code (52, 52A). Any other step is a gap.
    """
    step = np.diff(prot.residue_index)
    same_chain = prot.chain_index[1:] == prot.chain_index[:-1]
    return same_chain & ((step == 1) | (step == 0))


def atom14_from_protein(prot: Protein) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense atom14 view of `prot`.

    Returns:
        positions [N_res, 14, 3] float64 (zeros where absent), exists [N_res, 14] bool
        (the residue type has the atom and `atom_mask` holds it), atom14_to_atom37
        [N_res, 14] int.
    """
    to37 = rc.restype_atom14_to_atom37[prot.aatype]  # [N_res, 14]
    exists = rc.restype_atom14_mask[prot.aatype] > 0.5
    exists &= np.take_along_axis(prot.atom_mask, to37, axis=1) > 0.5
    positions = np.take_along_axis(prot.atom_positions.astype(np.float64), to37[..., None], 1)
    positions = np.where(exists[..., None], positions, 0.0)
    return positions, exists, to37


def _soft_abs(x: np.ndarray) -> np.ndarray:
    """|x| with AF2's 1e-6 under the square root (decides the same borderline cases)."""
    return np.sqrt(1e-6 + x * x)


def _peptide_bond_violations(pos: np.ndarray, exists: np.ndarray, prot: Protein,
                             tolerance_factor: float) -> np.ndarray:
    """Per-residue mask [N_res] of C(i)-N(i+1) bond / angle violations (eq. 44, 45)."""
    n = pos.shape[0]
    if n < 2:
        return np.zeros((n,), np.float32)
    ca, c = pos[:-1, _CA], pos[:-1, _C]
    next_n, next_ca = pos[1:, _N], pos[1:, _CA]
    bonded = peptide_bonded_to_next(prot)

    def unit(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        length = np.sqrt(1e-6 + np.sum(v * v, axis=-1))
        return v / length[:, None], length

    c_to_n, c_n_length = unit(next_n - c)
    c_to_ca, _ = unit(ca - c)
    n_to_ca, _ = unit(next_ca - next_n)

    next_is_pro = prot.aatype[1:] == _PRO
    ideal_c_n = np.where(next_is_pro, rc.between_res_bond_length_c_n[1],
                         rc.between_res_bond_length_c_n[0])
    stddev_c_n = np.where(next_is_pro, rc.between_res_bond_length_stddev_c_n[1],
                          rc.between_res_bond_length_stddev_c_n[0])
    bad_c_n = _soft_abs(c_n_length - ideal_c_n) > tolerance_factor * stddev_c_n
    bad_c_n &= exists[:-1, _C] & exists[1:, _N]

    cos_ca_c_n = np.sum(c_to_ca * c_to_n, axis=-1)
    # AF2 judges this angle with the C-N bond-length stddev; kept for identical decisions.
    bad_ca_c_n = (_soft_abs(cos_ca_c_n - rc.between_res_cos_angles_ca_c_n[0])
                  > tolerance_factor * rc.between_res_bond_length_stddev_c_n[0])
    bad_ca_c_n &= exists[:-1, _CA] & exists[:-1, _C] & exists[1:, _N]

    cos_c_n_ca = np.sum(-c_to_n * n_to_ca, axis=-1)
    bad_c_n_ca = (_soft_abs(cos_c_n_ca - rc.between_res_cos_angles_c_n_ca[0])
                  > tolerance_factor * rc.between_res_cos_angles_c_n_ca[1])
    bad_c_n_ca &= exists[:-1, _C] & exists[1:, _N] & exists[1:, _CA]

    bad_link = (bad_c_n | bad_ca_c_n | bad_c_n_ca) & bonded  # [N_res - 1]
    per_residue = np.zeros((n,), bool)
    per_residue[:-1] |= bad_link
    per_residue[1:] |= bad_link
    return per_residue.astype(np.float32)


def _between_residue_clashes(pos: np.ndarray, exists: np.ndarray, to37: np.ndarray,
                             prot: Protein, overlap_tolerance: float) -> np.ndarray:
    """Per-atom mask [N_res, 14] of heavy atoms clashing with another residue (eq. 46)."""
    n = pos.shape[0]
    res_of, slot_of = np.nonzero(exists)  # flat list of present atoms, residue order
    xyz = pos[res_of, slot_of]
    radius = _ATOM37_RADIUS[to37[res_of, slot_of]]
    bonded_next = np.zeros((n,), bool)  # residue r is peptide-bonded to r + 1
    if n > 1:
        bonded_next[:-1] = peptide_bonded_to_next(prot)
    clash = np.zeros((len(res_of),), bool)
    for start in range(0, len(res_of), _CLASH_BLOCK):
        rows = slice(start, start + _CLASH_BLOCK)
        ri, si = res_of[rows, None], slot_of[rows, None]
        rj, sj = res_of[None, :], slot_of[None, :]
        diff = xyz[rows, None, :] - xyz[None, :, :]
        dist = np.sqrt(1e-10 + np.sum(diff * diff, axis=-1))
        considered = ri < rj  # each residue pair once, never within a residue
        considered &= ~((rj == ri + 1) & bonded_next[ri] & (si == _C) & (sj == _N))
        considered &= ~((si == _CYS_SG_SLOT) & (sj == _CYS_SG_SLOT))
        hit = considered & (dist < radius[rows, None] + radius[None, :] - overlap_tolerance)
        clash[rows] |= hit.any(axis=1)
        clash |= hit.any(axis=0)
    per_atom = np.zeros((n, 14), np.float32)
    per_atom[res_of, slot_of] = clash
    return per_atom


def _within_residue_violations(pos: np.ndarray, exists: np.ndarray, prot: Protein,
                               bounds: dict[str, np.ndarray]) -> np.ndarray:
    """Per-atom mask [N_res, 14] of intra-residue distance violations."""
    lower = bounds["lower_bound"][prot.aatype]  # [N_res, 14, 14]
    upper = bounds["upper_bound"][prot.aatype]
    pair = exists[:, :, None] & exists[:, None, :] & ~np.eye(14, dtype=bool)[None]
    diff = pos[:, :, None, :] - pos[:, None, :, :]
    dist = np.sqrt(1e-10 + np.sum(diff * diff, axis=-1))
    bad = pair & ((dist < lower) | (dist > upper))
    return (bad.any(axis=1) | bad.any(axis=2)).astype(np.float32)


def find_structural_violations(
    prot: Protein,
    *,
    violation_tolerance_factor: float = VIOLATION_TOLERANCE_FACTOR,
    clash_overlap_tolerance: float = CLASH_OVERLAP_TOLERANCE,
) -> dict[str, np.ndarray]:
    """Which residues of `prot` violate stereochemistry (AF2's relax criteria).

    Returns:
        dict with
        `connections_per_residue_violation_mask` [N_res] (peptide bond geometry),
        `clashes_per_atom_clash_mask` [N_res, 14] (between residues),
        `within_residues_per_atom_violations` [N_res, 14],
        `total_per_residue_violations_mask` [N_res] float32, 1.0 for residues with any
        violation.
    """
    if prot.num_res == 0:
        raise ValueError("find_structural_violations: the Protein has no residues")
    pos, exists, to37 = atom14_from_protein(prot)
    connections = _peptide_bond_violations(pos, exists, prot, violation_tolerance_factor)
    clashes = _between_residue_clashes(pos, exists, to37, prot, clash_overlap_tolerance)
    bounds = rc.make_atom14_dists_bounds(overlap_tolerance=clash_overlap_tolerance,
                                         bond_length_tolerance_factor=violation_tolerance_factor)
    within = _within_residue_violations(pos, exists, prot, bounds)
    total = np.maximum.reduce([connections, clashes.max(axis=-1), within.max(axis=-1)])
    return {
        "connections_per_residue_violation_mask": connections,
        "clashes_per_atom_clash_mask": clashes,
        "within_residues_per_atom_violations": within,
        "total_per_residue_violations_mask": total.astype(np.float32),
    }


def violation_metrics(violations: dict[str, np.ndarray]) -> dict[str, object]:
    """Summary of `find_structural_violations` output, with AF2's metric names.

    Returns: `violations_between_residue_bond`, `violations_between_residue_clash`,
    `violations_within_residue`, `violations_per_residue` (fractions of residues),
    `residue_violations` (int indices of violating residues) and `num_residue_violations`.
    """
    total = violations["total_per_residue_violations_mask"]
    bad = np.flatnonzero(total > 0.5)
    return {
        "violations_between_residue_bond": float(
            violations["connections_per_residue_violation_mask"].mean()),
        "violations_between_residue_clash": float(
            violations["clashes_per_atom_clash_mask"].max(axis=-1).mean()),
        "violations_within_residue": float(
            violations["within_residues_per_atom_violations"].max(axis=-1).mean()),
        "violations_per_residue": float(total.mean()),
        "residue_violations": bad,
        "num_residue_violations": int(len(bad)),
    }
