"""`AmberRelaxation`: relax a predicted `Protein` and write it as PDB text.

The defaults are the settings of AF2's `run_alphafold.py`: no L-BFGS iteration limit,
tolerance 2.39 kcal/mol/A, restraint stiffness 10 kcal/mol/A^2 on heavy atoms, no residue
excluded up front, at most 3 violation-driven rounds (see `amber_minimize`).

The output keeps the input's chains, residue numbers and insertion codes, contains the
hydrogens and terminal OXT atoms added for the force field, and carries the input
B-factors: each input atom keeps its own, added atoms get their residue's CA value, so for
a prediction every atom of a residue holds that residue's pLDDT.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from data_pipeline import residue_constants as rc
from data_pipeline.protein import Protein, from_pdb_string
from uni_fold.relax import amber_minimize
from uni_fold.relax.cleanup import pdb_atom_line

logger = logging.getLogger(__name__)


def _chain_letters(prot: Protein) -> list[str]:
    ids = list(prot.chain_ids)
    if all(len(c) == 1 for c in ids):
        return ids
    if len(ids) > rc.PDB_MAX_CHAINS:
        raise ValueError(f"PDB output holds at most {rc.PDB_MAX_CHAINS} chains; the Protein "
                         f"has {len(ids)}")
    new = list(rc.PDB_CHAIN_IDS[:len(ids)])
    logger.warning("renaming chains %s to %s for PDB output", ids, new)
    return new


def relaxed_pdb(prot: Protein, result: amber_minimize.RelaxResult) -> str:
    """PDB text of the relaxed structure, hydrogens included.

    Args:
        prot: the input `Protein` (names, numbering, B-factors).
        result: `amber_minimize.run_pipeline(prot, ...)`.
    """
    structure = result.structure
    atoms_of_row: dict[int, list] = {}
    for atom in structure.topology.atoms():
        atoms_of_row.setdefault(int(structure.residue_rows[atom.residue.index]), []).append(atom)
    letters = _chain_letters(prot)
    relaxed = result.protein
    lines: list[str] = []
    serial = 0
    for row in range(prot.num_res):
        resname = rc.resnames[prot.aatype[row]]
        chain = letters[prot.chain_index[row]]
        resseq, icode = int(prot.residue_index[row]), str(prot.insertion_code[row])
        fallback_b = amber_minimize.residue_bfactor(prot, row)
        if row in atoms_of_row:
            records = []
            for atom in atoms_of_row[row]:
                slot = rc.atom_order.get(atom.name)
                kept = slot is not None and prot.atom_mask[row, slot] > 0.5
                bfactor = float(prot.b_factors[row, slot]) if kept else fallback_b
                records.append((atom.name, structure.positions[atom.index], bfactor,
                                atom.element.symbol))
        else:  # left out of the minimisation: input atoms, unchanged
            records = [(rc.atom_types[s], relaxed.atom_positions[row, s],
                        float(prot.b_factors[row, s]), rc.atom_types[s][0])
                       for s in np.flatnonzero(relaxed.atom_mask[row] > 0.5)]
        for name, xyz, bfactor, element in records:
            serial += 1
            lines.append(pdb_atom_line(serial, name, resname, chain, resseq, icode, xyz, bfactor,
                                    element))
        if row == prot.num_res - 1 or prot.chain_index[row + 1] != prot.chain_index[row]:
            serial += 1
            lines.append(f"TER   {serial % 100000:>5}      {resname:>3} {chain}{resseq:>4}"
                         f"{icode or ' '}")
    lines.append("END")
    return "\n".join(line.ljust(80) for line in lines) + "\n"


def _heavy_atom_rmsd(a: Protein, b: Protein) -> float:
    """RMSD (A) over the heavy atoms present in `a`, without superposition."""
    present = a.atom_mask > 0.5
    diff = a.atom_positions[present] - b.atom_positions[present]
    return float(np.sqrt(np.mean(np.sum(diff.astype(np.float64) ** 2, axis=-1))))


class AmberRelaxation:
    """AF2's Amber relaxation of a structure.

    Args:
        max_iterations: L-BFGS iterations per minimisation; 0 means until convergence.
        tolerance: kcal/mol/A, RMS-force convergence threshold.
        stiffness: kcal/mol/A^2, spring constant of the heavy-atom restraints.
        exclude_residues: rows (0-based) whose atoms are never restrained.
        max_outer_iterations: most minimise-then-check rounds; residues that still violate
            after a round are released from their restraints in the next.
        use_gpu: run OpenMM on CUDA instead of the CPU.
        platform: any other OpenMM platform by name ("CPU", "CUDA", "OpenCL", "Reference");
            overrides `use_gpu`.
    """

    def __init__(self, *, max_iterations: int = 0, tolerance: float = 2.39,
                 stiffness: float = 10.0, exclude_residues: Sequence[int] = (),
                 max_outer_iterations: int = 3, use_gpu: bool = False,
                 platform: str | None = None) -> None:
        if max_iterations < 0:
            raise ValueError(f"max_iterations must be >= 0 (0 = no limit), got {max_iterations}")
        if tolerance <= 0:
            raise ValueError(f"tolerance must be > 0 kcal/mol/A, got {tolerance}")
        if stiffness < 0:
            raise ValueError(f"stiffness must be >= 0 kcal/mol/A^2, got {stiffness}")
        if max_outer_iterations < 1:
            raise ValueError(f"max_outer_iterations must be >= 1, got {max_outer_iterations}")
        self._max_iterations = max_iterations
        self._tolerance = tolerance
        self._stiffness = stiffness
        self._exclude_residues = list(exclude_residues)
        self._max_outer_iterations = max_outer_iterations
        self._platform = amber_minimize.platform_name(use_gpu, platform)

    def process(self, prot: Protein) -> tuple[str, dict[str, object], list[float]]:
        """Relax `prot`.

        Returns:
            relaxed PDB text; debug data (AF2's `initial_energy`, `final_energy` in kcal/mol
            and `attempts`, `rmsd` in A, of the last minimisation, plus
            `heavy_atom_rmsd_to_input` in A, `num_outer_iterations`, `iterations`,
            `residue_violations`, `time_s`); the per-residue violation mask [N_res] of
            the relaxed structure (all 0.0 when the relaxation succeeded).
        """
        if not isinstance(prot, Protein):
            raise TypeError(f"process() takes a data_pipeline.protein.Protein, got "
                            f"{type(prot).__name__}; read files with data_pipeline.protein")
        start = time.perf_counter()
        result = amber_minimize.run_pipeline(
            prot, stiffness=self._stiffness, platform=self._platform,
            max_outer_iterations=self._max_outer_iterations, max_iterations=self._max_iterations,
            tolerance=self._tolerance, exclude_residues=self._exclude_residues)
        pdb_str = relaxed_pdb(prot, result)
        written = from_pdb_string(pdb_str, source="relaxed PDB")
        lost = (prot.atom_mask > 0.5) & (written.atom_mask < 0.5)
        if lost.any():
            rows = np.flatnonzero(lost.any(axis=-1))
            raise RuntimeError(f"relaxed PDB lacks input atoms in residue rows {rows.tolist()}")
        debug_data = {
            "initial_energy": result.einit,
            "final_energy": result.efinal,
            "attempts": result.attempts,
            "rmsd": result.rmsd,
            "heavy_atom_rmsd_to_input": _heavy_atom_rmsd(prot, result.protein),
            "num_outer_iterations": len(result.iterations),
            "iterations": result.iterations,
            "residue_violations": result.metrics["residue_violations"].tolist(),
            "time_s": time.perf_counter() - start,
        }
        violations = result.violations["total_per_residue_violations_mask"].tolist()
        if result.metrics["num_residue_violations"]:
            logger.warning("%d residue(s) still violate after relaxation: rows %s",
                           result.metrics["num_residue_violations"],
                           debug_data["residue_violations"])
        return pdb_str, debug_data, violations
