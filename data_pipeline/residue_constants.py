"""Amino-acid facts shared by the data pipeline, the model and the losses.

This module exposes the public names of AlphaFold 2's ``alphafold.common.residue_constants``
with the same types, shapes, dtypes and values, so code written against AF2's names works
unchanged. The raw numbers live in ``residue_constants_data``; every array below is
derived from them here. Numpy only.

Index conventions (as in AF2):

* ``aatype`` indexes ``restypes`` (20 amino acids), 20 is the unknown type ``X``/``UNK``;
* atom37 indexes ``atom_types`` (every heavy-atom name of the 20 amino acids, plus OXT);
* atom14 indexes ``restype_name_to_atom14_names[resname]`` (a residue's own heavy atoms);
* rigid groups: 0 backbone, 1 pre-omega, 2 phi, 3 psi, 4..7 chi1..chi4.

Beyond AF2's module this one also carries a few per-restype tables that AF2 builds
elsewhere (atom14 <-> atom37 maps, ambiguity tables, rigid-group base atoms, PDB chain
ids); they are marked "Uni-Fold addition" below.
"""

from __future__ import annotations

import collections
import functools
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np

from data_pipeline import residue_constants_data as _data

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------
# Residue types
# ---------------------------------------------------------------------------------------

#: One-letter codes of the 20 amino acids, in aatype order.
restypes: list[str] = list(_data.RESTYPES_1)
#: One-letter code -> aatype index (0..19).
restype_order: dict = {letter: i for i, letter in enumerate(restypes)}
#: Number of standard amino acids (20).
restype_num: int = len(restypes)
#: aatype index used for any non-standard residue (20).
unk_restype_index: int = restype_num
#: ``restypes`` plus the unknown letter ``X``.
restypes_with_x: list[str] = restypes + ["X"]
#: One-letter code (including ``X``) -> index (0..20).
restype_order_with_x: dict = {letter: i for i, letter in enumerate(restypes_with_x)}

#: One-letter -> three-letter code, for the 20 amino acids.
restype_1to3: dict = dict(zip(restypes, _data.RESTYPES_3.split()))
#: Three-letter -> one-letter code (a strict inverse of ``restype_1to3``; unlike
#: Biopython's table it knows no modified residues).
restype_3to1: dict = {three: one for one, three in restype_1to3.items()}
#: Three-letter name of the unknown residue type.
unk_restype: str = "UNK"
#: Three-letter names in aatype order, ``UNK`` last (21 entries).
resnames: list[str] = [restype_1to3[letter] for letter in restypes] + [unk_restype]
#: Three-letter name -> aatype index (0..20).
resname_to_idx: dict = {name: i for i, name in enumerate(resnames)}

#: mmCIF ``_entity_poly.type`` of a protein chain, and the ``_entity.type`` of a polymer.
PROTEIN_CHAIN: Final[str] = "polypeptide(L)"
POLYMER_CHAIN: Final[str] = "polymer"

#: Uni-Fold addition: chain ids usable in PDB files, in the order they are assigned.
PDB_CHAIN_IDS: str = _data.PDB_CHAIN_IDS
#: Uni-Fold addition: most chains a PDB file can hold (62).
PDB_MAX_CHAINS: int = len(PDB_CHAIN_IDS)

# ---------------------------------------------------------------------------------------
# Atom layouts
# ---------------------------------------------------------------------------------------

#: The 37 heavy-atom names of the atom37 layout.
atom_types: list[str] = _data.ATOM37_NAMES.split()
#: Atom name -> atom37 index.
atom_order: dict = {name: i for i, name in enumerate(atom_types)}
#: Number of atom37 slots (37).
atom_type_num: int = len(atom_types)

#: Three-letter name -> list of its heavy-atom names (no OXT, no hydrogens).
residue_atoms: dict = {res: names.split() for res, names in _data.RESIDUE_ATOMS.items()}

#: Three-letter name (``UNK`` included) -> its 14 atom14 names, ``""`` for empty slots.
restype_name_to_atom14_names: dict = {
    res: names.split() + [""] * (14 - len(names.split()))
    for res, names in _data.ATOM14_NAMES.items()
}


def atom_id_to_type(atom_id: str) -> str:
    """Return the element (``C``, ``N``, ``O``, ``H`` or ``S``) of a protein atom name.

    Works for standard amino-acid atom names, whose first letter is the element.
    Raises ValueError for any other name.
    """
    if atom_id and atom_id[0] in "CNOHS":
        return atom_id[0]
    raise ValueError(
        f"Atom ID {atom_id!r} not recognized: expected a standard protein atom name "
        "starting with C, N, O, H or S."
    )


# ---------------------------------------------------------------------------------------
# MSA alphabet (HHblits) and one-hot encoding
# ---------------------------------------------------------------------------------------


def _make_hhblits_aa_to_id() -> dict:
    ids = {letter: i for i, letter in enumerate(_data.HHBLITS_ALPHABET)}
    for rare, standard in _data.HHBLITS_ALIASES.items():
        ids[rare] = ids[standard]
    # Letters first in alphabetical order, then the gap, as AF2 lists them.
    return {key: ids[key] for key in sorted(ids, key=lambda k: (k == "-", k))}


#: MSA letter -> HHblits id (0..21). Rare letters fold into standard ones:
#: B->D, Z->E, U->C, J and O -> X. ``X`` is 20, the gap ``-`` is 21.
HHBLITS_AA_TO_ID: dict = _make_hhblits_aa_to_id()
#: HHblits id -> its canonical letter (0..21).
ID_TO_HHBLITS_AA: dict = dict(enumerate(_data.HHBLITS_ALPHABET))
#: ``restypes_with_x`` plus the gap ``-`` (22 entries; our MSA index order).
restypes_with_x_and_gap: list[str] = restypes + ["X", "-"]
#: HHblits id -> our index (into ``restypes_with_x_and_gap``); tuple of 22 ints.
MAP_HHBLITS_AATYPE_TO_OUR_AATYPE: tuple[int, ...] = tuple(
    restypes_with_x_and_gap.index(ID_TO_HHBLITS_AA[i])
    for i in range(len(restypes_with_x_and_gap))
)
#: Uni-Fold addition: id of the gap in both the HHblits and our MSA alphabet (21).
MSA_GAP_ID: int = HHBLITS_AA_TO_ID["-"]


class UnknownResidueError(ValueError, KeyError):
    """A sequence letter that the requested mapping cannot encode.

    Subclasses ValueError (bad input) and KeyError (what AF2 raises), so callers
    written for either keep working.
    """

    def __str__(self) -> str:  # KeyError would print the message with quotes.
        return str(self.args[0]) if self.args else ""


def sequence_to_onehot(
    sequence: str, mapping: Mapping[str, int], map_unknown_to_x: bool = False
) -> np.ndarray:
    """One-hot encode ``sequence`` with ``mapping`` (letter -> index).

    Args:
      sequence: residue letters, e.g. ``"MKV"``.
      mapping: letter -> index; its values must be exactly 0..n-1 (repeats allowed).
      map_unknown_to_x: encode letters absent from ``mapping`` as ``mapping["X"]``;
        every character must then be an upper-case letter (so no gaps). Otherwise
        letters absent from ``mapping`` are an error.

    Returns:
      int32 array ``[len(sequence), n]``.

    Raises:
      ValueError: the mapping values are not 0..n-1, or a letter is not upper-case
        alphabetic while ``map_unknown_to_x`` is set.
      UnknownResidueError (a ValueError and KeyError): a letter cannot be encoded.
    """
    num_classes = max(mapping.values()) + 1
    if sorted(set(mapping.values())) != list(range(num_classes)):
        raise ValueError(
            "The mapping must have values from 0 to num_unique_aas-1 without any gaps. "
            f"Got: {sorted(mapping.values())}"
        )
    indices = np.empty(len(sequence), dtype=np.int64)
    for pos, letter in enumerate(sequence):
        if not map_unknown_to_x:
            if letter not in mapping:
                raise UnknownResidueError(
                    f"Residue {letter!r} at position {pos} is not in the mapping "
                    f"(known: {''.join(sorted(mapping))}); pass map_unknown_to_x=True to "
                    "encode unknown letters as X."
                )
            indices[pos] = mapping[letter]
        elif not (letter.isalpha() and letter.isupper()):
            # With map_unknown_to_x only letters are accepted, even if the mapping has
            # other symbols (e.g. the gap): AF2 behaves the same way.
            raise ValueError(
                f"Invalid character in the sequence: {letter!r} at position {pos}; "
                "only upper-case letters are allowed with map_unknown_to_x=True."
            )
        elif "X" not in mapping:
            raise UnknownResidueError(
                "map_unknown_to_x=True needs an 'X' entry in the mapping; use e.g. "
                "restype_order_with_x."
            )
        else:
            indices[pos] = mapping.get(letter, mapping["X"])
    onehot = np.zeros((len(sequence), num_classes), dtype=np.int32)
    onehot[np.arange(len(sequence)), indices] = 1
    return onehot


# ---------------------------------------------------------------------------------------
# Chi angles
# ---------------------------------------------------------------------------------------

#: Three-letter name -> list of chi angles, each the 4 atom names defining it.
chi_angles_atoms: dict = {
    res: [quad.split() for quad in spec.split("/")] if spec else []
    for res, spec in _data.CHI_ATOMS.items()
}

#: [20][4] floats: 1.0 where chi k exists for the residue type (aatype order, no UNK).
chi_angles_mask: list[list[float]] = [
    [1.0 if k < len(chi_angles_atoms[restype_1to3[r]]) else 0.0 for k in range(4)]
    for r in restypes
]

#: [21][4] floats: 1.0 where chi k is only defined modulo pi (UNK row last, all 0).
chi_pi_periodic: list[list[float]] = [
    [1.0 if (res, k) in _data.PI_PERIODIC_CHIS else 0.0 for k in range(4)]
    for res in resnames
]


def chi_angle_atom(atom_index: int) -> np.ndarray:
    """One-hot of the ``atom_index``-th atom (0..3) of every chi angle.

    Returns:
      float64 ``[21, 37, 4]``: ``[aatype, atom37, chi]``. Like AF2, a chi that a residue
      lacks points at the last atom37 slot (OXT); the UNK row is all zeros.
    """
    if not 0 <= atom_index < 4:
        raise ValueError(f"atom_index must be 0..3 (a chi has 4 atoms), got {atom_index}.")
    onehot = np.zeros((restype_num + 1, atom_type_num, 4), dtype=np.float64)
    for aatype, letter in enumerate(restypes):
        chis = chi_angles_atoms[restype_1to3[letter]]
        for k in range(4):
            atom = atom_order[chis[k][atom_index]] if k < len(chis) else atom_type_num - 1
            onehot[aatype, atom, k] = 1.0
    return onehot


#: float64 [21, 37, 4]: one-hot of the 2nd atom (axis start) of each chi.
chi_atom_1_one_hot: np.ndarray = chi_angle_atom(1)
#: float64 [21, 37, 4]: one-hot of the 3rd atom (axis end) of each chi.
chi_atom_2_one_hot: np.ndarray = chi_angle_atom(2)


def _chi_atom37_indices(with_unk: bool) -> np.ndarray:
    rows = []
    for letter in restypes:
        chis = chi_angles_atoms[restype_1to3[letter]]
        rows.append([[atom_order[a] for a in quad] for quad in chis])
        rows[-1] += [[0, 0, 0, 0]] * (4 - len(chis))
    if with_unk:
        rows.append([[0, 0, 0, 0]] * 4)
    return np.array(rows, dtype=np.int64)


#: int64 [20, 4, 4]: atom37 indices of the 4 atoms of each chi; 0 for absent chis.
chi_angles_atom_indices: np.ndarray = _chi_atom37_indices(with_unk=False)
#: Uni-Fold addition: int64 [21, 4, 4], ``chi_angles_atom_indices`` plus an UNK row of 0s.
chi_angles_atom_indices_with_unk: np.ndarray = _chi_atom37_indices(with_unk=True)


def _make_chi_groups_for_atom() -> dict:
    groups = collections.defaultdict(list)
    for res, chis in chi_angles_atoms.items():
        for chi_index, quad in enumerate(chis):
            for pos, atom in enumerate(quad):
                groups[(res, atom)].append((chi_index, pos))
    return dict(groups)


#: (resname, atom name) -> list of (chi index, position of the atom in that chi).
chi_groups_for_atom: dict = _make_chi_groups_for_atom()

# ---------------------------------------------------------------------------------------
# Ideal geometry and physical constants
# ---------------------------------------------------------------------------------------


def _parse_ideal_atoms(table: str) -> dict:
    positions: dict = {}
    for line in table.strip().splitlines():
        if line.startswith("#"):
            continue
        res, atom, group, x, y, z = line.split()
        positions.setdefault(res, []).append([atom, int(group), (float(x), float(y), float(z))])
    return positions


#: Three-letter name -> list of ``[atom name, rigid group, (x, y, z)]``: idealised
#: heavy-atom positions in the local frame of the atom's rigid group (Angstrom).
rigid_group_atom_positions: dict = _parse_ideal_atoms(_data.IDEAL_ATOMS)

#: Names interchangeable by symmetry: resname -> {atom: partner}. Only these 4 residues;
#: LEU, VAL and ARG look symmetric but their names are fixed by their neighbours.
residue_atom_renaming_swaps: dict = {
    res: dict(swaps) for res, swaps in _data.RENAMING_SWAPS.items()
}

#: Element -> van der Waals radius (Angstrom).
van_der_waals_radius: dict = dict(_data.VAN_DER_WAALS_RADIUS)

#: C(i)-N(i+1) bond length and its stddev (Angstrom): [any residue, proline].
between_res_bond_length_c_n: list[float] = list(_data.PEPTIDE_C_N_LENGTH)
between_res_bond_length_stddev_c_n: list[float] = list(_data.PEPTIDE_C_N_LENGTH_STDDEV)
#: [mean, stddev] of cos(C(i)-N(i+1)-CA(i+1)) and of cos(CA(i)-C(i)-N(i+1)).
between_res_cos_angles_c_n_ca: list[float] = list(_data.PEPTIDE_COS_C_N_CA)
between_res_cos_angles_ca_c_n: list[float] = list(_data.PEPTIDE_COS_CA_C_N)
#: CA(i)-CA(i+1) distance for a trans peptide (Angstrom).
ca_ca: float = _data.CA_CA_DISTANCE

# ---------------------------------------------------------------------------------------
# Stereochemistry for the violation losses (Suppl. 1.9.11)
# ---------------------------------------------------------------------------------------

#: A bond (or virtual bond) between two atoms: length and stddev in Angstrom.
Bond = collections.namedtuple("Bond", ["atom1_name", "atom2_name", "length", "stddev"])
#: A bond angle atom1-atom2-atom3 (vertex atom2), in radians. The field name
#: ``atom3name`` (no underscore) is AF2's.
BondAngle = collections.namedtuple(
    "BondAngle", ["atom1_name", "atom2_name", "atom3name", "angle_rad", "stddev"]
)


def _parse_per_residue(table: str) -> dict:
    """``"RES: item; item"`` lines (continuations indented) -> resname -> item tokens."""
    items: dict = {}
    res = None
    for line in table.strip().splitlines():
        if not line.startswith(" "):
            res, line = line.split(":", 1)
            items[res] = []
        items[res] += [entry.split() for entry in line.split(";") if entry.strip()]
    return items


def _virtual_bond(angle: BondAngle, bond_ab: Bond, bond_bc: Bond) -> Bond:
    """Distance a-c across the angle a-b-c (law of cosines) with a propagated stddev."""
    ab, bc, theta = bond_ab.length, bond_bc.length, angle.angle_rad
    length = np.sqrt(ab**2 + bc**2 - 2.0 * ab * bc * np.cos(theta))
    # First-order error propagation, treating the three inputs as independent.
    d_theta = ab * bc * np.sin(theta) / length
    d_ab = (ab - bc * np.cos(theta)) / length
    d_bc = (bc - ab * np.cos(theta)) / length
    stddev = np.sqrt(
        (d_theta * angle.stddev) ** 2 + (d_ab * bond_ab.stddev) ** 2 + (d_bc * bond_bc.stddev) ** 2
    )
    return Bond(angle.atom1_name, angle.atom3name, length, stddev)


@functools.cache
def load_stereo_chemical_props() -> tuple[
    Mapping[str, list[Bond]], Mapping[str, list[Bond]], Mapping[str, list[BondAngle]]
]:
    """Engh & Huber bond lengths and angles per residue, plus the derived virtual bonds.

    Returns:
      ``(residue_bonds, residue_virtual_bonds, residue_bond_angles)``, each a dict
      resname -> list (``UNK`` maps to an empty list). A virtual bond is the 1-3
      distance spanned by a bond angle, so the violation loss can bound angles as
      distances. Cached: the same dicts are returned on every call, do not mutate them.
    """
    residue_bonds: dict = {}
    for res, entries in _parse_per_residue(_data.BOND_LENGTHS).items():
        residue_bonds[res] = [
            Bond(*pair.split("-"), float(mean), float(std)) for pair, mean, std in entries
        ]
    residue_bonds[unk_restype] = []

    residue_bond_angles: dict = {}
    for res, entries in _parse_per_residue(_data.BOND_ANGLES).items():
        residue_bond_angles[res] = [
            BondAngle(*triple.split("-"), float(mean) / 180.0 * math.pi,
                      float(std) / 180.0 * math.pi)
            for triple, mean, std in entries
        ]
    residue_bond_angles[unk_restype] = []

    residue_virtual_bonds: dict = {}
    for res, angles in residue_bond_angles.items():
        by_pair = {frozenset((b.atom1_name, b.atom2_name)): b for b in residue_bonds[res]}
        virtual = []
        for angle in angles:
            try:
                bond_ab = by_pair[frozenset((angle.atom1_name, angle.atom2_name))]
                bond_bc = by_pair[frozenset((angle.atom2_name, angle.atom3name))]
            except KeyError as err:
                raise ValueError(f"{res}: angle {angle[:3]} has no tabulated bond {err}") from err
            virtual.append(_virtual_bond(angle, bond_ab, bond_bc))
        residue_virtual_bonds[res] = virtual
    return residue_bonds, residue_virtual_bonds, residue_bond_angles


def make_atom14_dists_bounds(
    overlap_tolerance: float = 1.5, bond_length_tolerance_factor: float = 15
) -> dict:
    """Allowed intra-residue atom14 distance ranges, for the violation loss.

    Any two distinct atoms of a residue must stay at least their summed van der Waals
    radii minus ``overlap_tolerance`` apart (no upper bound: 1e10). Bonded pairs and
    1-3 pairs of a bond angle (virtual bonds) must instead lie within
    ``length +- bond_length_tolerance_factor * stddev``.

    Returns:
      dict with float32 ``[21, 14, 14]`` arrays ``lower_bound``, ``upper_bound`` and
      ``stddev`` (stddev is 0 for pairs that are not (virtually) bonded); symmetric,
      zero on the diagonal, for empty atom14 slots and for UNK.
    """
    shape = (restype_num + 1, 14, 14)
    lower = np.zeros(shape, dtype=np.float32)
    upper = np.zeros(shape, dtype=np.float32)
    stddev = np.zeros(shape, dtype=np.float32)
    residue_bonds, residue_virtual_bonds, _ = load_stereo_chemical_props()
    for aatype, letter in enumerate(restypes):
        res = restype_1to3[letter]
        names = restype_name_to_atom14_names[res]
        present = [i for i, name in enumerate(names) if name]
        radius = {i: van_der_waals_radius[names[i][0]] for i in present}
        for i in present:
            for j in present:
                if i != j:
                    lower[aatype, i, j] = radius[i] + radius[j] - overlap_tolerance
                    upper[aatype, i, j] = 1e10
        for bond in residue_bonds[res] + residue_virtual_bonds[res]:
            i, j = names.index(bond.atom1_name), names.index(bond.atom2_name)
            slack = bond_length_tolerance_factor * bond.stddev
            for a, b in ((i, j), (j, i)):
                lower[aatype, a, b] = bond.length - slack
                upper[aatype, a, b] = bond.length + slack
                stddev[aatype, a, b] = bond.stddev
    return {"lower_bound": lower, "upper_bound": upper, "stddev": stddev}


# ---------------------------------------------------------------------------------------
# Per-restype lookup tables (aatype-indexed, UNK = row 20)
# ---------------------------------------------------------------------------------------

#: int32 [21, 37]: 1 where the residue type has that heavy atom (no OXT; UNK all 0).
STANDARD_ATOM_MASK: np.ndarray = np.zeros((restype_num + 1, atom_type_num), dtype=np.int32)
for _aatype, _letter in enumerate(restypes):
    STANDARD_ATOM_MASK[_aatype, [atom_order[a] for a in residue_atoms[restype_1to3[_letter]]]] = 1

#: int64 [21, 37] / [21, 14]: rigid group (0..7) each atom rides on.
restype_atom37_to_rigid_group: np.ndarray = np.zeros((21, 37), dtype=np.int64)
restype_atom14_to_rigid_group: np.ndarray = np.zeros((21, 14), dtype=np.int64)
#: float32 [21, 37] / [21, 14]: 1 where the atom slot is used by the residue type.
restype_atom37_mask: np.ndarray = np.zeros((21, 37), dtype=np.float32)
restype_atom14_mask: np.ndarray = np.zeros((21, 14), dtype=np.float32)
#: float32 [21, 37, 3] / [21, 14, 3]: ideal position of each atom in its group's frame.
restype_atom37_rigid_group_positions: np.ndarray = np.zeros((21, 37, 3), dtype=np.float32)
restype_atom14_rigid_group_positions: np.ndarray = np.zeros((21, 14, 3), dtype=np.float32)

for _aatype, _letter in enumerate(restypes):
    _res = restype_1to3[_letter]
    for _atom, _group, _pos in rigid_group_atom_positions[_res]:
        _i37 = atom_order[_atom]
        _i14 = restype_name_to_atom14_names[_res].index(_atom)
        restype_atom37_to_rigid_group[_aatype, _i37] = _group
        restype_atom14_to_rigid_group[_aatype, _i14] = _group
        restype_atom37_mask[_aatype, _i37] = 1.0
        restype_atom14_mask[_aatype, _i14] = 1.0
        restype_atom37_rigid_group_positions[_aatype, _i37] = _pos
        restype_atom14_rigid_group_positions[_aatype, _i14] = _pos


def _frame_4x4(x_axis: np.ndarray, xy_point: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Homogeneous transform whose x axis is along ``x_axis``, whose xy plane contains
    ``xy_point`` (as a direction, positive y side) and whose origin is ``origin``.
    Columns: e_x, e_y, e_z, origin."""
    e_x = x_axis / np.linalg.norm(x_axis)
    e_y = xy_point - np.dot(xy_point, e_x) * e_x  # Gram-Schmidt
    e_y = e_y / np.linalg.norm(e_y)
    e_z = np.cross(e_x, e_y)
    frame = np.eye(4)
    frame[:3, :3] = np.stack([e_x, e_y, e_z], axis=1)
    frame[:3, 3] = origin
    return frame


def _make_default_frames() -> np.ndarray:
    """float32 [21, 8, 4, 4]: each rigid group's frame in its parent's frame at torsion 0.

    Parents: groups 1-4 hang off the backbone (group 0), chi k+1 off chi k.
    Absent groups (and UNK) are all-zero matrices, as in AF2.
    """
    frames = np.zeros((restype_num + 1, 8, 4, 4), dtype=np.float32)
    for aatype, letter in enumerate(restypes):
        res = restype_1to3[letter]
        pos = {atom: np.array(xyz) for atom, _, xyz in rigid_group_atom_positions[res]}
        frames[aatype, 0] = np.eye(4)  # backbone
        frames[aatype, 1] = np.eye(4)  # pre-omega: placeholder, no atoms
        # phi: rotation about CA->N, placed at N.
        frames[aatype, 2] = _frame_4x4(pos["N"] - pos["CA"], np.array([1.0, 0.0, 0.0]), pos["N"])
        # psi: rotation about CA->C, placed at C, with N on the negative-y side.
        frames[aatype, 3] = _frame_4x4(pos["C"] - pos["CA"], pos["CA"] - pos["N"], pos["C"])
        chis = chi_angles_atoms[res]
        if chis:  # chi1: rotation about CA->CB, placed at CB, N in the xy plane.
            a, b, c, _ = (pos[name] for name in chis[0])
            frames[aatype, 4] = _frame_4x4(c - b, a - b, c)
        for k in range(1, len(chis)):
            # chi k+1 rotates about an axis from the parent's origin to the parent-frame
            # position of the axis end atom; the parent's axis start lies on its -x.
            end = pos[chis[k][2]]
            frames[aatype, 4 + k] = _frame_4x4(end, np.array([-1.0, 0.0, 0.0]), end)
    return frames


#: float32 [21, 8, 4, 4]: default frame of each rigid group relative to its parent.
restype_rigid_group_default_frame: np.ndarray = _make_default_frames()


def _make_atom14_atom37_maps() -> tuple[np.ndarray, np.ndarray]:
    to37 = np.zeros((restype_num + 1, 14), dtype=np.int32)
    to14 = np.zeros((restype_num + 1, atom_type_num), dtype=np.int32)
    for aatype, res in enumerate(resnames[:-1]):
        for i14, atom in enumerate(restype_name_to_atom14_names[res]):
            if atom:
                to37[aatype, i14] = atom_order[atom]
                to14[aatype, atom_order[atom]] = i14
    return to37, to14


#: Uni-Fold addition: int32 [21, 14] atom14 slot -> atom37 index (0 for empty slots) and
#: int32 [21, 37] atom37 slot -> atom14 index (0 for atoms the residue lacks).
restype_atom14_to_atom37, restype_atom37_to_atom14 = _make_atom14_atom37_maps()


def _make_ambiguity_tables() -> tuple[np.ndarray, np.ndarray]:
    is_ambiguous = np.zeros((restype_num + 1, 14), dtype=np.float32)
    renaming = np.tile(np.eye(14, dtype=np.float32), (restype_num + 1, 1, 1))
    for res, swaps in residue_atom_renaming_swaps.items():
        aatype, names = resname_to_idx[res], restype_name_to_atom14_names[res]
        permutation = np.arange(14)
        for atom, partner in swaps.items():
            i, j = names.index(atom), names.index(partner)
            permutation[i], permutation[j] = j, i
            is_ambiguous[aatype, [i, j]] = 1.0
        renaming[aatype] = np.eye(14, dtype=np.float32)[permutation]
    return is_ambiguous, renaming


#: Uni-Fold addition: float32 [21, 14], 1 for atoms with a symmetric naming partner, and
#: float32 [21, 14, 14] permutation matrices swapping each such atom with its partner
#: (``renamed = matrix @ atom14``; identity for residues without ambiguity).
restype_atom14_is_ambiguous, restype_atom14_renaming_matrices = _make_ambiguity_tables()


def _make_rigidgroup_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    base = np.zeros((restype_num + 1, 8, 3), dtype=np.int64)
    mask = np.zeros((restype_num + 1, 8), dtype=np.float32)
    is_ambiguous = np.zeros((restype_num + 1, 8), dtype=np.float32)
    rots = np.tile(np.eye(3, dtype=np.float32), (restype_num + 1, 8, 1, 1))
    base[:, 0] = [atom_order[a] for a in ("C", "CA", "N")]
    base[:, 3] = [atom_order[a] for a in ("CA", "C", "O")]
    mask[:, [0, 3]] = 1.0
    for aatype, res in enumerate(resnames[:-1]):
        chis = chi_angles_atoms[res]
        for k, quad in enumerate(chis):
            base[aatype, 4 + k] = [atom_order[a] for a in quad[1:]]
            mask[aatype, 4 + k] = 1.0
        if res in residue_atom_renaming_swaps:  # the last chi group flips by pi
            is_ambiguous[aatype, 3 + len(chis)] = 1.0
            rots[aatype, 3 + len(chis)] = np.diag([1.0, -1.0, -1.0])
    return base, mask, is_ambiguous, rots


#: Uni-Fold addition, for building frames from atoms (Suppl. Alg. 21):
#: int64 [21, 8, 3] atom37 indices of the 3 atoms fixing each rigid group (0 if absent),
#: float32 [21, 8] mask of the groups that exist, float32 [21, 8] marking the group whose
#: frame is ambiguous by a pi rotation, and float32 [21, 8, 3, 3] that pi rotation about x.
(
    restype_rigidgroup_base_atom37_idx,
    restype_rigidgroup_mask,
    restype_rigidgroup_is_ambiguous,
    restype_rigidgroup_ambiguity_rots,
) = _make_rigidgroup_tables()

del _aatype, _letter, _res, _atom, _group, _pos, _i37, _i14


def _check_consistency(names: Sequence[str] = tuple(resnames[:-1])) -> None:
    """Cross-check the hand-written tables against each other at import time."""
    for res in names:
        ideal = {atom for atom, _, _ in rigid_group_atom_positions[res]}
        atom14 = {a for a in restype_name_to_atom14_names[res] if a}
        if not ideal == atom14 == set(residue_atoms[res]):
            raise RuntimeError(f"residue_constants_data is inconsistent for {res}")


_check_consistency()
