"""All-atom geometry: atom14/atom37 layouts, torsion angles and rigid-group frames.

Jumper et al. 2021, Suppl. Section 1.8 and Suppl. Alg. 24 ("computeAllAtomCoordinates").
A residue's heavy atoms split into 8 rigid groups (Suppl. Table 2): 0 backbone, 1 pre-omega,
2 phi, 3 psi, 4-7 chi1-chi4. Every group frame is a fixed "default" frame (ideal literature
geometry, ``residue_constants.restype_rigid_group_default_frame``) rotated about its x axis
by the group's torsion angle; chi2-chi4 hang off the previous chi frame, the rest off the
backbone frame. Atoms sit at fixed literature coordinates inside their group.

Layouts: ``atom37`` has one slot per atom name (``residue_constants.atom_types``), ``atom14``
one slot per atom of the residue type (``restype_name_to_atom14_names``).

Conventions (AF2's):
* torsions are ordered ``(omega, phi, psi, chi1, chi2, chi3, chi4)`` and encoded as
  ``(sin, cos)`` in the last dimension; omega is the pre-omega (previous CA, previous C,
  N, CA), psi is measured to the carbonyl O and mirrored.
* frames are :class:`~uni_fold.geometry.rigid.Rigid` values (rotation ``[*, 3, 3]`` whose
  columns are the frame axes, translation ``[*, 3]``); ``rigid_to_flat12`` gives AF2's
  12-vector layout (row-major rotation, then translation) for comparison.
* ``aatype`` holds integers 0..20 (20 = unknown); larger values are treated as unknown,
  as AF2 does.

Everything runs in fp32 (fp64 inputs stay fp64) with autocast off, via
:func:`~uni_fold.geometry.precision.fp32_no_autocast`.
"""
from __future__ import annotations

import functools
import logging

import numpy as np
import torch

from data_pipeline import residue_constants as rc
from uni_fold.geometry.precision import fp32_no_autocast
from uni_fold.geometry.rigid import Rigid, rot_matmul

logger = logging.getLogger(__name__)

__all__ = [
    "TORSION_NAMES",
    "NUM_RIGID_GROUPS",
    "atom14_to_atom37",
    "atom37_to_atom14",
    "make_atom14_masks",
    "atom37_to_torsion_angles",
    "atom37_to_frames",
    "torsion_angles_to_frames",
    "frames_to_atom14_positions",
    "backbone_frames_from_atom37",
    "rebuild_from_torsions",
    "rebuild_atom37_mask",
    "rigid_to_flat12",
    "rigid_from_flat12",
]

TORSION_NAMES = ("omega", "phi", "psi", "chi1", "chi2", "chi3", "chi4")
NUM_RIGID_GROUPS = 8
_NUM_RESTYPES = rc.restype_num + 1  # 20 standard types + unknown
_N, _CA, _C, _O = (rc.atom_order[name] for name in ("N", "CA", "C", "O"))
# psi is measured to O, which sits opposite to the next residue's N: flip both sin and cos.
_TORSION_SIGN = (1.0, 1.0, -1.0, 1.0, 1.0, 1.0, 1.0)
# Added under the square root when (sin, cos) is normalised, as AF2 does.
_SIN_COS_EPS = 1e-8


# ---------------------------------------------------------------------------------------
# Lookup tables, indexed by residue type (row 20 = unknown). Built once from the constants.
# ---------------------------------------------------------------------------------------


def _build_chi_atom_indices() -> np.ndarray:
    """atom37 indices of the 4 atoms of each chi, ``[21, 4, 4]``; 0 where chi is undefined."""
    table = np.zeros((_NUM_RESTYPES, 4, 4), dtype=np.int64)
    for restype, letter in enumerate(rc.restypes):
        for chi, atom_names in enumerate(rc.chi_angles_atoms[rc.restype_1to3[letter]]):
            table[restype, chi] = [rc.atom_order[name] for name in atom_names]
    return table


def _build_rigid_group_tables() -> dict[str, np.ndarray]:
    """Per-type rigid-group tables used by :func:`atom37_to_frames`.

    ``base_atoms [21, 8, 3]``: atom37 indices of (point on -x axis, origin, point in the xy
    plane) that define each group from coordinates; ``group_exists [21, 8]``;
    ``is_ambiguous [21, 8]`` marks the last chi group of residues with swappable atom names
    (ASP, GLU, PHE, TYR); ``ambiguity_rot [21, 8, 3, 3]`` is a half turn about x there and
    the identity elsewhere.
    """
    base_atoms = np.zeros((_NUM_RESTYPES, NUM_RIGID_GROUPS, 3), dtype=np.int64)
    group_exists = np.zeros((_NUM_RESTYPES, NUM_RIGID_GROUPS), dtype=np.float32)
    # Backbone: x along CA->C after the mirror below, N in the xy plane. psi: CA, C, O.
    base_atoms[:, 0] = [_C, _CA, _N]
    base_atoms[:, 3] = [_CA, _C, _O]
    group_exists[:, [0, 3]] = 1.0
    chi_mask = np.asarray(rc.chi_angles_mask, dtype=np.float32)
    for restype, letter in enumerate(rc.restypes):
        chis = rc.chi_angles_atoms[rc.restype_1to3[letter]]
        for chi, atom_names in enumerate(chis):
            # The chi-k group turns about the bond between the chi's 2nd and 3rd atoms.
            base_atoms[restype, 4 + chi] = [rc.atom_order[name] for name in atom_names[1:]]
        group_exists[restype, 4:] = chi_mask[restype]

    is_ambiguous = np.zeros((_NUM_RESTYPES, NUM_RIGID_GROUPS), dtype=np.float32)
    ambiguity_rot = np.tile(np.eye(3, dtype=np.float32), (_NUM_RESTYPES, NUM_RIGID_GROUPS, 1, 1))
    for resname in rc.residue_atom_renaming_swaps:
        restype = rc.restype_order[rc.restype_3to1[resname]]
        last_group = 3 + int(chi_mask[restype].sum())
        is_ambiguous[restype, last_group] = 1.0
        ambiguity_rot[restype, last_group] = np.diag([1.0, -1.0, -1.0])
    return {
        "base_atoms": base_atoms,
        "group_exists": group_exists,
        "is_ambiguous": is_ambiguous,
        "ambiguity_rot": ambiguity_rot,
    }


def _build_tables() -> dict[str, np.ndarray]:
    chi_mask = np.zeros((_NUM_RESTYPES, 4), dtype=np.float32)
    chi_mask[: rc.restype_num] = np.asarray(rc.chi_angles_mask, dtype=np.float32)
    tables = {
        "atom14_to_atom37": np.asarray(rc.restype_atom14_to_atom37, dtype=np.int64),
        "atom37_to_atom14": np.asarray(rc.restype_atom37_to_atom14, dtype=np.int64),
        "atom14_mask": np.asarray(rc.restype_atom14_mask, dtype=np.float32),
        "atom37_mask": np.asarray(rc.restype_atom37_mask, dtype=np.float32),
        "atom14_to_group": np.asarray(rc.restype_atom14_to_rigid_group, dtype=np.int64),
        "atom37_to_group": np.asarray(rc.restype_atom37_to_rigid_group, dtype=np.int64),
        "atom14_lit_positions": np.asarray(rc.restype_atom14_rigid_group_positions, np.float32),
        "default_frames": np.asarray(rc.restype_rigid_group_default_frame, dtype=np.float32),
        "chi_atoms": _build_chi_atom_indices(),
        "chi_mask": chi_mask,
        "chi_pi_periodic": np.asarray(rc.chi_pi_periodic, dtype=np.float32),
    }
    tables.update(_build_rigid_group_tables())
    for name, table in tables.items():
        if table.shape[0] != _NUM_RESTYPES:
            raise RuntimeError(f"residue_constants table for {name!r} has {table.shape[0]} rows")
    return tables


_TABLES = _build_tables()


@functools.cache
def _table_on(name: str, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(_TABLES[name]).to(device)


def _table(name: str, aatype: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Row ``aatype`` of table ``name``: ``[*, N, ...]``, optionally cast to ``dtype``."""
    rows = _table_on(name, aatype.device)[aatype]
    return rows if dtype is None else rows.to(dtype)


# ---------------------------------------------------------------------------------------
# Input checks and small helpers
# ---------------------------------------------------------------------------------------


def _check_aatype(aatype: torch.Tensor) -> torch.Tensor:
    """Validate integer residue types ``[*, N]`` and map values above 20 to unknown (20)."""
    if not isinstance(aatype, torch.Tensor):
        raise TypeError(f"aatype must be a torch.Tensor of ints, got {type(aatype).__name__}")
    if aatype.is_floating_point() or aatype.dtype == torch.bool or aatype.is_complex():
        raise ValueError(
            f"aatype must hold integer residue types 0..20 [*, N_res], got dtype {aatype.dtype}; "
            "convert one-hot features with argmax(-1)"
        )
    if aatype.dim() < 1:
        raise ValueError("aatype must have a residue dimension [*, N_res], got a scalar")
    if aatype.numel() and int(aatype.min()) < 0:
        raise ValueError(f"aatype has negative residue types (min {int(aatype.min())}); use 0..20")
    return aatype.long().clamp(max=rc.restype_num)


def _check_shape(name: str, x: torch.Tensor, lead: torch.Size, tail: tuple[int, ...]) -> None:
    expected = tuple(lead) + tuple(tail)
    if tuple(x.shape) != expected:
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}, expected {expected} "
            f"(aatype's shape {tuple(lead)} followed by {tuple(tail)})"
        )


def _check_atom_data(name: str, x: torch.Tensor, aatype: torch.Tensor, num_atoms: int) -> None:
    n = aatype.dim()
    if x.dim() < n + 1 or tuple(x.shape[: n + 1]) != tuple(aatype.shape) + (num_atoms,):
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}, expected aatype's shape {tuple(aatype.shape)} "
            f"followed by {num_atoms} atoms and any trailing dims"
        )


def _as_float(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself when floating point, else as float32 (e.g. integer coordinates)."""
    return x if x.is_floating_point() else x.float()


def _gather_atoms(data: torch.Tensor, index: torch.Tensor, atom_dim: int) -> torch.Tensor:
    """``out[..., i, rest] = data[..., index[..., i], rest]`` along ``atom_dim``.

    ``data`` is ``[*, A, ...]``, ``index`` is ``[*, B]`` (same leading dims), result
    ``[*, B, ...]``.
    """
    trailing = data.shape[atom_dim + 1 :]
    index = index.reshape(index.shape + (1,) * len(trailing)).expand(index.shape + trailing)
    return torch.gather(data, atom_dim, index)


def _mask_atoms(data: torch.Tensor, exists: torch.Tensor) -> torch.Tensor:
    """Zero ``data [*, A, ...]`` where ``exists [*, A]`` is 0, keeping ``data``'s dtype."""
    exists = exists.reshape(exists.shape + (1,) * (data.dim() - exists.dim())).bool()
    return torch.where(exists, data, torch.zeros((), dtype=data.dtype, device=data.device))


def rigid_to_flat12(r: Rigid) -> torch.Tensor:
    """AF2's flat 12-vector of a frame: row-major rotation then translation, ``[*, 12]``."""
    return torch.cat([r.rot.reshape(r.rot.shape[:-2] + (9,)), r.trans], dim=-1)


def rigid_from_flat12(t: torch.Tensor) -> Rigid:
    """Inverse of :func:`rigid_to_flat12`: ``[*, 12]`` -> ``Rigid [*]``."""
    if t.shape[-1] != 12:
        raise ValueError(f"flat12 frames need a last dimension of 12, got shape {tuple(t.shape)}")
    return Rigid(t[..., :9].reshape(t.shape[:-1] + (3, 3)), t[..., 9:])


# ---------------------------------------------------------------------------------------
# atom14 <-> atom37
# ---------------------------------------------------------------------------------------


@fp32_no_autocast
def make_atom14_masks(aatype: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-residue atom14/atom37 lookups, AF2's ``make_atom14_masks`` keys.

    Args:
        aatype: ``[*, N_res]`` integer residue types.
    Returns:
        ``atom14_atom_exists [*, N_res, 14]`` float32, ``residx_atom14_to_atom37
        [*, N_res, 14]`` int64, ``residx_atom37_to_atom14 [*, N_res, 37]`` int64,
        ``atom37_atom_exists [*, N_res, 37]`` float32. Index slots of absent atoms are 0.
    """
    aatype = _check_aatype(aatype)
    return {
        "atom14_atom_exists": _table("atom14_mask", aatype),
        "residx_atom14_to_atom37": _table("atom14_to_atom37", aatype),
        "residx_atom37_to_atom14": _table("atom37_to_atom14", aatype),
        "atom37_atom_exists": _table("atom37_mask", aatype),
    }


@fp32_no_autocast
def atom14_to_atom37(atom14_data: torch.Tensor, aatype: torch.Tensor) -> torch.Tensor:
    """Scatter per-residue atom14 data into the atom37 layout.

    Args:
        atom14_data: ``[*, N_res, 14, ...]`` (positions ``[..., 3]``, masks, anything).
        aatype: ``[*, N_res]`` integer residue types.
    Returns:
        ``[*, N_res, 37, ...]`` in ``atom14_data``'s dtype; slots of atoms the residue type
        does not have are zero.
    """
    aatype = _check_aatype(aatype)
    _check_atom_data("atom14_data", atom14_data, aatype, 14)
    out = _gather_atoms(atom14_data, _table("atom37_to_atom14", aatype), aatype.dim())
    return _mask_atoms(out, _table("atom37_mask", aatype))


@fp32_no_autocast
def atom37_to_atom14(atom37_data: torch.Tensor, aatype: torch.Tensor) -> torch.Tensor:
    """Gather per-residue atom37 data into the atom14 layout.

    Args:
        atom37_data: ``[*, N_res, 37, ...]``.
        aatype: ``[*, N_res]`` integer residue types.
    Returns:
        ``[*, N_res, 14, ...]`` in ``atom37_data``'s dtype; unused atom14 slots are zero.
        For a mask, pass ``all_atom_mask [*, N_res, 37]`` the same way.
    """
    aatype = _check_aatype(aatype)
    _check_atom_data("atom37_data", atom37_data, aatype, 37)
    out = _gather_atoms(atom37_data, _table("atom14_to_atom37", aatype), aatype.dim())
    return _mask_atoms(out, _table("atom14_mask", aatype))


# ---------------------------------------------------------------------------------------
# Coordinates -> torsion angles and frames
# ---------------------------------------------------------------------------------------


def _shift_to_next(x: torch.Tensor, res_dim: int) -> torch.Tensor:
    """Entry ``i`` of the result is entry ``i - 1`` of ``x`` along ``res_dim``; zeros at 0."""
    first = torch.zeros_like(x.narrow(res_dim, 0, 1))
    return torch.cat([first, x.narrow(res_dim, 0, x.shape[res_dim] - 1)], dim=res_dim)


def _torsion_masks(aatype: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Which of the 7 torsions are defined by present atoms: ``[*, N_res, 7]``."""
    res_dim = aatype.dim() - 1
    prev = _shift_to_next(mask, res_dim)
    omega = prev[..., _CA] * prev[..., _C] * mask[..., _N] * mask[..., _CA]
    phi = prev[..., _C] * mask[..., _N] * mask[..., _CA] * mask[..., _C]
    psi = mask[..., _N] * mask[..., _CA] * mask[..., _C] * mask[..., _O]
    chi_atoms = _table("chi_atoms", aatype)  # [*, N, 4, 4]
    chi_atoms_present = _gather_atoms(mask, chi_atoms.flatten(-2), res_dim + 1)
    chi_atoms_present = chi_atoms_present.unflatten(-1, (4, 4)).prod(dim=-1)
    chis = _table("chi_mask", aatype, mask.dtype) * chi_atoms_present
    return torch.cat([omega[..., None], phi[..., None], psi[..., None], chis], dim=-1)


@fp32_no_autocast
def atom37_to_torsion_angles(
    aatype: torch.Tensor,
    all_atom_positions: torch.Tensor,
    all_atom_mask: torch.Tensor,
    placeholder_for_undefined: bool = False,
) -> dict[str, torch.Tensor]:
    """The 7 torsion angles of every residue from its coordinates (Suppl. Section 1.8.1).

    Each torsion is defined by 4 atoms: a frame is built on the first three (second atom on
    the -x axis, third at the origin, first in the xy plane) and the fourth atom's (z, y)
    there give (sin, cos). omega and phi use the previous residue along ``N_res`` (the first
    residue has none: masked).

    Args:
        aatype: ``[*, N_res]`` integer residue types.
        all_atom_positions: ``[*, N_res, 37, 3]`` coordinates.
        all_atom_mask: ``[*, N_res, 37]`` 1 where the atom is present.
        placeholder_for_undefined: put ``(sin, cos) = (1, 0)`` where the mask is 0 (AF2's
            placeholder), instead of whatever the missing atoms give.
    Returns:
        ``torsion_angles_sin_cos [*, N_res, 7, 2]``, ``alt_torsion_angles_sin_cos`` (pi-periodic
        chis shifted by pi, i.e. with the swapped atom names) and ``torsion_angles_mask
        [*, N_res, 7]``; order omega, phi, psi, chi1-chi4.
    """
    aatype = _check_aatype(aatype)
    _check_shape("all_atom_positions", all_atom_positions, aatype.shape, (37, 3))
    _check_shape("all_atom_mask", all_atom_mask, aatype.shape, (37,))
    pos = _as_float(all_atom_positions)
    mask = all_atom_mask.to(pos.dtype)
    res_dim = aatype.dim() - 1

    prev = _shift_to_next(pos, res_dim)
    n, ca, c, o = (pos[..., i, :] for i in (_N, _CA, _C, _O))
    prev_ca, prev_c = prev[..., _CA, :], prev[..., _C, :]
    backbone_quads = torch.stack(
        [
            torch.stack([prev_ca, prev_c, n, ca], dim=-2),  # omega
            torch.stack([prev_c, n, ca, c], dim=-2),  # phi
            torch.stack([n, ca, c, o], dim=-2),  # psi
        ],
        dim=-3,
    )  # [*, N, 3, 4, 3]
    chi_atoms = _table("chi_atoms", aatype)  # [*, N, 4, 4]
    chi_quads = _gather_atoms(pos, chi_atoms.flatten(-2), res_dim + 1).unflatten(-2, (4, 4))
    quads = torch.cat([backbone_quads, chi_quads], dim=-3)  # [*, N, 7, 4, 3]
    torsion_mask = _torsion_masks(aatype, mask)

    frames = Rigid.from_3_points(
        p_neg_x_axis=quads[..., 1, :], origin=quads[..., 2, :], p_xy_plane=quads[..., 0, :]
    )
    fourth = frames.invert_apply(quads[..., 3, :])  # [*, N, 7, 3]
    sin_cos = torch.stack([fourth[..., 2], fourth[..., 1]], dim=-1)
    sin_cos = sin_cos / torch.sqrt(sin_cos.square().sum(dim=-1, keepdim=True) + _SIN_COS_EPS)
    sin_cos = sin_cos * sin_cos.new_tensor(_TORSION_SIGN)[:, None]

    pi_periodic = _table("chi_pi_periodic", aatype, pos.dtype)  # [*, N, 4]
    alt_sign = torch.cat([torch.ones_like(pi_periodic[..., :3]), 1.0 - 2.0 * pi_periodic], -1)
    alt_sin_cos = sin_cos * alt_sign[..., None]

    if placeholder_for_undefined:
        placeholder = sin_cos.new_tensor([1.0, 0.0])
        m = torsion_mask[..., None]
        sin_cos = sin_cos * m + placeholder * (1.0 - m)
        alt_sin_cos = alt_sin_cos * m + placeholder * (1.0 - m)
    return {
        "torsion_angles_sin_cos": sin_cos,
        "alt_torsion_angles_sin_cos": alt_sin_cos,
        "torsion_angles_mask": torsion_mask,
    }


def _mirror_backbone(frames: Rigid) -> Rigid:
    """Flip x and z of frames built as (C on -x, CA origin, N in xy): x then points CA->C."""
    flip = frames.rot.new_tensor([-1.0, 1.0, -1.0])
    return Rigid(frames.rot * flip, frames.trans)


@fp32_no_autocast
def backbone_frames_from_atom37(all_atom_positions: torch.Tensor) -> Rigid:
    """Backbone frames from N, CA, C (Suppl. Alg. 21): origin CA, x along CA->C, N in xy.

    Args:
        all_atom_positions: ``[*, N_res, 37, 3]``.
    Returns:
        ``Rigid [*, N_res]`` mapping backbone-local to global coordinates; the same as
        group 0 of :func:`atom37_to_frames`. Check N, CA, C in the mask yourself.
    """
    if all_atom_positions.dim() < 3 or tuple(all_atom_positions.shape[-2:]) != (37, 3):
        raise ValueError(
            f"all_atom_positions has shape {tuple(all_atom_positions.shape)}, "
            "expected [*, N_res, 37, 3]"
        )
    pos = _as_float(all_atom_positions)
    frames = Rigid.from_3_points(
        p_neg_x_axis=pos[..., _C, :], origin=pos[..., _CA, :], p_xy_plane=pos[..., _N, :]
    )
    return _mirror_backbone(frames)


@fp32_no_autocast
def atom37_to_frames(
    aatype: torch.Tensor, all_atom_positions: torch.Tensor, all_atom_mask: torch.Tensor
) -> dict[str, object]:
    """Ground-truth frames of the 8 rigid groups from coordinates (Suppl. Table 2).

    Args:
        aatype: ``[*, N_res]`` integer residue types.
        all_atom_positions: ``[*, N_res, 37, 3]``.
        all_atom_mask: ``[*, N_res, 37]``.
    Returns:
        ``rigidgroups_gt_frames``: ``Rigid [*, N_res, 8]`` (use :func:`rigid_to_flat12` for
        AF2's ``[*, N_res, 8, 12]``); ``rigidgroups_gt_exists [*, N_res, 8]`` (group defined
        and its 3 atoms present); ``rigidgroups_group_exists [*, N_res, 8]``;
        ``rigidgroups_group_is_ambiguous [*, N_res, 8]``; ``rigidgroups_alt_gt_frames``:
        ``Rigid [*, N_res, 8]``, the ambiguous group turned by pi about x (the frame of the
        atom-name-swapped side chain). Groups 1 and 2 (omega, phi) hold no heavy atoms and
        are never defined here.
    """
    aatype = _check_aatype(aatype)
    _check_shape("all_atom_positions", all_atom_positions, aatype.shape, (37, 3))
    _check_shape("all_atom_mask", all_atom_mask, aatype.shape, (37,))
    pos = _as_float(all_atom_positions)
    atom_dim = aatype.dim()

    base_atoms = _table("base_atoms", aatype)  # [*, N, 8, 3]
    base_pos = _gather_atoms(pos, base_atoms.flatten(-2), atom_dim).unflatten(-2, (8, 3))
    frames = Rigid.from_3_points(
        p_neg_x_axis=base_pos[..., 0, :], origin=base_pos[..., 1, :], p_xy_plane=base_pos[..., 2, :]
    )
    # Only group 0 is mirrored; the other groups keep the from_3_points axes.
    flip = torch.ones(NUM_RIGID_GROUPS, 3, dtype=pos.dtype, device=pos.device)
    flip[0] = flip.new_tensor([-1.0, 1.0, -1.0])
    gt_frames = Rigid(frames.rot * flip[:, None, :], frames.trans)

    group_exists = _table("group_exists", aatype, pos.dtype)
    base_present = _gather_atoms(all_atom_mask.to(pos.dtype), base_atoms.flatten(-2), atom_dim)
    gt_exists = base_present.unflatten(-1, (8, 3)).amin(dim=-1) * group_exists

    ambiguity_rot = _table("ambiguity_rot", aatype, pos.dtype)  # [*, N, 8, 3, 3]
    alt_frames = Rigid(rot_matmul(gt_frames.rot, ambiguity_rot), gt_frames.trans)
    return {
        "rigidgroups_gt_frames": gt_frames,
        "rigidgroups_gt_exists": gt_exists,
        "rigidgroups_group_exists": group_exists,
        "rigidgroups_group_is_ambiguous": _table("is_ambiguous", aatype, pos.dtype),
        "rigidgroups_alt_gt_frames": alt_frames,
    }


# ---------------------------------------------------------------------------------------
# Torsion angles -> frames -> atoms (Suppl. Alg. 24)
# ---------------------------------------------------------------------------------------


@fp32_no_autocast
def torsion_angles_to_frames(
    aatype: torch.Tensor, backbone: Rigid, angles_sin_cos: torch.Tensor
) -> Rigid:
    """Global frames of the 8 rigid groups, Suppl. Alg. 24 lines 2-10 (and Alg. 25 makeRotX).

    Args:
        aatype: ``[*, N_res]`` integer residue types.
        backbone: ``Rigid [*, N_res]`` backbone-to-global frames.
        angles_sin_cos: ``[*, N_res, 7, 2]`` (sin, cos) of omega, phi, psi, chi1-4; used as
            given (not re-normalised).
    Returns:
        ``Rigid [*, N_res, 8]``: group-to-global frames; chi2-chi4 are chained through the
        previous chi group, the others attach to the backbone.
    """
    aatype = _check_aatype(aatype)
    if tuple(backbone.trans.shape[:-1]) != tuple(aatype.shape):
        raise ValueError(
            f"backbone frames have batch shape {tuple(backbone.trans.shape[:-1])}, "
            f"expected aatype's shape {tuple(aatype.shape)}"
        )
    _check_shape("angles_sin_cos", angles_sin_cos, aatype.shape, (7, 2))
    dtype = angles_sin_cos.dtype if angles_sin_cos.is_floating_point() else torch.float32
    defaults = Rigid.from_tensor_4x4(_table("default_frames", aatype, dtype))  # [*, N, 8]

    # The backbone group does not rotate: prepend (sin, cos) = (0, 1).
    sin = torch.cat([torch.zeros_like(angles_sin_cos[..., :1, 0]), angles_sin_cos[..., 0]], -1)
    cos = torch.cat([torch.ones_like(angles_sin_cos[..., :1, 1]), angles_sin_cos[..., 1]], -1)
    zero, one = torch.zeros_like(sin), torch.ones_like(sin)
    rot_x = torch.stack(
        [one, zero, zero, zero, cos, -sin, zero, sin, cos], dim=-1
    ).unflatten(-1, (3, 3))  # [*, N, 8, 3, 3]
    to_parent = Rigid(rot_matmul(defaults.rot, rot_x), defaults.trans)

    chi2 = to_parent[..., 4].compose(to_parent[..., 5])
    chi3 = chi2.compose(to_parent[..., 6])
    chi4 = chi3.compose(to_parent[..., 7])
    to_backbone = Rigid.cat(
        [to_parent[..., :5], chi2.unsqueeze(-1), chi3.unsqueeze(-1), chi4.unsqueeze(-1)], dim=-1
    )
    return backbone.unsqueeze(-1).compose(to_backbone)


@fp32_no_autocast
def frames_to_atom14_positions(aatype: torch.Tensor, frames: Rigid) -> torch.Tensor:
    """Place idealised literature atoms in their group frames, Suppl. Alg. 24 line 11.

    Args:
        aatype: ``[*, N_res]`` integer residue types.
        frames: ``Rigid [*, N_res, 8]`` group-to-global frames.
    Returns:
        ``[*, N_res, 14, 3]`` atom14 positions; zero for slots the residue type lacks.
    """
    aatype = _check_aatype(aatype)
    if tuple(frames.trans.shape[:-1]) != tuple(aatype.shape) + (NUM_RIGID_GROUPS,):
        raise ValueError(
            f"frames have batch shape {tuple(frames.trans.shape[:-1])}, expected aatype's "
            f"shape {tuple(aatype.shape)} followed by {NUM_RIGID_GROUPS} groups"
        )
    dtype = frames.trans.dtype
    group_dim = aatype.dim()
    group = _table("atom14_to_group", aatype)  # [*, N, 14]
    rot = _gather_atoms(frames.rot, group, group_dim)  # [*, N, 14, 3, 3]
    trans = _gather_atoms(frames.trans, group, group_dim)  # [*, N, 14, 3]
    literature = _table("atom14_lit_positions", aatype, dtype)
    positions = Rigid(rot, trans).apply(literature)
    return positions * _table("atom14_mask", aatype, dtype)[..., None]


# ---------------------------------------------------------------------------------------
# Convenience: rebuild a structure with ideal geometry from its own torsions
# ---------------------------------------------------------------------------------------


@fp32_no_autocast
def rebuild_from_torsions(
    aatype: torch.Tensor, all_atom_positions: torch.Tensor, all_atom_mask: torch.Tensor
) -> torch.Tensor:
    """Ideal-geometry atoms that reproduce a structure's backbone frames and torsions.

    Backbone frames come from N, CA, C; psi and chi1-4 from the coordinates (undefined ones
    get AF2's placeholder); atoms are then placed with literature geometry
    (:func:`torsion_angles_to_frames`, :func:`frames_to_atom14_positions`). omega and phi
    only move hydrogens, so they do not affect the result.

    Args:
        aatype: ``[*, N_res]``; all_atom_positions: ``[*, N_res, 37, 3]``;
        all_atom_mask: ``[*, N_res, 37]``.
    Returns:
        ``[*, N_res, 37, 3]`` positions for every atom of each residue type; only those in
        :func:`rebuild_atom37_mask` are determined by the input.
    """
    torsions = atom37_to_torsion_angles(
        aatype, all_atom_positions, all_atom_mask, placeholder_for_undefined=True
    )
    backbone = backbone_frames_from_atom37(all_atom_positions)
    frames = torsion_angles_to_frames(aatype, backbone, torsions["torsion_angles_sin_cos"])
    return atom14_to_atom37(frames_to_atom14_positions(aatype, frames), aatype)


@fp32_no_autocast
def rebuild_atom37_mask(aatype: torch.Tensor, all_atom_mask: torch.Tensor) -> torch.Tensor:
    """Which atoms :func:`rebuild_from_torsions` places from data: ``[*, N_res, 37]`` float.

    An atom counts when it is present in ``all_atom_mask``, N, CA and C are present, and
    every torsion its group hangs on (psi for O, chi1..chi_k for the chi-k group) is defined.
    """
    aatype = _check_aatype(aatype)
    _check_shape("all_atom_mask", all_atom_mask, aatype.shape, (37,))
    mask = all_atom_mask.float() if not all_atom_mask.is_floating_point() else all_atom_mask
    torsion_mask = _torsion_masks(aatype, mask)
    backbone = mask[..., _N] * mask[..., _CA] * mask[..., _C]
    # Product of the torsions each group depends on, per group: [*, N, 8].
    chis_so_far = torch.cumprod(torsion_mask[..., 3:], dim=-1)
    ones = torch.ones_like(torsion_mask[..., :1])
    group_ok = torch.cat([ones, ones, ones, torsion_mask[..., 2:3], chis_so_far], dim=-1)
    atom_group = _table("atom37_to_group", aatype)  # [*, N, 37]
    atom_ok = torch.gather(group_ok, -1, atom_group)
    return mask * _table("atom37_mask", aatype, mask.dtype) * atom_ok * backbone[..., None]
