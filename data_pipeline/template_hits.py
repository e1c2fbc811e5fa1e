"""One template hit -> its features: the steps ``data_pipeline.templates`` chains together.

A hit (``TemplateHit`` from an hhr or hmmsearch file) names a PDB chain and aligns part of
it to the query. Turning it into template features takes five steps, each a function here:

1. ``pdb_id_and_chain``: read ``1abc_A`` from the hit's name.
2. ``prefilter_reason``: cheap checks before any mmCIF is read (release date, too few
   aligned columns, a near-copy of the query, a too-short template), as AF2's prefilter.
3. ``query_to_template_mapping``: query residue index -> hit residue index.
4. ``locate_template`` / ``realign_template``: find the hit's residues in the mmCIF chain's
   SEQRES; when the search database holds another version of the sequence, re-align it to
   the mmCIF's with kalign (at least 90 % identical, as AF2 requires).
5. ``template_atom_positions``: atom37 coordinates and mask of every SEQRES residue
   (selenium of MSE stored as SD, ARG NH1/NH2 naming fixed).

Failures raise ``TemplateHitError`` subclasses whose message is the reason the hit is
dropped; ``kind`` says how AF2 reports it (``"prefilter"``, ``"warning"``, ``"error"``).
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Callable, Mapping

import numpy as np

from data_pipeline import residue_constants
from data_pipeline.parsers import parse_a3m
from data_pipeline.parsers.hhr import TemplateHit
from data_pipeline.parsers.mmcif import MmcifObject

logger = logging.getLogger(__name__)

_PDB_ID_AND_CHAIN = re.compile(r"[a-zA-Z\d]{4}_[a-zA-Z0-9.]+")
_CA = residue_constants.atom_order["CA"]
_SD = residue_constants.atom_order["SD"]
_ARG_CD, _ARG_NH1, _ARG_NH2 = (residue_constants.atom_order[n] for n in ("CD", "NH1", "NH2"))

#: AF2's prefilter thresholds.
MAX_SUBSEQUENCE_RATIO = 0.95
MIN_ALIGN_RATIO = 0.1
MIN_TEMPLATE_LENGTH = 10
#: Realigned templates must be this identical to the search database's sequence.
MIN_REALIGN_IDENTITY = 0.9
#: AF2 rejects a template whose consecutive observed CA atoms are further apart (in
#: Angstrom); the value is "essentially infinite" on purpose.
MAX_CA_CA_DISTANCE = 150.0


class TemplateHitError(Exception):
    """A hit that gives no template; the message is the reason.

    ``kind``: ``"prefilter"`` (dropped by design: date, duplicate, too short, obsolete),
    ``"warning"`` (the structure lacks data: no file, no chain, no atoms) or ``"error"``
    (the hit cannot be placed on its structure).
    """

    kind = "error"


class PrefilterError(TemplateHitError):
    kind = "prefilter"


class MissingStructureError(TemplateHitError):
    kind = "warning"


class AlignmentError(TemplateHitError):
    kind = "error"


def pdb_id_and_chain(hit: TemplateHit) -> tuple[str, str]:
    """``("1abc", "A")`` from a hit named ``1ABC_A ...`` (PDB id lower-cased).

    Raises:
        ValueError: the name does not start with ``<4-character PDB id>_<chain>``.
    """
    match = _PDB_ID_AND_CHAIN.match(hit.name)
    if match is None:
        raise ValueError(
            f"template hit {hit.index} is named {hit.name[:60]!r}, which does not start with "
            "'<pdbid>_<chain>'; template search must run on a PDB-derived database (pdb70, "
            "pdb_seqres.txt)"
        )
    pdb_id, chain_id = match[0].split("_", 1)
    return pdb_id.lower(), chain_id


def prefilter_reason(
    hit: TemplateHit,
    pdb_id: str,
    query_sequence: str,
    release_dates: Mapping[str, datetime.date],
    max_template_date: datetime.date,
    max_subsequence_ratio: float = MAX_SUBSEQUENCE_RATIO,
    min_align_ratio: float = MIN_ALIGN_RATIO,
) -> str | None:
    """Why AF2's prefilter drops the hit (no mmCIF needed), or None when it passes.

    Checks, in AF2's order: release date (from ``release_dates`` only; the mmCIF's own date
    is checked later), aligned columns / query length ``<= min_align_ratio``, template
    residues forming an exact sub-sequence of the query that covers more than
    ``max_subsequence_ratio`` of it (the query's own entry), fewer than 10 residues.
    """
    template_sequence = hit.hit_sequence.replace("-", "")
    release = release_dates.get(pdb_id)
    if release is not None and release > max_template_date:
        return f"released {release.isoformat()}, after the max template date " \
               f"{max_template_date.isoformat()}"
    align_ratio = hit.aligned_cols / len(query_sequence)
    if align_ratio <= min_align_ratio:
        return f"only {hit.aligned_cols} aligned columns ({align_ratio:.1%} of the query; " \
               f"more than {min_align_ratio:.0%} needed)"
    length_ratio = len(template_sequence) / len(query_sequence)
    if template_sequence in query_sequence and length_ratio > max_subsequence_ratio:
        return f"duplicate of the query: an exact sub-sequence covering {length_ratio:.1%} " \
               f"of it (more than {max_subsequence_ratio:.0%})"
    if len(template_sequence) < MIN_TEMPLATE_LENGTH:
        return f"template too short ({len(template_sequence)} residues, " \
               f"{MIN_TEMPLATE_LENGTH} needed)"
    return None


def query_to_template_mapping(hit: TemplateHit, query_sequence: str) -> dict[int, int]:
    """Query residue index -> index in the hit's template residues (gaps removed).

    The hit's query indices are absolute when the hit was searched with this very query
    (hhr ``Q`` rows, hmmsearch rows); if the aligned query residues are not found at those
    indices, they are placed where they occur in the query (AF2's rule, which always
    does that and so picks the first copy of a repeated segment).

    Raises:
        AlignmentError: the hit's query residues do not occur in the query at all.
    """
    if not hit.query:
        return {}
    if len(hit.indices_query) != len(hit.indices_hit):
        raise AlignmentError(
            f"the hit aligns {len(hit.indices_hit)} template columns to "
            f"{len(hit.indices_query)} query columns; for hmmsearch the profile must have "
            "one match state per query residue (hmmbuild --hand on the query's MSA)"
        )
    hit_query = hit.query.replace("-", "")
    template_length = len(hit.hit_sequence.replace("-", ""))
    query_min = min(i for i in hit.indices_query if i > -1)
    template_min = min(i for i in hit.indices_hit if i > -1)
    if query_sequence[query_min:query_min + len(hit_query)] == hit_query:
        offset = query_min
    else:
        offset = query_sequence.find(hit_query)
        if offset < 0:
            raise AlignmentError(
                f"the hit's query residues {hit_query[:40]!r} do not occur in the query; the "
                "hit list was made for another sequence"
            )
    mapping = {}
    for q, t in zip(hit.indices_query, hit.indices_hit, strict=True):
        if q < 0 or t < 0:
            continue
        q_index, t_index = q - query_min + offset, t - template_min
        if t_index < template_length and q_index < len(query_sequence):
            mapping[q_index] = t_index
    return mapping


def locate_template(
    chain_id: str, template_sequence: str, mmcif: MmcifObject
) -> tuple[str, str, int] | None:
    """Find the hit's residues in a SEQRES of the entry.

    Tries the hit's chain, then any chain, then any chain with ``X`` as a wildcard on
    either side (AF2's order).

    Returns:
        ``(chain SEQRES, chain id, offset of the hit's residues in it)`` or None.
    """
    seqres = mmcif.chain_to_seqres.get(chain_id)
    if seqres and template_sequence in seqres:
        return seqres, chain_id, seqres.find(template_sequence)
    for other_id, seqres in mmcif.chain_to_seqres.items():
        if seqres and template_sequence in seqres:
            logger.info("%s: hit residues found in chain %s instead of %s",
                        mmcif.file_id, other_id, chain_id)
            return seqres, other_id, seqres.find(template_sequence)
    wildcard = re.compile("".join("." if c == "X" else f"[{c}X]" for c in template_sequence))
    for other_id, seqres in mmcif.chain_to_seqres.items():
        match = wildcard.search(seqres)
        if match:
            logger.info("%s: hit residues found in chain %s with X as wildcard",
                        mmcif.file_id, other_id)
            return seqres, other_id, match.start()
    return None


def realign_template(
    old_template_sequence: str,
    chain_id: str,
    mmcif: MmcifObject,
    old_mapping: Mapping[int, int],
    align: Callable[[list[str]], str],
) -> tuple[str, str, dict[int, int]]:
    """Re-align the search database's template residues to the mmCIF chain's SEQRES.

    Args:
        old_template_sequence: the hit's template residues (gaps removed).
        chain_id: the hit's chain; when the entry has no such chain but a single protein
            chain, that one is used.
        mmcif: the template entry.
        old_mapping: query index -> index in ``old_template_sequence``.
        align: aligns two sequences and returns aligned FASTA/A3M (kalign).

    Returns:
        ``(SEQRES, chain id, query index -> SEQRES index)``; query residues whose template
        residue is not aligned to the SEQRES are left out.

    Raises:
        AlignmentError: no such chain, the aligner failed, or the sequences are less than
            90 % identical (relative to the shorter one).
    """
    seqres = mmcif.chain_to_seqres.get(chain_id, "")
    if not seqres:
        if len(mmcif.chain_to_seqres) != 1:
            raise AlignmentError(
                f"{mmcif.file_id} has no protein chain {chain_id!r} (chains: "
                f"{sorted(mmcif.chain_to_seqres)})"
            )
        chain_id, seqres = next(iter(mmcif.chain_to_seqres.items()))
        logger.info("%s: no chain of the hit's id; using its only chain %s",
                    mmcif.file_id, chain_id)
    try:
        aligned = parse_a3m(align([old_template_sequence, seqres]), "kalign output")
        old_aligned, new_aligned = aligned.sequences[:2]
    except Exception as error:  # the aligner's failure is this hit's failure
        raise AlignmentError(
            f"could not align the hit's residues to {mmcif.file_id}_{chain_id}: {error}"
        ) from error
    old_to_new: dict[int, int] = {}
    old_index = new_index = -1
    same = 0
    for old_char, new_char in zip(old_aligned, new_aligned, strict=True):
        old_index += old_char != "-"
        new_index += new_char != "-"
        if old_char != "-" and new_char != "-":
            old_to_new[old_index] = new_index
            same += old_char == new_char
    identity = same / min(len(old_template_sequence), len(seqres))
    if identity < MIN_REALIGN_IDENTITY:
        raise AlignmentError(
            f"the search database's sequence of {mmcif.file_id}_{chain_id} is only "
            f"{identity:.0%} identical to the mmCIF's SEQRES ({MIN_REALIGN_IDENTITY:.0%} needed)"
        )
    mapping = {q: old_to_new[t] for q, t in old_mapping.items() if t in old_to_new}
    return seqres, chain_id, mapping


def template_atom_positions(
    mmcif: MmcifObject, chain_id: str, max_ca_ca_distance: float = MAX_CA_CA_DISTANCE
) -> tuple[np.ndarray, np.ndarray]:
    """Atom37 positions and mask of every SEQRES residue of a chain.

    Unobserved residues and atoms are zero with mask 0. The selenium of MSE goes in the
    SD column; an arginine whose NH2 is closer to CD than NH1 gets them swapped (naming
    errors in the PDB).

    Returns:
        positions ``[N_seqres, 37, 3]`` float32, mask ``[N_seqres, 37]`` float32.

    Raises:
        MissingStructureError: two consecutive observed CA atoms further apart than
            ``max_ca_ca_distance``.
    """
    num_res = len(mmcif.chain_to_seqres[chain_id])
    positions = np.zeros((num_res, residue_constants.atom_type_num, 3), dtype=np.float32)
    mask = np.zeros((num_res, residue_constants.atom_type_num), dtype=np.float32)
    residues = mmcif.seqres_to_structure[chain_id]
    for index in range(num_res):
        residue = residues[index]
        if residue.is_missing:
            continue
        for name, xyz in mmcif.get_atoms(chain_id, index).items():
            column = residue_constants.atom_order.get(name)
            if column is None and name.upper() == "SE" and residue.name == "MSE":
                column = _SD
            if column is not None:
                positions[index, column] = xyz
                mask[index, column] = 1.0
        if residue.name == "ARG" and mask[index, [_ARG_CD, _ARG_NH1, _ARG_NH2]].all():
            cd, nh1, nh2 = positions[index, [_ARG_CD, _ARG_NH1, _ARG_NH2]]
            if np.linalg.norm(nh1 - cd) > np.linalg.norm(nh2 - cd):
                positions[index, [_ARG_NH1, _ARG_NH2]] = positions[index, [_ARG_NH2, _ARG_NH1]]
    # Neighbouring SEQRES residues with both CA atoms observed.
    both = np.flatnonzero(mask[1:, _CA] * mask[:-1, _CA])
    gaps = np.linalg.norm(positions[both + 1, _CA] - positions[both, _CA], axis=-1)
    too_far = np.flatnonzero(gaps > max_ca_ca_distance)
    if too_far.size:
        i = both[too_far[0]]
        raise MissingStructureError(
            f"CA atoms of residues {i} and {i + 1} of {mmcif.file_id}_{chain_id} are "
            f"{gaps[too_far[0]]:.1f} A apart (limit {max_ca_ca_distance:g} A)"
        )
    return positions, mask
