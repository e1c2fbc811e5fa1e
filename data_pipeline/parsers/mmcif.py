"""mmCIF metadata and coordinates for template featurisation and training labels (gemmi).

What is read, following AF2's ``mmcif_parsing`` conventions:

* protein chains: polymer entities (``_entity_poly_seq``) with at least one monomer
  whose ``_chem_comp.type`` says "peptide", keyed by *author* chain id;
* ``chain_to_seqres``: each chain's SEQRES as one-letter codes; modified residues take
  their parent's letter (MSE -> M) like official AF2's extended three-to-one table,
  anything unknown is ``X``;
* ``seqres_to_structure``: SEQRES index (0-based) -> the observed residue (author
  numbering, insertion code, het flag) or a missing-residue marker; first model only;
* atoms of every observed residue (first model; for alternate locations the one of
  highest occupancy, the first among equals);
* header: experimental method(s), release date (oldest revision; old files without
  ``_pdbx_audit_revision_history`` fall back to ``_database_PDB_rev``), resolution.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import os
from collections.abc import Mapping
from typing import Any

import gemmi
import numpy as np

from data_pipeline.parsers.fasta import PathLike

logger = logging.getLogger(__name__)

_ATOM_SITE_TAGS = (
    "group_PDB", "label_atom_id", "label_alt_id", "label_comp_id", "label_asym_id",
    "label_seq_id", "auth_asym_id", "auth_seq_id", "pdbx_PDB_ins_code", "Cartn_x",
    "Cartn_y", "Cartn_z", "occupancy", "pdbx_PDB_model_num",
)
# Where the resolution may be; when several hold a number, the last one listed wins
# (AF2's order and rule).
_RESOLUTION_TAGS = ("_refine.ls_d_res_high", "_em_3d_reconstruction.resolution",
                    "_reflns.d_resolution_high")


class MmcifParseError(ValueError):
    """An mmCIF file that cannot be read (syntax error or missing categories)."""


@dataclasses.dataclass(frozen=True)
class ResiduePosition:
    """Where a residue is in the deposited model (author numbering)."""

    chain_id: str
    residue_number: int
    insertion_code: str


@dataclasses.dataclass(frozen=True)
class ResidueAtPosition:
    """A SEQRES residue: observed (``position`` set) or missing from the model.

    ``hetflag`` is Biopython's residue flag: ``" "`` for ATOM records, ``"H_<name>"`` for
    HETATM records (e.g. MSE), ``"W"`` for water.
    """

    position: ResiduePosition | None
    name: str
    is_missing: bool
    hetflag: str


@dataclasses.dataclass(frozen=True)
class MmcifObject:
    """A parsed mmCIF entry (protein chains of the first model).

    Attributes:
        file_id: the entry's name (e.g. PDB id), used in messages.
        header: ``structure_method`` (comma-joined, lower case), ``release_date``
            (``YYYY-MM-DD``, absent if the file has no revision dates), ``resolution``
            (Angstrom, 0.0 when unknown), ``deposition_date`` when present.
        chain_to_seqres: author chain id -> SEQRES one-letter sequence.
        seqres_to_structure: author chain id -> {SEQRES index: ResidueAtPosition}.
        residue_atoms: author chain id -> {SEQRES index: {atom name: xyz [3] float64}}
            for observed residues.
    """

    file_id: str
    header: dict[str, Any]
    chain_to_seqres: dict[str, str]
    seqres_to_structure: dict[str, dict[int, ResidueAtPosition]]
    residue_atoms: dict[str, dict[int, dict[str, np.ndarray]]]

    def get_atoms(self, chain_id: str, seqres_index: int) -> dict[str, np.ndarray]:
        """Atom name -> xyz ``[3]`` of a SEQRES residue (empty when not observed)."""
        if chain_id not in self.chain_to_seqres:
            raise KeyError(
                f"{self.file_id}: no protein chain {chain_id!r}; chains are "
                f"{sorted(self.chain_to_seqres)}"
            )
        return self.residue_atoms[chain_id].get(seqres_index, {})


@functools.cache
def _parent_letter_table() -> Mapping[str, str]:
    """Three-letter code -> parent one-letter code for modified residues, as official AF2
    (Biopython's extended table) when Biopython is installed, else empty (gemmi's table
    is used)."""
    try:
        from Bio.Data.PDBData import protein_letters_3to1_extended as table
    except ImportError:  # Biopython is optional; gemmi knows the common modifications.
        logger.info("Biopython not installed: modified residues use gemmi's parent table")
        return {}
    return {k: v for k, v in table.items() if len(v) == 1}


@functools.lru_cache(maxsize=4096)
def residue_one_letter(name: str) -> str:
    """One-letter code of a residue name; the parent's for modified residues, else ``X``."""
    table = _parent_letter_table()
    if table:
        return table.get(name, "X")
    info = gemmi.find_tabulated_residue(name)
    if info is not None and info.is_amino_acid() and info.one_letter_code.strip():
        return info.one_letter_code.upper()
    return "X"


def _column(block: gemmi.cif.Block, tag: str) -> list[str]:
    return [gemmi.cif.as_string(v) for v in block.find_values(tag)]


def _table(block: gemmi.cif.Block, prefix: str, tags, file_id: str) -> list[list[str]]:
    """Columns of a category (all tags required)."""
    table = block.find(prefix, list(tags))
    if table.width() != len(tags):
        raise MmcifParseError(
            f"{file_id}: the mmCIF file lacks {prefix}{{{','.join(tags)}}}; a full PDB entry "
            "file (not a coordinates-only excerpt) is needed"
        )
    return [[gemmi.cif.as_string(v) for v in table.column(i)] for i in range(len(tags))]


def _header(block: gemmi.cif.Block, file_id: str) -> dict[str, Any]:
    header: dict[str, Any] = {
        "structure_method": ",".join(m.lower() for m in _column(block, "_exptl.method"))
    }
    for tag in ("_pdbx_audit_revision_history.revision_date", "_database_PDB_rev.date"):
        dates = [d for d in _column(block, tag) if d]
        if dates:
            header["release_date"] = min(dates)
            break
    else:
        logger.warning("%s: no revision dates; release_date unknown", file_id)
    for tag in ("_pdbx_database_status.recvd_initial_deposition_date",
                "_database_PDB_rev.date_original"):
        dates = [d for d in _column(block, tag) if d]
        if dates:
            header["deposition_date"] = min(dates)
            break
    header["resolution"] = 0.0
    for tag in _RESOLUTION_TAGS:
        values = _column(block, tag)
        if values:
            try:
                header["resolution"] = float(values[0])
            except ValueError:
                logger.debug("%s: resolution %s=%r is not a number", file_id, tag, values[0])
    return header


def _protein_chains(block: gemmi.cif.Block, file_id: str) -> dict[str, list[tuple[str, int]]]:
    """label_asym_id -> [(monomer name, entity_poly_seq.num)] of every protein chain."""
    entity_ids, nums, mon_ids = _table(block, "_entity_poly_seq.",
                                       ("entity_id", "num", "mon_id"), file_id)
    polymers: dict[str, list[tuple[str, int]]] = collections.defaultdict(list)
    for entity_id, num, mon_id in zip(entity_ids, nums, mon_ids, strict=True):
        polymers[entity_id].append((mon_id, int(num)))
    comp_ids, comp_types = _column(block, "_chem_comp.id"), _column(block, "_chem_comp.type")
    comp_type = dict(zip(comp_ids, comp_types, strict=True))
    asym_ids, asym_entities = _table(block, "_struct_asym.", ("id", "entity_id"), file_id)
    entity_chains: dict[str, list[str]] = collections.defaultdict(list)
    for asym_id, entity_id in zip(asym_ids, asym_entities, strict=True):
        entity_chains[entity_id].append(asym_id)

    def is_peptide(mon_id: str) -> bool:
        if mon_id in comp_type:
            return "peptide" in comp_type[mon_id].lower()
        info = gemmi.find_tabulated_residue(mon_id)
        return info is not None and info.is_amino_acid()

    chains = {}
    for entity_id, monomers in polymers.items():
        if any(is_peptide(mon_id) for mon_id, _ in monomers):
            for asym_id in entity_chains[entity_id]:
                chains[asym_id] = monomers
    return chains


def _choose(current: tuple[float, np.ndarray] | None, occupancy: float,
            xyz: np.ndarray) -> tuple[float, np.ndarray]:
    """Alternate locations: keep the first atom of strictly highest occupancy."""
    if current is None or occupancy > current[0]:
        return occupancy, xyz
    return current


def parse_mmcif_string(mmcif_string: str, file_id: str) -> MmcifObject:
    """Parse an mmCIF text. See the module docstring for what is extracted.

    Raises:
        MmcifParseError (a ValueError): syntax errors (with the line number) or missing
            ``_atom_site`` / ``_entity_poly_seq`` / ``_struct_asym`` categories.
    """
    try:
        doc = gemmi.cif.read_string(mmcif_string)
    except (ValueError, RuntimeError) as error:
        raise MmcifParseError(f"{file_id}: not a valid mmCIF file: {error}") from None
    if len(doc) == 0:
        raise MmcifParseError(f"{file_id}: the mmCIF file has no data block")
    return _parse_block(doc[0], file_id)


def parse_mmcif_file(path: PathLike, file_id: str | None = None) -> MmcifObject:
    """Parse an mmCIF file (``.cif`` or ``.cif.gz``); ``file_id`` defaults to its stem."""
    path = os.fspath(path)
    if file_id is None:
        file_id = os.path.basename(path).split(".")[0]
    try:
        doc = gemmi.cif.read(path)
    except (ValueError, RuntimeError) as error:
        raise MmcifParseError(f"{path}: not a valid mmCIF file: {error}") from None
    if len(doc) == 0:
        raise MmcifParseError(f"{path}: the mmCIF file has no data block")
    return _parse_block(doc[0], file_id)


def _parse_block(block: gemmi.cif.Block, file_id: str) -> MmcifObject:
    header = _header(block, file_id)
    chains = _protein_chains(block, file_id)
    if not chains:
        logger.info("%s: no protein chains", file_id)
    start_num = {asym: min(num for _, num in monomers) for asym, monomers in chains.items()}
    (group, atom_name, alt_id, comp_id, label_asym, label_seq, auth_asym, auth_seq, ins_code,
     xs, ys, zs, occupancy, model) = _table(block, "_atom_site.", _ATOM_SITE_TAGS, file_id)

    label_to_author: dict[str, str] = {}
    mapping: dict[str, dict[int, ResidueAtPosition]] = {}
    atoms: dict[str, dict[int, dict[str, tuple[float, np.ndarray]]]] = {}
    first_model = model[0] if model else "1"
    for i in range(len(group)):
        if model[i] != "1":
            continue
        label_to_author[label_asym[i]] = auth_asym[i]
        if label_asym[i] not in chains:
            continue
        if group[i] == "HETATM":
            hetflag = "W" if comp_id[i] in ("HOH", "WAT") else "H_" + comp_id[i]
        else:
            hetflag = " "
        try:
            position = ResiduePosition(auth_asym[i], int(auth_seq[i]), ins_code[i] or " ")
            index = int(label_seq[i]) - start_num[label_asym[i]]
        except ValueError:
            raise MmcifParseError(
                f"{file_id}: atom {i + 1} of _atom_site (chain {auth_asym[i]}) has residue "
                f"numbers {auth_seq[i]!r}/{label_seq[i]!r} that are not integers"
            ) from None
        mapping.setdefault(auth_asym[i], {})[index] = ResidueAtPosition(
            position=position, name=comp_id[i], is_missing=False, hetflag=hetflag)
        if model[i] != first_model:
            continue
        residue = atoms.setdefault(auth_asym[i], {}).setdefault(index, {})
        xyz = np.array([float(xs[i]), float(ys[i]), float(zs[i])], dtype=np.float64)
        occ = float(occupancy[i]) if occupancy[i] else 1.0
        if alt_id[i] or atom_name[i] not in residue:
            residue[atom_name[i]] = _choose(residue.get(atom_name[i]), occ, xyz)

    chain_to_seqres: dict[str, str] = {}
    for asym, monomers in chains.items():
        if asym not in label_to_author:
            logger.warning("%s: protein chain %s has no atoms in model 1; skipped", file_id, asym)
            continue
        author = label_to_author[asym]
        chain_map = mapping.setdefault(author, {})
        for index, (mon_id, _) in enumerate(monomers):
            if index not in chain_map:
                chain_map[index] = ResidueAtPosition(None, mon_id, True, " ")
        chain_to_seqres[author] = "".join(residue_one_letter(m) for m, _ in monomers)

    residue_atoms = {
        chain: {index: {name: xyz for name, (_, xyz) in per_atom.items()}
                for index, per_atom in per_residue.items()}
        for chain, per_residue in atoms.items()
    }
    for chain in chain_to_seqres:
        residue_atoms.setdefault(chain, {})
    return MmcifObject(
        file_id=file_id,
        header=header,
        chain_to_seqres=chain_to_seqres,
        seqres_to_structure={c: mapping[c] for c in chain_to_seqres},
        residue_atoms=residue_atoms,
    )
