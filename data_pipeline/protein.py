"""The `Protein` structure type and its PDB / mmCIF readers and writers.

A `Protein` holds one model of one or more protein chains in AlphaFold 2's atom37 layout:
every residue has 37 atom slots named by `residue_constants.atom_types` (N, CA, C, CB, O, ...),
a mask saying which slots are filled, and per-atom B-factors (experimental B-factors when
read from a file, pLDDT when it comes from a prediction).

Reading (`from_pdb`, `from_mmcif`, their `*_string` variants and `from_file`) goes through
gemmi and applies these rules:

* only the first model is read (NMR ensembles);
* only polymer chains of type polypeptide(L) are kept: DNA/RNA chains, ligands, ions,
  glycans and waters are dropped;
* chains are named by their *author* chain id (`auth_asym_id` in mmCIF, column 22 in
  PDB), the id biologists quote and the one PDB output carries; residues are numbered
  by author residue numbers, insertion codes are kept in `insertion_code`;
* alternative locations: for each atom the conformer with the highest occupancy is kept,
  the first one in the file on ties; of residues sharing a number (microheterogeneity)
  the one with the highest mean occupancy is kept, again the first on ties;
* selenomethionine (MSE) becomes MET with its SE atom stored as SD; every other residue
  outside the 20 standard amino acids becomes X (UNK, aatype 20) and keeps the atoms whose
  names are atom37 names;
* hydrogens and atoms whose names are not atom37 names are dropped, and so are residues
  left with no atom at all.

Writing: `to_pdb` gives fixed-column PDB text, `to_mmcif` gives ModelCIF (via the
``modelcif`` package) with the per-residue pLDDT as a local QA metric; `to_file` writes
either atomically.
"""
from __future__ import annotations

import dataclasses
import gzip
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import gemmi
import numpy as np

from data_pipeline import residue_constants

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
ChainSelection = str | Sequence[str] | None

_NUM_ATOMS = residue_constants.atom_type_num  # 37
_UNK = residue_constants.unk_restype_index  # 20
_PDB_SUFFIXES = (".pdb", ".ent")
_MMCIF_SUFFIXES = (".cif", ".mmcif")


@dataclasses.dataclass(frozen=True, eq=False)
class Protein:
    """One model of one or more protein chains in the atom37 representation.

    Arrays are converted to the dtypes below on construction; residues of one chain must
    be contiguous, and (chain, residue_index, insertion_code) must be unique.

    Attributes:
        atom_positions: [N_res, 37, 3] float32, Angstrom, slots as `residue_constants.atom_types`.
        aatype: [N_res] int32 in 0..20 (`residue_constants.restypes` order, 20 = X / UNK).
        atom_mask: [N_res, 37] float32, 1.0 where the atom is present.
        residue_index: [N_res] int32, author residue numbers (not necessarily contiguous).
        chain_index: [N_res] int32, index into `chain_ids`.
        b_factors: [N_res, 37] float32, B-factors or, for predictions, pLDDT.
        chain_ids: one chain id string per chain index; default "A", "B", ... as in
            `residue_constants.PDB_CHAIN_IDS`.
        insertion_code: [N_res] one-character strings ('' for none); default all ''.
    """

    atom_positions: np.ndarray
    aatype: np.ndarray
    atom_mask: np.ndarray
    residue_index: np.ndarray
    chain_index: np.ndarray
    b_factors: np.ndarray
    chain_ids: tuple[str, ...] | None = None
    insertion_code: np.ndarray | None = None

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        positions = np.asarray(self.atom_positions, dtype=np.float32)
        if positions.ndim != 3 or positions.shape[1:] != (_NUM_ATOMS, 3):
            raise ValueError(
                f"Protein.atom_positions must have shape [N_res, {_NUM_ATOMS}, 3], "
                f"got {positions.shape}"
            )
        n = positions.shape[0]
        put("atom_positions", positions)
        for name, shape, dtype in (
            ("aatype", (n,), np.int32),
            ("atom_mask", (n, _NUM_ATOMS), np.float32),
            ("residue_index", (n,), np.int32),
            ("chain_index", (n,), np.int32),
            ("b_factors", (n, _NUM_ATOMS), np.float32),
        ):
            raw = np.asarray(getattr(self, name))
            if raw.shape != shape:
                raise ValueError(f"Protein.{name} must have shape {list(shape)} to match "
                                 f"atom_positions [N_res={n}, ...], got {list(raw.shape)}")
            if dtype is np.int32 and raw.size and np.any(np.mod(raw, 1) != 0):
                raise ValueError(f"Protein.{name} must hold integers, got {raw.dtype}")
            put(name, raw.astype(dtype))

        if n and (self.aatype.min() < 0 or self.aatype.max() > _UNK):
            raise ValueError(f"Protein.aatype must lie in 0..{_UNK} (20 = X), got values in "
                             f"{self.aatype.min()}..{self.aatype.max()}")
        if n and self.chain_index.min() < 0:
            raise ValueError("Protein.chain_index must be >= 0")
        num_chains = int(self.chain_index.max()) + 1 if n else 0

        chain_ids = self.chain_ids
        if chain_ids is None:
            if num_chains > residue_constants.PDB_MAX_CHAINS:
                raise ValueError(f"Protein has {num_chains} chains but no chain_ids; pass them "
                                 f"(only {residue_constants.PDB_MAX_CHAINS} default ids exist)")
            chain_ids = tuple(residue_constants.PDB_CHAIN_IDS[:num_chains])
        if isinstance(chain_ids, str):
            raise ValueError("Protein.chain_ids must be a sequence of strings, not one string")
        chain_ids = tuple(chain_ids)
        for cid in chain_ids:
            if not isinstance(cid, str) or not cid or any(c.isspace() for c in cid):
                raise ValueError("Protein.chain_ids entries must be non-empty strings without "
                                 f"whitespace, got {cid!r}")
        if len(set(chain_ids)) != len(chain_ids):
            raise ValueError(f"Protein.chain_ids must be unique, got {chain_ids}")
        if len(chain_ids) < num_chains:
            raise ValueError(f"Protein.chain_index goes up to {num_chains - 1} but only "
                             f"{len(chain_ids)} chain_ids were given: {chain_ids}")
        put("chain_ids", chain_ids)

        if self.insertion_code is None:
            codes = np.full((n,), "", dtype="<U1")
        else:
            raw_codes = np.asarray(self.insertion_code, dtype=str)
            if raw_codes.shape != (n,) or (n and np.char.str_len(raw_codes).max() > 1):
                raise ValueError(f"Protein.insertion_code must be [N_res={n}] strings of at "
                                 f"most one character, got shape {list(raw_codes.shape)}")
            codes = np.char.strip(raw_codes).astype("<U1")
        put("insertion_code", codes)

        present = self.atom_mask > 0.5
        if not np.all(np.isfinite(self.atom_positions[present])):
            raise ValueError("Protein.atom_positions holds NaN/inf at atoms whose mask is 1")
        if n:
            starts = np.flatnonzero(np.diff(self.chain_index)) + 1
            block_chains = self.chain_index[np.concatenate([[0], starts])]
            if len(np.unique(block_chains)) != len(block_chains):
                raise ValueError("Protein: residues of each chain must be contiguous; sort "
                                 "them by chain_index")
            keys = zip(self.chain_index.tolist(), self.residue_index.tolist(), codes.tolist(),
                       strict=True)
            if len(set(keys)) != n:
                raise ValueError("Protein: (chain, residue_index, insertion_code) must be "
                                 "unique per residue")

    @property
    def num_res(self) -> int:
        """Number of residues N_res."""
        return int(self.aatype.shape[0])

    @property
    def num_chains(self) -> int:
        """Number of chains that own at least one residue."""
        return len(np.unique(self.chain_index))

    def present_chain_ids(self) -> list[str]:
        """Chain ids of the chains that own residues, in residue order."""
        order = dict.fromkeys(self.chain_index.tolist())
        return [self.chain_ids[i] for i in order]

    def sequences(self) -> dict[str, str]:
        """One-letter sequence of each chain ({chain id: 'MKV...'}; X for unknown)."""
        letters = np.array(residue_constants.restypes_with_x)
        return {
            cid: "".join(letters[self.aatype[self.chain_index == self.chain_ids.index(cid)]])
            for cid in self.present_chain_ids()
        }

    def sequence(self, chain_id: str | None = None) -> str:
        """One-letter sequence of `chain_id` (may be omitted for a single-chain protein)."""
        seqs = self.sequences()
        if chain_id is None:
            if len(seqs) != 1:
                raise ValueError(f"Protein has chains {list(seqs)}; pass chain_id or use "
                                 "sequences()")
            return next(iter(seqs.values()))
        if chain_id not in seqs:
            raise ValueError(f"no chain {chain_id!r} in Protein; chains are {list(seqs)}")
        return seqs[chain_id]

    def select_chains(self, chain_ids: str | Sequence[str]) -> Protein:
        """A new `Protein` holding only `chain_ids`, in the order given, re-indexed 0..k-1."""
        wanted = [chain_ids] if isinstance(chain_ids, str) else list(chain_ids)
        available = self.present_chain_ids()
        missing = [c for c in wanted if c not in available]
        if not wanted or missing or len(set(wanted)) != len(wanted):
            raise ValueError(f"cannot select chains {wanted}: choose distinct ids among "
                             f"{available}")
        rows = np.concatenate(
            [np.flatnonzero(self.chain_index == self.chain_ids.index(c)) for c in wanted]
        )
        new_index = {self.chain_ids.index(c): i for i, c in enumerate(wanted)}
        return Protein(
            atom_positions=self.atom_positions[rows],
            aatype=self.aatype[rows],
            atom_mask=self.atom_mask[rows],
            residue_index=self.residue_index[rows],
            chain_index=np.array([new_index[i] for i in self.chain_index[rows]], np.int32),
            b_factors=self.b_factors[rows],
            chain_ids=tuple(wanted),
            insertion_code=self.insertion_code[rows],
        )


def from_prediction(
    atom_positions: np.ndarray,
    atom_mask: np.ndarray,
    aatype: np.ndarray,
    *,
    plddt: np.ndarray | None = None,
    residue_index: np.ndarray | None = None,
    chain_index: np.ndarray | None = None,
    chain_ids: Sequence[str] | None = None,
) -> Protein:
    """A `Protein` from model outputs.

    Args:
        atom_positions: [N_res, 37, 3] `final_atom_positions`.
        atom_mask: [N_res, 37] `final_atom_mask`.
        aatype: [N_res] int, or one-hot [N_res, 21] (argmax is taken).
        plddt: [N_res] per-residue pLDDT in 0..100, copied to all 37 B-factor slots;
            zeros when omitted.
        residue_index: [N_res] residue numbers to write; default 1, 2, ... within each
            chain. (AF2's `residue_index` feature is 0-based: pass it + 1.)
        chain_index: [N_res] chain of each residue (e.g. `asym_id` - 1); default all 0.
        chain_ids: names of the chains; default "A", "B", ...
    """
    aatype = np.asarray(aatype)
    if aatype.ndim == 2:
        aatype = np.argmax(aatype, axis=-1)
    n = aatype.shape[0]
    chain_index = np.zeros((n,), np.int32) if chain_index is None else np.asarray(chain_index)
    if chain_index.shape != (n,):
        raise ValueError(f"chain_index must have shape [{n}], got {list(chain_index.shape)}")
    if residue_index is None:
        residue_index = np.zeros((n,), np.int32)
        for c in np.unique(chain_index):
            rows = np.flatnonzero(chain_index == c)
            residue_index[rows] = np.arange(1, len(rows) + 1)
    if plddt is None:
        b_factors = np.zeros((n, _NUM_ATOMS), np.float32)
    else:
        plddt = np.asarray(plddt, np.float32)
        if plddt.shape != (n,):
            raise ValueError(f"plddt must have shape [N_res={n}], got {list(plddt.shape)}")
        b_factors = np.repeat(plddt[:, None], _NUM_ATOMS, axis=1)
    return Protein(
        atom_positions=atom_positions,
        aatype=aatype,
        atom_mask=atom_mask,
        residue_index=residue_index,
        chain_index=chain_index,
        b_factors=b_factors,
        chain_ids=None if chain_ids is None else tuple(chain_ids),
    )


# ----------------------------------------------------------------------------- reading


def _read_text(path: PathLike, what: str) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist (check the path)")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: cannot read {what} file ({e})") from e


def _structure_suffix(path: PathLike) -> str:
    name = Path(path).name.lower()
    return name[:-3] if name.endswith(".gz") else name


def _wanted_chains(chain_id: ChainSelection) -> list[str] | None:
    if chain_id is None:
        return None
    wanted = [chain_id] if isinstance(chain_id, str) else list(chain_id)
    if not wanted or not all(isinstance(c, str) and c for c in wanted):
        raise ValueError(f"chain_id must be a chain id string or a list of them, got {chain_id!r}")
    return wanted


def _residue_occupancy(residue: gemmi.Residue) -> float:
    occ = [a.occ for a in residue if not a.is_hydrogen()]
    return float(np.mean(occ)) if occ else 0.0


def _residue_to_atom37(residue: gemmi.Residue) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """aatype, positions [37, 3], mask [37], b-factors [37] of one residue (see module doc)."""
    is_mse = residue.name == "MSE"
    one_letter = "M" if is_mse else residue_constants.restype_3to1.get(residue.name, "X")
    aatype = residue_constants.restype_order.get(one_letter, _UNK)
    pos = np.zeros((_NUM_ATOMS, 3), np.float32)
    mask = np.zeros((_NUM_ATOMS,), np.float32)
    bfac = np.zeros((_NUM_ATOMS,), np.float32)
    best_occ = np.full((_NUM_ATOMS,), -np.inf)
    for atom in residue:
        if atom.is_hydrogen():
            continue
        name = "SD" if is_mse and atom.name == "SE" else atom.name
        slot = residue_constants.atom_order.get(name)
        if slot is None or atom.occ <= best_occ[slot]:
            continue  # not an atom37 atom, or a conformer no more occupied than the kept one
        best_occ[slot] = atom.occ
        pos[slot] = (atom.pos.x, atom.pos.y, atom.pos.z)
        mask[slot] = 1.0
        bfac[slot] = atom.b_iso
    return aatype, pos, mask, bfac


def _chain_names(model: gemmi.Model, source: str) -> list[str]:
    """Author chain names; a blank one (old PDB files) gets the first unused letter."""
    names = [ch.name.strip() for ch in model]
    spare = (c for c in residue_constants.PDB_CHAIN_IDS if c not in names)
    for k, name in enumerate(names):
        if not name:
            names[k] = next(spare)
            logger.warning("%s: chain with a blank id is named %s", source, names[k])
    return names


def _from_gemmi(st: gemmi.Structure, chain_id: ChainSelection, source: str) -> Protein:
    """Builds a `Protein` from the first model of a gemmi structure (rules: module doc)."""
    wanted = _wanted_chains(chain_id)
    if len(st) == 0 or st[0].count_atom_sites() == 0:
        raise ValueError(f"{source}: no atoms found; is it a complete PDB/mmCIF file?")
    if len(st) > 1:
        logger.info("%s: %d models, reading only the first", source, len(st))
    st.setup_entities()
    model = st[0]

    protein_chains: dict[str, gemmi.ResidueSpan] = {}
    other_chains: dict[str, str] = {}
    for name, chain in zip(_chain_names(model, source), model, strict=True):
        poly = chain.get_polymer()
        if len(poly) == 0:
            other_chains.setdefault(name, "no polymer, only ligands/waters")
            continue
        entity = st.get_entity_of(poly)
        ptype = entity.polymer_type if entity is not None else poly.check_polymer_type()
        if ptype != gemmi.PolymerType.PeptideL:
            other_chains[name] = f"polymer type {ptype.name}"
        elif name in protein_chains:
            logger.warning("%s: a second polymer part of chain %s is ignored", source, name)
        else:
            protein_chains[name] = poly

    selected = list(protein_chains) if wanted is None else wanted
    if not selected:
        raise ValueError(f"{source}: no protein (polypeptide(L)) chain found; chains present: "
                         f"{other_chains or 'none'}")
    for cid in selected:
        if cid not in protein_chains:
            reason = (f"is not a protein chain ({other_chains[cid]})" if cid in other_chains
                      else "does not exist")
            raise ValueError(f"{source}: chain {cid!r} {reason}; protein chains (author ids) "
                             f"are {list(protein_chains)}")

    records: list[tuple] = []  # (aatype, pos, mask, bfac, resnum, icode, chain index)
    kept_chains: list[str] = []
    for cid in selected:
        groups: dict[tuple[int, str], gemmi.Residue] = {}
        for res in protein_chains[cid]:
            key = (res.seqid.num, res.seqid.icode.strip())
            if key not in groups or _residue_occupancy(res) > _residue_occupancy(groups[key]):
                groups[key] = res
        n_before = len(records)
        for (num, icode), res in groups.items():
            aa, pos, mask, bfac = _residue_to_atom37(res)
            if mask.any():
                records.append((aa, pos, mask, bfac, num, icode, len(kept_chains)))
            else:
                logger.debug("%s: residue %s%s%s has no atom37 atom; skipped",
                             source, cid, num, icode)
        if len(records) > n_before:
            kept_chains.append(cid)
        else:
            logger.warning("%s: chain %s has no residue with atom37 atoms; skipped", source, cid)
    if not records:
        raise ValueError(f"{source}: the protein chains {selected} hold no amino-acid atoms")
    aatype, positions, masks, bfactors, resnums, icodes, chain_index = zip(*records, strict=True)
    return Protein(
        atom_positions=np.stack(positions),
        aatype=np.array(aatype, np.int32),
        atom_mask=np.stack(masks),
        residue_index=np.array(resnums, np.int32),
        chain_index=np.array(chain_index, np.int32),
        b_factors=np.stack(bfactors),
        chain_ids=tuple(kept_chains),
        insertion_code=np.array(icodes, dtype="<U1"),
    )


def _check_text(text: str, source: str, fmt: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"{source}: expected {fmt} text as str, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"{source}: the {fmt} input is empty; pass a non-empty {fmt} file")


def from_pdb_string(pdb_str: str, chain_id: ChainSelection = None, *,
                    source: str = "<PDB string>") -> Protein:
    """Parses PDB text; `chain_id`: one author chain id, a list of them, or None for all
    protein chains. `source` names the input in error messages."""
    _check_text(pdb_str, source, "PDB")
    head = pdb_str.lstrip()
    if head.startswith("data_"):
        raise ValueError(f"{source}: this looks like mmCIF, not PDB; read it with from_mmcif")
    record_types = {line[:6].rstrip() for line in pdb_str.splitlines()}
    if "END" not in record_types:
        if head.startswith("HEADER"):
            raise ValueError(
                f"{source}: PDB entry has a HEADER but no END record; the file is truncated, "
                "download it again"
            )
        logger.warning("%s: no END record; if the file was cut short, atoms are missing", source)
    try:
        st = gemmi.read_pdb_string(pdb_str)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"{source}: not a valid PDB file, it may be truncated ({e})") from e
    return _from_gemmi(st, chain_id, source)


def from_mmcif_string(mmcif_str: str, chain_id: ChainSelection = None, *,
                      source: str = "<mmCIF string>") -> Protein:
    """Parses mmCIF text (first data block); `chain_id` selects author chain ids
    (`auth_asym_id`), one or a list; None reads all protein chains."""
    _check_text(mmcif_str, source, "mmCIF")
    try:
        doc = gemmi.cif.read_string(mmcif_str)
    except (RuntimeError, ValueError) as e:
        raise ValueError(
            f"{source}: not a valid mmCIF file, it may be truncated or be PDB format ({e})"
        ) from e
    if len(doc) == 0:
        raise ValueError(f"{source}: no data_ block; is it an mmCIF file?")
    block = doc[0]
    if not block.find_mmcif_category("_atom_site."):
        raise ValueError(f"{source}: mmCIF block {block.name!r} has no _atom_site coordinates")
    try:
        st = gemmi.make_structure_from_block(block)
    except (RuntimeError, ValueError, IndexError) as e:
        raise ValueError(f"{source}: cannot build a structure from the mmCIF ({e})") from e
    return _from_gemmi(st, chain_id, source)


def from_pdb(path: PathLike, chain_id: ChainSelection = None) -> Protein:
    """Reads a PDB file (optionally .gz); see `from_pdb_string`."""
    return from_pdb_string(_read_text(path, "PDB"), chain_id, source=str(path))


def from_mmcif(path: PathLike, chain_id: ChainSelection = None) -> Protein:
    """Reads an mmCIF file (optionally .gz); see `from_mmcif_string`."""
    return from_mmcif_string(_read_text(path, "mmCIF"), chain_id, source=str(path))


def from_file(path: PathLike, chain_id: ChainSelection = None) -> Protein:
    """Reads a .pdb/.ent or .cif/.mmcif file (optionally .gz), choosing by the suffix."""
    suffix = Path(_structure_suffix(path)).suffix
    if suffix in _PDB_SUFFIXES:
        return from_pdb(path, chain_id)
    if suffix in _MMCIF_SUFFIXES:
        return from_mmcif(path, chain_id)
    raise ValueError(
        f"{path}: unknown structure suffix {suffix!r}; use .pdb/.ent or .cif/.mmcif "
        "(or call from_pdb / from_mmcif directly)"
    )


# ----------------------------------------------------------------------------- writing


def check_writable(prot: Protein) -> None:
    """Raises ValueError if `prot` has nothing to write (no residues or no atoms)."""
    if prot.num_res == 0:
        raise ValueError("cannot write a Protein with no residues")
    present = prot.atom_mask > 0.5
    if not present.any():
        raise ValueError("cannot write a Protein whose atom_mask is all zero")


def _pdb_chain_letters(prot: Protein, remap_chain_ids: bool) -> list[str]:
    ids = list(prot.chain_ids)
    if all(len(c) == 1 for c in ids):
        return ids
    if not remap_chain_ids:
        long_ids = [c for c in ids if len(c) > 1]
        raise ValueError(
            f"PDB format allows one-character chain ids, but the Protein has {long_ids}; "
            "write mmCIF (to_mmcif) instead, or pass remap_chain_ids=True to rename the "
            "chains A, B, ..."
        )
    if len(ids) > residue_constants.PDB_MAX_CHAINS:
        raise ValueError(
            f"PDB format holds at most {residue_constants.PDB_MAX_CHAINS} chains, the Protein "
            f"has {len(ids)}; write mmCIF (to_mmcif) instead"
        )
    new = list(residue_constants.PDB_CHAIN_IDS[: len(ids)])
    logger.warning("renaming chains %s to %s for PDB output", ids, new)
    return new


def to_pdb(prot: Protein, *, remap_chain_ids: bool = False) -> str:
    """PDB text of `prot`: ATOM records, a TER after each chain, END.

    The B-factor column holds `prot.b_factors` (pLDDT for predictions), occupancy is 1.00.
    Chain ids longer than one character raise ValueError unless `remap_chain_ids` renames
    all chains to A, B, ... Atom serial numbers wrap after 99999.
    """
    check_writable(prot)
    letters = _pdb_chain_letters(prot, remap_chain_ids)
    if prot.residue_index.min() < -999 or prot.residue_index.max() > 9999:
        raise ValueError("PDB residue numbers must lie in -999..9999; write mmCIF instead")
    present = prot.atom_mask > 0.5
    coords = prot.atom_positions[present]
    if coords.size and (coords.min() <= -999.9995 or coords.max() >= 9999.9995):
        raise ValueError("coordinates do not fit PDB's 8.3f columns; write mmCIF instead")
    bvals = prot.b_factors[present]
    if bvals.size and (bvals.min() <= -99.995 or bvals.max() >= 999.995):
        raise ValueError("B-factors do not fit PDB's 6.2f column (-99.99..999.99)")

    lines: list[str] = []
    serial = 0
    n = prot.num_res
    for i in range(n):
        resname = residue_constants.resnames[prot.aatype[i]]
        chain = letters[prot.chain_index[i]]
        resseq, icode = int(prot.residue_index[i]), prot.insertion_code[i] or " "
        for slot in np.flatnonzero(present[i]):
            serial += 1
            name = residue_constants.atom_types[slot]
            x, y, z = prot.atom_positions[i, slot]
            lines.append(
                f"ATOM  {serial % 100000:>5}  {name:<3} {resname:>3} {chain}{resseq:>4}{icode}"
                f"   {x:8.3f}{y:8.3f}{z:8.3f}{1.0:6.2f}{prot.b_factors[i, slot]:6.2f}"
                f"          {name[0]:>2}  "
            )
        if i == n - 1 or prot.chain_index[i + 1] != prot.chain_index[i]:
            serial += 1
            lines.append(f"TER   {serial % 100000:>5}      {resname:>3} {chain}{resseq:>4}{icode}")
    lines.append("END")
    return "\n".join(line.ljust(80) for line in lines) + "\n"


def to_mmcif(prot: Protein, *, plddt: np.ndarray | None = None, **options: str) -> str:
    """ModelCIF text of `prot` (atom_site B_iso = `prot.b_factors`).

    `plddt` [N_res], when given, is stored as ModelCIF's per-residue (local) pLDDT metric
    with its mean as the global one. `options`: `entry_id`, `model_name`, `title`,
    `software_name`, `software_version`, `software_url`; see
    `data_pipeline.protein_modelcif.to_modelcif`.
    """
    from data_pipeline.protein_modelcif import to_modelcif

    return to_modelcif(prot, plddt=plddt, **options)


def to_file(prot: Protein, path: PathLike, *, plddt: np.ndarray | None = None,
            **mmcif_options: object) -> Path:
    """Writes `prot` as PDB (.pdb) or ModelCIF (.cif); the file appears complete or not at all.

    `plddt` [N_res] goes to ModelCIF's pLDDT metric (mmCIF) or replaces the B-factor
    column (PDB); `mmcif_options` are those of `to_mmcif`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in _PDB_SUFFIXES:
        if mmcif_options:
            raise ValueError(f"{path}: options {sorted(mmcif_options)} apply to mmCIF only")
        if plddt is not None:
            plddt = np.asarray(plddt, np.float32)
            if plddt.shape != (prot.num_res,):
                raise ValueError(f"plddt must have shape [N_res={prot.num_res}]")
            prot = dataclasses.replace(prot, b_factors=np.repeat(plddt[:, None], _NUM_ATOMS, 1))
        text = to_pdb(prot)
    elif suffix in _MMCIF_SUFFIXES:
        text = to_mmcif(prot, plddt=plddt, **mmcif_options)
    else:
        raise ValueError(f"{path}: unknown structure suffix {suffix!r}; use .pdb or .cif")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
