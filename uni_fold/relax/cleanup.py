"""Prepare a `Protein` for an Amber force field with pdbfixer.

Force-field templates need complete residues with hydrogens and proper termini. This
module writes the protein as PDB text, lets pdbfixer replace nonstandard residues, drop
heterogens and water, add missing heavy atoms (including each terminal OXT) and add
hydrogens at pH 7, and returns the OpenMM topology and positions, with each topology
residue tied back to its row in the `Protein`.

Unlike a plain `pdbfixer` run, residues are never invented: unobserved residues (numbering
gaps) are not modelled. Instead a chain is cut into *segments* at each numbering gap, so
that OpenMM does not bond residues across the gap, and every segment gets its own termini.
A segment of a single residue has no Amber template (it would be both N- and C-terminal);
such residues are left out of the minimisation and keep their input coordinates.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import random
from collections.abc import Iterator

import numpy as np

from data_pipeline import residue_constants as rc
from data_pipeline.protein import Protein
from uni_fold.relax import MISSING_EXTRA
from uni_fold.relax.violations import peptide_bonded_to_next

try:
    import pdbfixer
    from openmm import app as openmm_app
    from openmm import unit
except ImportError as e:  # pragma: no cover - only without the extra
    raise ImportError(MISSING_EXTRA) from e

logger = logging.getLogger(__name__)

LENGTH = unit.angstroms
_PH = 7.0
# Largest coordinate change accepted for an input atom during cleanup: the PDB text
# written for pdbfixer has 3 decimals.
_MAX_CLEANUP_SHIFT = 1e-3


@dataclasses.dataclass
class CleanedStructure:
    """A protein ready for OpenMM.

    Attributes:
        topology: `openmm.app.Topology` with hydrogens and terminal atoms.
        positions: [N_atoms, 3] float64, Angstrom, in topology atom order.
        residue_rows: [N_top_res] int, the `Protein` row of each topology residue.
        frozen_rows: rows of the `Protein` left out (single-residue segments).
        alterations: what pdbfixer changed (nonstandard residues, removed heterogens,
            missing heavy atoms and terminals, counted per residue row).
    """

    topology: openmm_app.Topology
    positions: np.ndarray
    residue_rows: np.ndarray
    frozen_rows: np.ndarray
    alterations: dict[str, object]

    def with_positions(self, positions: np.ndarray) -> CleanedStructure:
        """The same structure at new `positions` [N_atoms, 3] (Angstrom)."""
        positions = np.asarray(positions, np.float64)
        if positions.shape != self.positions.shape:
            raise ValueError(f"positions must have shape {list(self.positions.shape)}, got "
                             f"{list(positions.shape)}")
        return dataclasses.replace(self, positions=positions)


def segments(prot: Protein) -> list[np.ndarray]:
    """Rows of each run of peptide-bonded residues (see `peptide_bonded_to_next`)."""
    if prot.num_res == 0:
        return []
    cuts = np.flatnonzero(~peptide_bonded_to_next(prot)) + 1
    return np.split(np.arange(prot.num_res), cuts)


def check_relaxable(prot: Protein) -> None:
    """Raises ValueError if `prot` cannot be given to the Amber force field."""
    if prot.num_res == 0:
        raise ValueError("cannot relax a Protein with no residues")
    unknown = np.flatnonzero(prot.aatype == rc.unk_restype_index)
    if unknown.size:
        raise ValueError(
            f"cannot relax residues of unknown type X (rows {unknown[:10].tolist()}): the "
            "Amber force field has templates for the 20 standard amino acids only; mutate "
            "or remove them first"
        )
    empty = np.flatnonzero(prot.atom_mask.sum(axis=-1) < 0.5)
    if empty.size:
        raise ValueError(
            f"cannot relax residues without atoms (rows {empty[:10].tolist()}); remove "
            "them from the Protein first"
        )


def pdb_atom_line(serial: int, name: str, resname: str, chain: str, resseq: int, icode: str,
               xyz: np.ndarray, bfactor: float, element: str) -> str:
    """One fixed-column PDB ATOM record (atom names of < 4 characters start in column 14)."""
    padded = name if len(name) >= 4 or len(element) > 1 else " " + name
    x, y, z = (float(v) for v in xyz)
    return (f"ATOM  {serial % 100000:>5} {padded:<4} {resname:>3} {chain}{resseq:>4}"
            f"{icode or ' '}   {x:8.3f}{y:8.3f}{z:8.3f}{1.0:6.2f}{bfactor:6.2f}"
            f"          {element:>2}  ")


def segments_pdb(prot: Protein, segment_rows: list[np.ndarray]) -> str:
    """PDB text of the chosen segments, each written as its own chain (TER after each).

    Chain letters cycle through `PDB_CHAIN_IDS` so neighbouring segments always differ;
    residue numbers and insertion codes are the input's.
    """
    lines: list[str] = []
    serial = 0
    for k, rows in enumerate(segment_rows):
        chain = rc.PDB_CHAIN_IDS[k % rc.PDB_MAX_CHAINS]
        for i in rows:
            resname = rc.resnames[prot.aatype[i]]
            for slot in np.flatnonzero(prot.atom_mask[i] > 0.5):
                serial += 1
                name = rc.atom_types[slot]
                lines.append(pdb_atom_line(serial, name, resname, chain, int(prot.residue_index[i]),
                                        str(prot.insertion_code[i]),
                                        prot.atom_positions[i, slot], 0.0, name[0]))
        serial += 1
        lines.append(f"TER   {serial % 100000:>5}")
    lines.append("END")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _seeded_python_random(seed: int) -> Iterator[None]:
    """OpenMM's Modeller starts new hydrogens from `random.random()` offsets; seeding the
    global generator (and restoring it afterwards) makes the cleanup reproducible."""
    saved = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(saved)


def fix_pdb(pdb_str: str) -> tuple[openmm_app.Topology, np.ndarray, dict[str, object]]:
    """Run pdbfixer on PDB text; no missing residues are modelled.

    Steps: replace nonstandard residues by their standard parents, remove heterogens and
    water, add missing heavy atoms and terminal atoms, add hydrogens at pH 7. Random
    starting positions of new atoms are seeded (0), so equal inputs give equal outputs.

    Returns:
        (topology, positions [N_atoms, 3] Angstrom, alterations dict).
    """
    fixer = pdbfixer.PDBFixer(pdbfile=io.StringIO(pdb_str))
    alterations: dict[str, object] = {}
    fixer.findNonstandardResidues()
    alterations["nonstandard_residues"] = [(r.name, r.id, new)
                                           for r, new in fixer.nonstandardResidues]
    fixer.replaceNonstandardResidues()
    before = {r.name for r in fixer.topology.residues()}
    fixer.removeHeterogens(keepWater=False)
    alterations["removed_heterogens"] = sorted(
        before - {r.name for r in fixer.topology.residues()})
    fixer.missingResidues = {}  # never build unobserved residues
    fixer.findMissingAtoms()
    alterations["missing_heavy_atoms"] = {
        r.index: [a.name for a in atoms] for r, atoms in fixer.missingAtoms.items()}
    alterations["missing_terminals"] = {
        r.index: list(names) for r, names in fixer.missingTerminals.items()}
    with _seeded_python_random(0):
        fixer.addMissingAtoms(seed=0)
        fixer.addMissingHydrogens(_PH)
    positions = np.array(fixer.positions.value_in_unit(LENGTH), dtype=np.float64)
    return fixer.topology, positions, alterations


def _check_input_atoms_kept(prot: Protein, cleaned: CleanedStructure) -> None:
    """Every input heavy atom must come out of pdbfixer, at its input position."""
    names = [[] for _ in range(cleaned.topology.getNumResidues())]
    for atom in cleaned.topology.atoms():
        names[atom.residue.index].append((atom.name, atom.index))
    for res, row in zip(cleaned.topology.residues(), cleaned.residue_rows, strict=True):
        expected = rc.resnames[prot.aatype[row]]
        if res.name != expected:
            raise RuntimeError(f"pdbfixer changed residue {row} from {expected} to {res.name}")
        index_of = dict(names[res.index])
        for slot in np.flatnonzero(prot.atom_mask[row] > 0.5):
            name = rc.atom_types[slot]
            if name not in index_of:
                raise RuntimeError(f"pdbfixer dropped atom {name} of residue {row} ({expected})")
            shift = np.abs(cleaned.positions[index_of[name]] - prot.atom_positions[row, slot])
            if shift.max() > _MAX_CLEANUP_SHIFT:
                raise RuntimeError(f"pdbfixer moved atom {name} of residue {row} by "
                                   f"{shift.max():.3f} A")


def clean_protein(prot: Protein) -> CleanedStructure:
    """Complete `prot` (heavy atoms, termini, hydrogens) for the Amber force field.

    Raises:
        ValueError: for X residues, residues without atoms, or nothing left to relax
            (all segments of a single residue).
    """
    check_relaxable(prot)
    parts = segments(prot)
    kept = [rows for rows in parts if len(rows) > 1]
    frozen = np.array([int(rows[0]) for rows in parts if len(rows) == 1], dtype=np.int64)
    if frozen.size:
        logger.warning("leaving %d single-residue segment(s) out of the minimisation (no "
                       "Amber template for a lone residue): rows %s", frozen.size,
                       frozen[:10].tolist())
    if not kept:
        raise ValueError("cannot relax: every residue is a segment of its own (chains of "
                         "one residue, or numbering gaps between all residues)")
    topology, positions, alterations = fix_pdb(segments_pdb(prot, kept))
    rows = np.concatenate(kept)
    if topology.getNumResidues() != len(rows):
        raise RuntimeError(f"pdbfixer returned {topology.getNumResidues()} residues for "
                           f"{len(rows)} input residues")
    for key in ("missing_heavy_atoms", "missing_terminals"):
        alterations[key] = {int(rows[i]): v for i, v in alterations[key].items()}
    cleaned = CleanedStructure(topology=topology, positions=positions, residue_rows=rows,
                               frozen_rows=frozen, alterations=alterations)
    _check_input_atoms_kept(prot, cleaned)
    if alterations["missing_heavy_atoms"]:
        logger.info("pdbfixer added missing heavy atoms: %s", alterations["missing_heavy_atoms"])
    return cleaned


__all__ = ["CleanedStructure", "check_relaxable", "clean_protein", "fix_pdb", "pdb_atom_line",
           "peptide_bonded_to_next", "segments", "segments_pdb"]
