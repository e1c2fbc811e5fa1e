"""Parity of data_pipeline.residue_constants with AF2's alphafold.common.residue_constants.

Every public table is compared value by value with the reference module, run live;
functions are compared on the same inputs (real sequences and MSA rows from the shared
data). Tables that AF2 builds elsewhere (Uni-Fold additions) are compared with the
reference's own construction in ``alphafold.model.all_atom_multimer`` / ``common.protein``.
A few checks need no reference: the ideal geometry must reproduce the tabulated bond
lengths, and the module must import without torch.
"""
from __future__ import annotations

import subprocess
import sys
import types
import typing

import numpy as np
import pytest
from alphafold.common import protein as ref_protein
from alphafold.common import residue_constants as ref
from alphafold.model import all_atom_multimer as ref_all_atom

from data_pipeline import residue_constants as rc
from tests.shared import SHARED_DATA

# Public names of the reference module that are deliberately not reproduced.
SKIPPED_REFERENCE_NAMES = {
    # Modules and typing helpers the reference imports; not part of its data.
    "collections": "imported module",
    "functools": "imported module",
    "np": "imported module",
    "os": "imported module",
    "tree": "imported module (dm-tree), not a dependency of data_pipeline",
    "Final": "typing helper",
    "List": "typing helper",
    "Mapping": "typing helper",
    "Tuple": "typing helper",
    # Loop variables that leak from module-level for-loops in the reference.
    "atom": "leaked loop variable",
    "atom_i": "leaked loop variable",
    "chi_angle_atoms_for_res": "leaked loop variable",
    "chi_group": "leaked loop variable",
    "chi_group_i": "leaked loop variable",
    "res_name": "leaked loop variable",
    # Our stereochemistry lives in residue_constants_data.py, so there is no text file.
    "stereo_chemical_props_path": "path of the reference's data file; ours is Python data",
}

REFERENCE_PUBLIC = sorted(n for n in dir(ref) if not n.startswith("_"))
REFERENCE_DATA = [
    n
    for n in REFERENCE_PUBLIC
    if n not in SKIPPED_REFERENCE_NAMES and not callable(getattr(ref, n))
]


def assert_same(ours, theirs, where: str = "") -> None:
    """Deep equality that also checks container types and array dtypes/shapes."""
    if isinstance(theirs, np.ndarray):
        assert isinstance(ours, np.ndarray), where
        assert ours.dtype == theirs.dtype, f"{where}: dtype {ours.dtype} != {theirs.dtype}"
        assert ours.shape == theirs.shape, f"{where}: shape {ours.shape} != {theirs.shape}"
        assert np.array_equal(ours, theirs), f"{where}: values differ"
        return
    assert type(ours) is type(theirs), f"{where}: type {type(ours)} != {type(theirs)}"
    if isinstance(theirs, dict):
        assert list(ours) == list(theirs), f"{where}: keys (or their order) differ"
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{where}[{key!r}]")
    elif isinstance(theirs, list | tuple):
        assert len(ours) == len(theirs), f"{where}: length {len(ours)} != {len(theirs)}"
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(theirs, float):
        # Bit-exact, sign of zero included (the ideal coordinates hold -0.0).
        assert np.float64(ours).tobytes() == np.float64(theirs).tobytes(), f"{where}: {ours}"
    else:
        assert ours == theirs, f"{where}: {ours!r} != {theirs!r}"


# ---------------------------------------------------------------------------------------
# Coverage of the reference's public names
# ---------------------------------------------------------------------------------------


def test_every_public_reference_name_is_provided():
    missing = [n for n in REFERENCE_PUBLIC if n not in SKIPPED_REFERENCE_NAMES and
               not hasattr(rc, n)]
    assert not missing, f"names of alphafold.common.residue_constants not provided: {missing}"


def test_skip_list_is_current_and_holds_no_tables():
    for name, why in SKIPPED_REFERENCE_NAMES.items():
        assert name in REFERENCE_PUBLIC, f"skip entry {name!r} is stale"
        value = getattr(ref, name)
        if why == "imported module":
            assert isinstance(value, types.ModuleType)
        elif why == "typing helper":
            assert getattr(typing, name) is value
        elif why == "leaked loop variable":
            assert isinstance(value, str | int | list)


def test_reference_has_tables_and_functions_to_compare():
    # Guards the parametrisation below against an empty or truncated name list.
    assert len(REFERENCE_DATA) >= 40
    assert {"sequence_to_onehot", "make_atom14_dists_bounds", "load_stereo_chemical_props",
            "chi_angle_atom", "atom_id_to_type"} <= set(REFERENCE_PUBLIC)


# ---------------------------------------------------------------------------------------
# Tables, value by value
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REFERENCE_DATA)
def test_table_matches_reference(name):
    assert_same(getattr(rc, name), getattr(ref, name), name)


@pytest.mark.parametrize("name", ["Bond", "BondAngle"])
def test_namedtuples_match_reference(name):
    ours, theirs = getattr(rc, name), getattr(ref, name)
    assert ours.__name__ == theirs.__name__
    assert ours._fields == theirs._fields
    values = tuple(range(len(theirs._fields)))
    assert tuple(ours(*values)) == tuple(theirs(*values))


def test_default_frames_are_rigid_transforms():
    frames = rc.restype_rigid_group_default_frame.astype(np.float64)
    present = np.abs(frames).sum(axis=(-1, -2)) > 0
    rots = frames[present][:, :3, :3]
    identity = np.broadcast_to(np.eye(3), rots.shape)
    np.testing.assert_allclose(rots @ np.swapaxes(rots, -1, -2), identity, atol=1e-6)
    np.testing.assert_allclose(np.linalg.det(rots), 1.0, atol=1e-6)
    np.testing.assert_array_equal(frames[present][:, 3], [[0, 0, 0, 1]] * int(present.sum()))
    # Groups exist exactly where AF2 says: backbone..psi for the 20 types, chis per mask.
    expected = np.zeros((21, 8), dtype=bool)
    expected[:20, :4] = True
    expected[:20, 4:] = np.array(ref.chi_angles_mask, dtype=bool)
    np.testing.assert_array_equal(present, expected)


# ---------------------------------------------------------------------------------------
# Functions, on the same inputs
# ---------------------------------------------------------------------------------------


def _fasta_sequences() -> list[str]:
    seqs = []
    for path in sorted((SHARED_DATA / "msas").glob("*/query.fasta"))[:3]:
        lines = path.read_text().split()
        seqs.append("".join(line for line in lines if not line.startswith(">")))
    assert seqs, "no query.fasta files under shared data msas/"
    return seqs


def _a3m_rows(limit: int = 6) -> list[str]:
    path = sorted((SHARED_DATA / "msas").glob("*/non_pairing.a3m"))[0]
    rows = [line for line in path.read_text().splitlines() if line and line[0] != ">"]
    return rows[:limit]


def test_sequence_to_onehot_on_real_sequences():
    for seq in _fasta_sequences():
        for mapping, unknown_to_x in [
            (ref.restype_order_with_x, True),
            (ref.restype_order_with_x, False),
            (ref.HHBLITS_AA_TO_ID, False),
        ]:
            assert_same(
                rc.sequence_to_onehot(seq, mapping, unknown_to_x),
                ref.sequence_to_onehot(seq, mapping, unknown_to_x),
                f"{seq[:10]}...",
            )


def test_sequence_to_onehot_on_real_msa_rows():
    # AF2 drops a3m insertions (lower case) and encodes the rest in the HHblits alphabet.
    for row in _a3m_rows():
        aligned = "".join(c for c in row if not c.islower())
        assert "-" in aligned or aligned.isupper()
        assert_same(
            rc.sequence_to_onehot(aligned, rc.HHBLITS_AA_TO_ID),
            ref.sequence_to_onehot(aligned, ref.HHBLITS_AA_TO_ID),
            aligned[:10],
        )


@pytest.mark.parametrize("seq", ["", "A", "BJOUZX", "XXXX", "MKVLAGWY"])
def test_sequence_to_onehot_edge_cases(seq):
    for mapping in (ref.restype_order_with_x, ref.HHBLITS_AA_TO_ID):
        assert_same(rc.sequence_to_onehot(seq, mapping, True),
                    ref.sequence_to_onehot(seq, mapping, True), seq)


@pytest.mark.parametrize(
    "seq, mapping, unknown_to_x",
    [
        ("MKB", ref.restype_order, False),  # letter outside the mapping
        ("MK-", ref.restype_order_with_x, True),  # not an upper-case letter
        ("mkv", ref.restype_order_with_x, True),
        ("MK-", ref.HHBLITS_AA_TO_ID, True),  # the gap is in the mapping, still refused
        ("MKV", ref.restype_order, True),  # no 'X' to map unknowns to
        ("MKV", {"M": 0, "K": 2, "V": 3}, False),  # mapping values with a gap
    ],
)
def test_sequence_to_onehot_errors_match_reference(seq, mapping, unknown_to_x):
    with pytest.raises((KeyError, ValueError)) as theirs:
        ref.sequence_to_onehot(seq, mapping, unknown_to_x)
    with pytest.raises(type(theirs.value)) as ours:
        rc.sequence_to_onehot(seq, mapping, unknown_to_x)
    assert isinstance(ours.value, ValueError), "bad input must raise a ValueError"
    assert str(ours.value)


@pytest.mark.parametrize("atom_index", range(4))
def test_chi_angle_atom(atom_index):
    assert_same(rc.chi_angle_atom(atom_index), ref.chi_angle_atom(atom_index), "chi_angle_atom")


def test_chi_angle_atom_rejects_bad_index():
    with pytest.raises(ValueError, match="atom_index"):
        rc.chi_angle_atom(4)


def test_atom_id_to_type():
    for name in ref.atom_types + ["H", "HA", "HG21", "SE"]:
        assert rc.atom_id_to_type(name) == ref.atom_id_to_type(name)
    for bad in ["X1", "ZN", "1HB"]:
        with pytest.raises(ValueError):
            ref.atom_id_to_type(bad)
        with pytest.raises(ValueError, match=bad):
            rc.atom_id_to_type(bad)


def test_load_stereo_chemical_props():
    ours, theirs = rc.load_stereo_chemical_props(), ref.load_stereo_chemical_props()
    assert rc.load_stereo_chemical_props() is ours  # cached like AF2's
    names = ("residue_bonds", "residue_virtual_bonds", "residue_bond_angles")
    for name, mine, other in zip(names, ours, theirs, strict=True):
        assert sorted(mine) == sorted(other), name
        for res in other:
            assert len(mine[res]) == len(other[res]), (name, res)
            for a, b in zip(mine[res], other[res], strict=True):
                assert type(a).__name__ == type(b).__name__
                assert a[:-2] == b[:-2], (name, res, a, b)  # atom names, in order
                if name == "residue_virtual_bonds":  # derived: law of cosines + propagation
                    np.testing.assert_allclose(a[-2:], b[-2:], rtol=1e-12, err_msg=str(b))
                else:  # tabulated, converted to radians the same way: exact
                    assert_same(list(a[-2:]), list(b[-2:]), f"{name}[{res}] {b}")


@pytest.mark.parametrize("overlap, factor", [(1.5, 15), (0.0, 1), (0.4, 12.0)])
def test_make_atom14_dists_bounds(overlap, factor):
    ours = rc.make_atom14_dists_bounds(overlap, factor)
    theirs = ref.make_atom14_dists_bounds(overlap, factor)
    assert list(ours) == list(theirs)
    for key in theirs:
        assert ours[key].dtype == theirs[key].dtype and ours[key].shape == theirs[key].shape
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-6, atol=0, err_msg=key)


def test_make_atom14_dists_bounds_defaults():
    assert_same(rc.make_atom14_dists_bounds(), ref.make_atom14_dists_bounds(), "bounds")


# ---------------------------------------------------------------------------------------
# Uni-Fold additions, against where AF2 builds them
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ours, theirs",
    [
        ("restype_atom14_to_atom37", "RESTYPE_ATOM14_TO_ATOM37"),
        ("restype_atom37_to_atom14", "RESTYPE_ATOM37_TO_ATOM14"),
        ("restype_atom14_is_ambiguous", "RESTYPE_ATOM14_IS_AMBIGUOUS"),
        ("restype_atom14_renaming_matrices", "RENAMING_MATRICES"),
        ("restype_rigidgroup_base_atom37_idx", "RESTYPE_RIGIDGROUP_BASE_ATOM37_IDX"),
        ("restype_rigidgroup_mask", "RESTYPE_RIGIDGROUP_MASK"),
        ("chi_angles_atom_indices_with_unk", "CHI_ATOM_INDICES"),
        ("restype_atom37_mask", "RESTYPE_ATOM37_MASK"),
        ("restype_atom14_mask", "RESTYPE_ATOM14_MASK"),
    ],
)
def test_tables_match_all_atom_multimer(ours, theirs):
    assert_same(getattr(rc, ours), getattr(ref_all_atom, theirs), ours)


def test_rigidgroup_ambiguity_matches_reference_rule():
    # AF2 builds these inside all_atom_multimer.atom37_to_frames: the last chi group of
    # each residue with renaming swaps is ambiguous by a pi rotation about x.
    expected_flag = np.zeros((21, 8), dtype=np.float32)
    expected_rots = np.tile(np.eye(3, dtype=np.float32), (21, 8, 1, 1))
    for res in ref.residue_atom_renaming_swaps:
        aatype = ref.restype_order[ref.restype_3to1[res]]
        group = 3 + int(sum(ref.chi_angles_mask[aatype]))
        expected_flag[aatype, group] = 1
        expected_rots[aatype, group] = np.diag([1, -1, -1])
    assert_same(rc.restype_rigidgroup_is_ambiguous, expected_flag, "is_ambiguous")
    assert_same(rc.restype_rigidgroup_ambiguity_rots, expected_rots, "ambiguity_rots")


def test_pdb_chain_ids_and_gap_id():
    assert_same(rc.PDB_CHAIN_IDS, ref_protein.PDB_CHAIN_IDS, "PDB_CHAIN_IDS")
    assert_same(rc.PDB_MAX_CHAINS, ref_protein.PDB_MAX_CHAINS, "PDB_MAX_CHAINS")
    assert rc.MSA_GAP_ID == ref.HHBLITS_AA_TO_ID["-"] == ref.restypes_with_x_and_gap.index("-")


def test_atom14_atom37_maps_round_trip():
    for aatype in range(20):
        mask14 = rc.restype_atom14_mask[aatype].astype(bool)
        idx37 = rc.restype_atom14_to_atom37[aatype][mask14]
        assert rc.restype_atom37_mask[aatype][idx37].all()
        np.testing.assert_array_equal(rc.restype_atom37_to_atom14[aatype][idx37],
                                      np.flatnonzero(mask14))


# ---------------------------------------------------------------------------------------
# Self-consistency, no reference needed
# ---------------------------------------------------------------------------------------


def _rot_x(angle: float) -> np.ndarray:
    rot = np.eye(4)
    rot[1:3, 1:3] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    return rot


def _ideal_residue(resname: str, chi: float) -> dict[str, np.ndarray]:
    """Atoms of an ideal residue in its backbone frame, every chi set to ``chi``.

    Composes the default frames as Suppl. Alg. 24 does: groups 1-4 hang off the
    backbone, chi k+1 off chi k, each rotated about its x axis by its torsion.
    """
    default = rc.restype_rigid_group_default_frame[rc.resname_to_idx[resname]]
    default = default.astype(np.float64)
    to_backbone = [default[g] for g in range(4)] + [default[4] @ _rot_x(chi)]
    for k in range(5, 8):
        to_backbone.append(to_backbone[k - 1] @ default[k] @ _rot_x(chi))
    return {
        atom: (to_backbone[group] @ np.append(pos, 1.0))[:3]
        for atom, group, pos in rc.rigid_group_atom_positions[resname]
    }


@pytest.mark.parametrize("resname", rc.resnames[:-1])
def test_ideal_geometry_reproduces_tabulated_bonds(resname):
    # Extended side chains (all chi = 180 degrees) cannot clash with themselves. PRO's
    # ring only closes near chi = 0, and its CD-N closure depends on the pucker, so
    # that bond and the two angles at it are only held to the violation-loss bounds.
    atoms = _ideal_residue(resname, chi=0.0 if resname == "PRO" else np.pi)
    bonds, virtual_bonds, angles = rc.load_stereo_chemical_props()
    ring_closure = {frozenset(("CD", "N")), frozenset(("CG", "N")), frozenset(("CA", "CD"))}
    for bond in bonds[resname]:
        if frozenset((bond.atom1_name, bond.atom2_name)) in ring_closure:
            continue
        dist = np.linalg.norm(atoms[bond.atom1_name] - atoms[bond.atom2_name])
        assert abs(dist - bond.length) < 3 * bond.stddev, (resname, bond, dist)
    for bond in virtual_bonds[resname]:
        if frozenset((bond.atom1_name, bond.atom2_name)) in ring_closure:
            continue
        dist = np.linalg.norm(atoms[bond.atom1_name] - atoms[bond.atom2_name])
        assert abs(dist - bond.length) < 4 * bond.stddev, (resname, bond, dist)
    assert len(virtual_bonds[resname]) == len(angles[resname])
    # Every atom pair respects the bounds of the violation loss.
    bounds = rc.make_atom14_dists_bounds()
    names = rc.restype_name_to_atom14_names[resname]
    aatype = rc.resname_to_idx[resname]
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if a and b and i != j:
                dist = np.linalg.norm(atoms[a] - atoms[b])
                assert bounds["lower_bound"][aatype, i, j] <= dist, (resname, a, b, dist)
                assert dist <= bounds["upper_bound"][aatype, i, j], (resname, a, b, dist)


def test_renaming_matrices_swap_symmetric_atoms():
    positions = np.random.default_rng(0).normal(size=(14, 3))
    for res, swaps in rc.residue_atom_renaming_swaps.items():
        aatype = rc.resname_to_idx[res]
        names = rc.restype_name_to_atom14_names[res]
        renamed = rc.restype_atom14_renaming_matrices[aatype] @ positions
        for atom, partner in swaps.items():
            i, j = names.index(atom), names.index(partner)
            np.testing.assert_array_equal(renamed[i], positions[j])
            np.testing.assert_array_equal(renamed[j], positions[i])


def test_import_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None; "
        "import data_pipeline.residue_constants as rc; "
        "assert 'torch' not in {m.split('.')[0] for m in sys.modules if sys.modules[m]}; "
        "assert 'uni_fold' not in sys.modules; print(rc.restype_num)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "20"
