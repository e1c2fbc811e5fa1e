"""Amber relaxation (uni_fold.relax) on real structures with an introduced clash.

The villin headpiece (1VII, 36 residues) gets one side-chain atom pushed into a
neighbouring residue: Leu 75 CD2 is put 1.0 A from the backbone O of Lys 71, which is both
a between-residue clash and a stretched CG-CD2 bond. After relaxation with AF2's settings
the structure must be free of violations (by our check, by the AF2 reference's check and
by a plain distance scan), close to the input, and carry the input's B-factors. The same
input goes through the reference `alphafold.relax.relax.AmberRelaxation` for comparison.
The violation check itself is compared with AF2's `find_violations` mask for mask.
"""
from __future__ import annotations

import dataclasses
import io
import random
import time

import gemmi
import numpy as np
import pytest

pytest.importorskip("openmm", reason="the `relax` extra is not installed "
                    "(pip install 'uni-fold[relax]' installs OpenMM and pdbfixer)")
pytest.importorskip("pdbfixer", reason="the `relax` extra is not installed "
                    "(pip install 'uni-fold[relax]' installs OpenMM and pdbfixer)")

from alphafold.common import protein as af2_protein  # noqa: E402
from alphafold.relax import amber_minimize as af2_minimize  # noqa: E402
from alphafold.relax import relax as af2_relax  # noqa: E402

import tests.reference_utils  # noqa: E402,F401  (XLA's cheap compile settings for JAX)
from data_pipeline import protein as protein_lib  # noqa: E402
from data_pipeline import residue_constants as rc  # noqa: E402
from tests.shared import SHARED_DATA  # noqa: E402
from uni_fold.relax import AmberRelaxation, amber_minimize, cleanup, violations  # noqa: E402

VILLIN = SHARED_DATA / "structures" / "pdb" / "1vii.pdb"
TRP_CAGE = SHARED_DATA / "structures" / "mmcif" / "1l2y.cif"
# The clash: (row, atom) moved to CLASH_DISTANCE from (row, atom) of another residue.
MOVED, TARGET = (34, "CD2"), (30, "O")  # Leu 75 CD2 -> Lys 71 O
CLASH_DISTANCE = 1.0
AF2_SETTINGS = dict(max_iterations=0, tolerance=2.39, stiffness=10.0, exclude_residues=[],
                    max_outer_iterations=3, use_gpu=False)


def _take_rows(prot: protein_lib.Protein, rows: np.ndarray) -> protein_lib.Protein:
    fields = ("atom_positions", "aatype", "atom_mask", "residue_index", "chain_index",
              "b_factors", "insertion_code")
    return dataclasses.replace(prot, **{f: getattr(prot, f)[rows] for f in fields})


def _heavy_rmsd(a: protein_lib.Protein, b: protein_lib.Protein, mask: np.ndarray) -> float:
    d = (a.atom_positions - b.atom_positions)[mask].astype(np.float64)
    return float(np.sqrt(np.mean(np.sum(d * d, axis=-1))))


def _to_af2(prot: protein_lib.Protein) -> af2_protein.Protein:
    return af2_protein.from_pdb_string(protein_lib.to_pdb(prot))


def _af2_violations(prot: protein_lib.Protein) -> dict[str, np.ndarray]:
    found, _ = af2_minimize.find_violations(_to_af2(prot))
    return {
        "connections_per_residue_violation_mask":
            found["between_residues"]["connections_per_residue_violation_mask"],
        "clashes_per_atom_clash_mask": found["between_residues"]["clashes_per_atom_clash_mask"],
        "within_residues_per_atom_violations": found["within_residues"]["per_atom_violations"],
        "total_per_residue_violations_mask": found["total_per_residue_violations_mask"],
    }


@pytest.fixture(scope="module")
def villin() -> protein_lib.Protein:
    """1VII with a per-residue pLDDT-like value in every B-factor slot."""
    prot = protein_lib.from_pdb(VILLIN)
    plddt = np.random.default_rng(7).uniform(40.0, 95.0, prot.num_res).astype(np.float32)
    return dataclasses.replace(prot, b_factors=np.repeat(plddt[:, None], 37, axis=1))


@pytest.fixture(scope="module")
def clashed(villin) -> protein_lib.Protein:
    positions = villin.atom_positions.copy()
    (row, name), (other_row, other_name) = MOVED, TARGET
    assert rc.resnames[villin.aatype[row]] == "LEU" and villin.residue_index[row] == 75
    a = positions[row, rc.atom_order[name]]
    b = positions[other_row, rc.atom_order[other_name]]
    positions[row, rc.atom_order[name]] = b + (a - b) / np.linalg.norm(a - b) * CLASH_DISTANCE
    return dataclasses.replace(villin, atom_positions=positions)


@pytest.fixture(scope="module")
def relaxed(clashed):
    start = time.perf_counter()
    pdb_str, debug, viol = AmberRelaxation(**AF2_SETTINGS).process(clashed)
    print(f"\nrelax 1VII with clash: {time.perf_counter() - start:.2f} s, debug "
          f"{ {k: v for k, v in debug.items() if k != 'iterations'} }")
    return pdb_str, debug, viol, protein_lib.from_pdb_string(pdb_str)


def test_violation_check_matches_af2(villin, clashed):
    shifted = villin.atom_positions.copy()
    shifted[20:] += np.array([0.9, 0.0, 0.0], np.float32)  # breaks the 20-21 peptide bond
    cases = {
        "1vii": villin,
        "1vii clashed": clashed,
        "1vii chain broken": dataclasses.replace(villin, atom_positions=shifted),
        "1l2y": protein_lib.from_mmcif(TRP_CAGE),
    }
    for label, prot in cases.items():
        ours = violations.find_structural_violations(prot)
        ref = _af2_violations(prot)
        for key, value in ref.items():
            np.testing.assert_array_equal(ours[key], np.asarray(value), err_msg=f"{label}: {key}")
    # The cases do exercise every kind of violation.
    clash = violations.find_structural_violations(clashed)
    assert set(np.flatnonzero(clash["total_per_residue_violations_mask"])) == {30, 34}
    assert clash["clashes_per_atom_clash_mask"][34].any()
    assert clash["within_residues_per_atom_violations"][34].any()
    broken = violations.find_structural_violations(cases["1vii chain broken"])
    assert np.flatnonzero(broken["connections_per_residue_violation_mask"]).tolist() == [19, 20]
    clean = violations.find_structural_violations(villin)
    assert not clean["total_per_residue_violations_mask"].any()


def _close_pairs(prot: protein_lib.Protein, tolerance: float = 1.5) -> list[tuple]:
    """Heavy-atom pairs of different residues closer than their vdW radii sum - tolerance
    (the peptide C-N bond excepted); a plain scan, independent of the module under test."""
    rows, slots = np.nonzero(prot.atom_mask > 0.5)
    xyz = prot.atom_positions[rows, slots].astype(np.float64)
    radius = np.array([rc.van_der_waals_radius[rc.atom_types[s][0]] for s in slots])
    dist = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    bad = []
    for i, j in zip(*np.nonzero(dist < radius[:, None] + radius[None] - tolerance), strict=True):
        if rows[i] >= rows[j]:
            continue
        names = (rc.atom_types[slots[i]], rc.atom_types[slots[j]])
        if rows[j] == rows[i] + 1 and names == ("C", "N"):
            continue
        bad.append((rows[i], names[0], rows[j], names[1], dist[i, j]))
    return bad


def test_relaxation_removes_the_clash(clashed, relaxed):
    _, debug, viol, out = relaxed
    assert _close_pairs(clashed), "the introduced clash must be visible to the scan"
    assert _close_pairs(out) == []
    assert len(viol) == clashed.num_res and not any(viol)
    assert debug["residue_violations"] == []
    ref = _af2_violations(out)
    assert not np.asarray(ref["total_per_residue_violations_mask"]).any()
    assert debug["initial_energy"] > 1e5 > 0 > debug["final_energy"]  # the clash costs energy


def test_bonds_near_ideal_after_relaxation(clashed, relaxed):
    out = relaxed[3]
    bonds, _, _ = rc.load_stereo_chemical_props()
    deviations = []
    for row in range(out.num_res):
        for bond in bonds[rc.resnames[out.aatype[row]]]:
            a = out.atom_positions[row, rc.atom_order[bond.atom1_name]]
            b = out.atom_positions[row, rc.atom_order[bond.atom2_name]]
            deviations.append(abs(np.linalg.norm(a - b) - bond.length))
    c, n = out.atom_positions[:-1, rc.atom_order["C"]], out.atom_positions[1:, rc.atom_order["N"]]
    peptide = np.abs(np.linalg.norm(c - n, axis=-1) - rc.between_res_bond_length_c_n[0])
    row, name = MOVED
    moved_bond = np.linalg.norm(clashed.atom_positions[row, rc.atom_order[name]]
                                - clashed.atom_positions[row, rc.atom_order["CG"]])
    print(f"max bond deviation {max(deviations):.3f} A, peptide {peptide.max():.3f} A "
          f"(stretched CG-CD2 was {moved_bond:.2f} A)")
    assert moved_bond > 2.0
    assert max(deviations) < 0.1
    assert peptide.max() < 0.1


def test_small_change_and_moved_atom_returns(villin, clashed, relaxed):
    _, debug, _, out = relaxed
    mask = clashed.atom_mask > 0.5
    to_input = _heavy_rmsd(out, clashed, mask)
    assert debug["heavy_atom_rmsd_to_input"] == pytest.approx(to_input, abs=1e-4)
    others = mask.copy()
    row, slot = MOVED[0], rc.atom_order[MOVED[1]]
    others[row, slot] = False
    to_original = _heavy_rmsd(out, villin, mask)
    deposited = villin.atom_positions[row, slot]
    moved_back = np.linalg.norm(out.atom_positions[row, slot] - deposited)
    moved_by = np.linalg.norm(clashed.atom_positions[row, slot] - deposited)
    print(f"heavy-atom RMSD to clashed input {to_input:.3f} A, to the deposited structure "
          f"{to_original:.3f} A, moved atom {moved_back:.2f} A from its deposited position "
          f"(was {moved_by:.2f} A)")
    assert _heavy_rmsd(out, clashed, others) < 0.5
    assert to_original < 0.5
    assert moved_back < 1.0
    assert 0 < debug["rmsd"] < 1.0


def test_output_keeps_residues_atoms_and_plddt(clashed, relaxed):
    pdb_str, _, _, out = relaxed
    assert out.sequence() == clashed.sequence()
    np.testing.assert_array_equal(out.residue_index, clashed.residue_index)
    assert out.chain_ids == clashed.chain_ids
    expected_mask = clashed.atom_mask.copy()
    expected_mask[-1, rc.atom_order["OXT"]] = 1.0  # the C terminus gets its second oxygen
    np.testing.assert_array_equal(out.atom_mask, expected_mask)
    # Every atom, hydrogens included, carries its residue's pLDDT.
    st = gemmi.read_pdb_string(pdb_str)
    plddt = clashed.b_factors[:, rc.atom_order["CA"]]
    residues = list(st[0]["A"])
    assert len(residues) == clashed.num_res
    num_h = 0
    for res, value in zip(residues, plddt, strict=True):
        for atom in res:
            num_h += atom.element.name == "H"
            assert atom.b_iso == pytest.approx(float(value), abs=0.006), (res.seqid, atom.name)
    assert num_h > 250  # hydrogens were added and written


def test_matches_reference_relaxation(clashed, relaxed):
    _, debug, _, out = relaxed
    ref_runs = []
    saved = random.getstate()
    try:
        for seed in range(3):  # pdbfixer places hydrogens from Python's global random
            random.seed(seed)
            pdb_str, ref_debug, ref_viol = af2_relax.AmberRelaxation(**AF2_SETTINGS).process(
                prot=_to_af2(clashed))
            assert not any(ref_viol)
            ref_runs.append((ref_debug, protein_lib.from_pdb_string(pdb_str)))
    finally:
        random.setstate(saved)
    mask = clashed.atom_mask > 0.5
    ref_final = np.array([d["final_energy"] for d, _ in ref_runs])
    print(f"final energy: ours {debug['final_energy']:.1f}, reference {ref_final.round(1)} "
          f"kcal/mol; rmsd ours {debug['rmsd']:.3f}, reference "
          f"{[round(float(d['rmsd']), 3) for d, _ in ref_runs]} A; ours vs reference heavy "
          f"atoms {[round(_heavy_rmsd(out, p, mask), 3) for _, p in ref_runs]} A")
    for ref_debug, ref_out in ref_runs:
        # Same heavy atoms, force field and restraints: the clash energy agrees closely.
        assert debug["initial_energy"] == pytest.approx(ref_debug["initial_energy"], rel=2e-3)
        assert 0.5 < debug["rmsd"] / ref_debug["rmsd"] < 2.0
        assert _heavy_rmsd(out, ref_out, mask) < 0.25
    # Final energies depend on where hydrogens start; ours is in the reference's range.
    assert abs(debug["final_energy"] - ref_final.mean()) < 0.3 * abs(ref_final.mean())


def test_outer_iterations_release_violating_residues(clashed):
    """Stiff restraints keep the clash after round one; the violating residue loses its
    restraints and round two resolves it, as in the reference."""
    settings = dict(AF2_SETTINGS, stiffness=1000.0)
    pdb_str, debug, viol = AmberRelaxation(**settings).process(clashed)
    first, second = debug["iterations"]
    assert first["num_residue_violations"] >= 1 and first["num_exclusions"] == 0
    assert second["num_exclusions"] == first["num_residue_violations"]
    assert second["num_restrained"] < first["num_restrained"]
    assert second["num_residue_violations"] == 0 and not any(viol)

    random.seed(0)
    ref = af2_minimize.run_pipeline(prot=_to_af2(clashed), stiffness=1000.0, use_gpu=False,
                                    max_outer_iterations=3, tolerance=2.39)
    assert ref["iteration"] == 1 and ref["num_residue_violations"] == 0
    assert ref["num_exclusions"] == first["num_residue_violations"]
    ref_out = protein_lib.from_pdb_string(ref["min_pdb"])
    mask = clashed.atom_mask > 0.5
    ours_out = protein_lib.from_pdb_string(pdb_str)
    print(f"stiffness 1000: final energy ours {debug['final_energy']:.1f}, reference "
          f"{ref['efinal']:.1f} kcal/mol; heavy atoms ours vs reference "
          f"{_heavy_rmsd(ours_out, ref_out, mask):.3f} A")
    assert _heavy_rmsd(ours_out, ref_out, mask) < 0.1
    # Hydrogens start at random: the reference's own final energies spread by ~50 kcal/mol.
    assert abs(debug["final_energy"] - ref["efinal"]) < 60.0


def test_numbering_gaps_become_segment_ends():
    """Trp-cage without residues 10 and 12: Asp 9 ends a segment (gets OXT), Gly 11 is a
    lone residue (kept as is), Ser 13 starts a new segment; no bond across the gaps."""
    trp = protein_lib.from_mmcif(TRP_CAGE)
    gapped = _take_rows(trp, np.array([i for i in range(trp.num_res) if i not in (9, 11)]))
    pdb_str, debug, viol = AmberRelaxation(**AF2_SETTINGS).process(gapped)
    out = protein_lib.from_pdb_string(pdb_str)
    np.testing.assert_array_equal(out.residue_index, gapped.residue_index)
    lone = 9  # row of Gly 11 in the gapped protein
    np.testing.assert_allclose(out.atom_positions[lone], gapped.atom_positions[lone], atol=1e-3)
    oxt = np.flatnonzero(out.atom_mask[:, rc.atom_order["OXT"]])
    assert oxt.tolist() == [8, gapped.num_res - 1]
    assert not any(viol) and _close_pairs(out) == []
    assert debug["heavy_atom_rmsd_to_input"] < 0.5


def test_restraint_sets_and_exclusions():
    trp = protein_lib.from_mmcif(TRP_CAGE)
    structure = cleanup.clean_protein(trp)
    heavy = sum(atom.element.symbol != "H" for atom in structure.topology.atoms())
    assert heavy == int((trp.atom_mask > 0.5).sum())  # the deposited model has its OXT
    out = amber_minimize.minimize(structure, max_iterations=5)
    assert out["num_restrained"] == heavy
    out = amber_minimize.minimize(structure, max_iterations=5, exclude_residues={0, 1})
    assert out["num_restrained"] == heavy - int((trp.atom_mask[:2] > 0.5).sum())
    out = amber_minimize.minimize(structure, max_iterations=5, restraint_set="c_alpha")
    assert out["num_restrained"] == trp.num_res
    assert out["efinal"] < out["einit"]


def test_cleanup_is_reproducible():
    trp = protein_lib.from_mmcif(TRP_CAGE)
    a, b = cleanup.clean_protein(trp), cleanup.clean_protein(trp)
    assert [x.name for x in a.topology.atoms()] == [x.name for x in b.topology.atoms()]
    # Hydrogens start from seeded positions; only the CPU platform's summation order varies.
    assert np.abs(a.positions - b.positions).max() < 0.05


def test_bad_input_is_rejected():
    trp = protein_lib.from_mmcif(TRP_CAGE)
    relaxer = AmberRelaxation(**AF2_SETTINGS)
    with pytest.raises(ValueError, match="unknown type X"):
        relaxer.process(dataclasses.replace(trp, aatype=np.where(np.arange(20) == 3, 20,
                                                                  trp.aatype)))
    empty = trp.atom_mask.copy()
    empty[5] = 0.0
    with pytest.raises(ValueError, match="without atoms"):
        relaxer.process(dataclasses.replace(trp, atom_mask=empty))
    with pytest.raises(TypeError, match="Protein"):
        relaxer.process(io.StringIO(protein_lib.to_pdb(trp)))
    with pytest.raises(ValueError, match="exclude_residues"):
        AmberRelaxation(exclude_residues=[25]).process(trp)
    with pytest.raises(ValueError, match="max_outer_iterations"):
        AmberRelaxation(max_outer_iterations=0)
    with pytest.raises(ValueError, match="tolerance"):
        AmberRelaxation(tolerance=0.0)
    with pytest.raises(ValueError, match="restraint_set"):
        amber_minimize.minimize(cleanup.clean_protein(trp), restraint_set="backbone")
    with pytest.raises(ValueError, match="not available"):
        AmberRelaxation(platform="NoSuchPlatform")
    single = _take_rows(trp, np.array([0]))
    with pytest.raises(ValueError, match="segment of its own"):
        relaxer.process(single)


def test_missing_side_chain_is_rebuilt_and_chains_stay_apart():
    """Trp 6 of Trp-cage without its indole ring (pdbfixer rebuilds it; the new atoms take
    the residue's pLDDT), and two chains of the Abeta fibril 2BEG (each gets its own
    termini; no bond between them)."""
    trp = protein_lib.from_mmcif(TRP_CAGE)
    plddt = np.linspace(50.0, 90.0, trp.num_res, dtype=np.float32)
    ring = [rc.atom_order[n] for n in ("CD1", "CD2", "NE1", "CE2", "CE3", "CZ2", "CZ3", "CH2")]
    mask = trp.atom_mask.copy()
    mask[5, ring] = 0.0
    truncated = dataclasses.replace(trp, atom_mask=mask,
                                    b_factors=np.repeat(plddt[:, None], 37, axis=1))
    pdb_str, _, viol = AmberRelaxation(**AF2_SETTINGS).process(truncated)
    out = protein_lib.from_pdb_string(pdb_str)
    np.testing.assert_array_equal(out.atom_mask, trp.atom_mask)
    rebuilt = np.linalg.norm(out.atom_positions[5, ring] - trp.atom_positions[5, ring], axis=-1)
    print(f"rebuilt indole ring: max {rebuilt.max():.2f} A from the deposited atoms")
    assert rebuilt.max() < 1.0
    np.testing.assert_allclose(out.b_factors[5, ring], plddt[5], atol=0.006)
    assert not any(viol)

    fibril = protein_lib.from_mmcif(SHARED_DATA / "structures" / "mmcif" / "2beg.cif")
    pair = fibril.select_chains(["A", "B"])
    pdb_str, debug, viol = AmberRelaxation(**AF2_SETTINGS).process(pair)
    out = protein_lib.from_pdb_string(pdb_str)
    assert out.chain_ids == ("A", "B") and out.sequences() == pair.sequences()
    ends = np.flatnonzero(out.atom_mask[:, rc.atom_order["OXT"]])
    assert ends.tolist() == [int(np.sum(pair.chain_index == 0)) - 1, pair.num_res - 1]
    assert not any(viol) and debug["heavy_atom_rmsd_to_input"] < 0.5
