"""Template hits -> template features, as AF2's ``HhsearchHitFeaturizer`` and
``HmmsearchHitFeaturizer``.

Hits are taken best first (hhsearch: by ``sum_probs``; hmmsearch: in file order). Each
hit's PDB entry is read from the mmCIF directory; hits are dropped, with the reason
logged, when the entry is obsolete, released after the max template date, aligned over
10 % of the query or less, an exact copy of the query (> 95 % of it), shorter than 10
residues, missing from the directory, or without usable atoms. When the search
database's sequence differs from the mmCIF SEQRES, the hit is re-aligned with kalign.
At most ``max_hits`` templates are returned (hmmsearch: distinct template sequences).

Features (``data_pipeline.features`` lists shapes and dtypes): ``template_aatype``
(one-hot over the HHblits alphabet with gap, 22), ``template_all_atom_positions``,
``template_all_atom_masks``, ``template_domain_names`` (``b"1abc_A"``),
``template_sequence`` (the template residue on each query residue, ``-`` elsewhere) and
``template_sum_probs``.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import functools
import logging
import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from data_pipeline import residue_constants
from data_pipeline.features import (
    FeatureDict,
    empty_template_features,
    stack_template_features,
)
from data_pipeline.parsers.fasta import PathLike
from data_pipeline.parsers.hhr import TemplateHit
from data_pipeline.parsers.mmcif import MmcifObject, MmcifParseError, parse_mmcif_file
from data_pipeline.template_hits import (
    AlignmentError,
    MissingStructureError,
    PrefilterError,
    TemplateHitError,
    locate_template,
    pdb_id_and_chain,
    prefilter_reason,
    query_to_template_mapping,
    realign_template,
    template_atom_positions,
)
from data_pipeline.tools import Kalign, find_binary
from data_pipeline.tools.base import ToolNotFoundError

logger = logging.getLogger(__name__)

#: File names tried for a PDB id in the mmCIF directory, in order.
_MMCIF_NAMES = ("{id}.cif", "{id}.cif.gz", "{ID}.cif", "{ID}.cif.gz")


class DroppedHit(NamedTuple):
    """A hit that gave no template: its number in the file, name, why (``kind``:
    ``"prefilter"``, ``"warning"``, ``"error"`` or ``"duplicate"``), and the reason."""

    index: int
    name: str
    kind: str
    reason: str


@dataclasses.dataclass(frozen=True)
class TemplateSearchResult:
    """Template features and what happened to the hits.

    Attributes:
        features: the template feature dict (``N_t`` templates).
        errors: hits that could not be placed on their structure (AF2's errors).
        warnings: structures without usable data, and re-alignments (AF2's warnings).
        dropped: every hit that gave no template, in the order the hits were tried.
    """

    features: FeatureDict
    errors: list[str]
    warnings: list[str]
    dropped: list[DroppedHit]


def _parse_date(value: str | datetime.date, what: str) -> datetime.date:
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    try:
        return datetime.date.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError(f"{what} {value!r} is not a date; write it as YYYY-MM-DD") from None


def read_release_dates(path: PathLike) -> dict[str, datetime.date]:
    """PDB id -> release date from a ``<pdb id>: YYYY-MM-DD`` per line text file."""
    path = os.fspath(path)
    dates = {}
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            pdb_id, sep, date = line.partition(":")
            if not sep:
                raise ValueError(f"{path}:{line_no}: expected '<pdb id>: YYYY-MM-DD'")
            dates[pdb_id.strip().lower()] = _parse_date(date[:11], f"{path}:{line_no}: date")
    return dates


def read_obsolete_pdbs(path: PathLike) -> dict[str, str | None]:
    """Obsolete PDB id -> replacing id (None when removed) from the PDB's ``obsolete.dat``
    (``OBSLTE    31-JUL-94 116L     216L`` lines)."""
    obsolete: dict[str, str | None] = {}
    with open(os.fspath(path), encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line.startswith("OBSLTE"):
                continue
            if len(line) > 30:
                obsolete[line[20:24].lower()] = line[29:33].lower()
            elif len(line) == 24:
                obsolete[line[20:24].lower()] = None
    return obsolete


class TemplateHitFeaturizer:
    """Turns template hits into template features (base of the hhsearch and hmmsearch
    variants, which differ in hit order, counting and the empty result).

    Args:
        mmcif_dir: directory of ``<pdb id>.cif`` files (``.cif.gz`` too).
        max_template_date: latest release date of a template (``YYYY-MM-DD``).
        max_hits: at most this many templates.
        kalign_binary_path: kalign executable for re-alignments (default: on PATH).
        release_dates_path: optional ``<pdb id>: YYYY-MM-DD`` file, to skip late entries
            without reading their mmCIF.
        obsolete_pdbs_path: optional PDB ``obsolete.dat``; removed entries are dropped,
            replaced ones looked up under the new id.
        max_subsequence_ratio, min_align_ratio: AF2's prefilter thresholds.

    Raises:
        FileNotFoundError: ``mmcif_dir`` is not a directory.
        ValueError: a bad date or ``max_hits``.
        ToolNotFoundError: an explicit ``kalign_binary_path`` that does not exist.
    """

    def __init__(
        self,
        mmcif_dir: PathLike,
        max_template_date: str | datetime.date,
        max_hits: int = 20,
        kalign_binary_path: str | None = None,
        release_dates_path: PathLike | None = None,
        obsolete_pdbs_path: PathLike | None = None,
        max_subsequence_ratio: float = 0.95,
        min_align_ratio: float = 0.1,
    ) -> None:
        self.mmcif_dir = os.fspath(mmcif_dir)
        if not os.path.isdir(self.mmcif_dir):
            raise FileNotFoundError(
                f"template mmCIF directory {self.mmcif_dir!r} does not exist; give the folder "
                "holding <pdb id>.cif files (AF2's pdb_mmcif/mmcif_files)"
            )
        self.max_template_date = _parse_date(max_template_date, "max_template_date")
        if max_hits < 0:
            raise ValueError(f"max_hits must be >= 0, got {max_hits}")
        self.max_hits = max_hits
        self.max_subsequence_ratio = max_subsequence_ratio
        self.min_align_ratio = min_align_ratio
        self.release_dates = read_release_dates(release_dates_path) if release_dates_path else {}
        self.obsolete_pdbs = read_obsolete_pdbs(obsolete_pdbs_path) if obsolete_pdbs_path else {}
        self._kalign: Kalign | None = None
        self._kalign_path = kalign_binary_path
        if kalign_binary_path is not None:
            find_binary("kalign", kalign_binary_path)
        self._read_mmcif = functools.lru_cache(maxsize=16)(self._read_mmcif_uncached)

    # ------------------------------------------------------------------ one hit

    def _align(self, sequences: list[str]) -> str:
        if self._kalign is None:
            try:
                self._kalign = Kalign(binary_path=self._kalign_path)
            except ToolNotFoundError as error:
                raise AlignmentError(f"re-alignment needs kalign: {error}") from error
        return self._kalign.align(sequences)

    def _mmcif_path(self, pdb_id: str) -> str | None:
        for pattern in _MMCIF_NAMES:
            path = os.path.join(self.mmcif_dir, pattern.format(id=pdb_id, ID=pdb_id.upper()))
            if os.path.isfile(path):
                return path
        return None

    def _read_mmcif_uncached(self, pdb_id: str) -> MmcifObject:
        path = self._mmcif_path(pdb_id)
        if path is None:
            raise MissingStructureError(f"no mmCIF file for {pdb_id} in {self.mmcif_dir}")
        try:
            return parse_mmcif_file(path, file_id=pdb_id)
        except (MmcifParseError, OSError) as error:
            raise MissingStructureError(f"cannot read {path}: {error}") from error

    def process_hit(self, query_sequence: str, hit: TemplateHit) -> dict[str, object]:
        """Features of one hit (one template, no leading ``N_t`` axis).

        Raises:
            TemplateHitError: the hit gives no template; the message says why.
        """
        pdb_id, chain_id = pdb_id_and_chain(hit)
        if pdb_id in self.obsolete_pdbs:
            replacement = self.obsolete_pdbs[pdb_id]
            if replacement is None:
                raise PrefilterError(f"{pdb_id} is obsolete (removed from the PDB)")
            if pdb_id not in self.release_dates:
                logger.info("%s is obsolete; using its replacement %s", pdb_id, replacement)
                pdb_id = replacement
        reason = prefilter_reason(hit, pdb_id, query_sequence, self.release_dates,
                                  self.max_template_date, self.max_subsequence_ratio,
                                  self.min_align_ratio)
        if reason is not None:
            raise PrefilterError(reason)
        mapping = query_to_template_mapping(hit, query_sequence)
        template_sequence = hit.hit_sequence.replace("-", "")

        mmcif = self._read_mmcif(pdb_id)
        release = mmcif.header.get("release_date")
        if release is None:
            logger.warning("%s: release date unknown; kept without a date check", pdb_id)
        elif _parse_date(release, f"{pdb_id} release date") > self.max_template_date:
            raise PrefilterError(f"released {release}, after the max template date "
                                 f"{self.max_template_date.isoformat()}")
        if not mmcif.chain_to_seqres:
            raise MissingStructureError(f"{pdb_id} has no protein chains")

        found = locate_template(chain_id, template_sequence, mmcif)
        if found is not None:
            seqres, chain_id, offset = found
        else:
            logger.warning("%s_%s: hit residues %s not in the mmCIF SEQRES; re-aligning",
                           pdb_id, chain_id, template_sequence)
            seqres, chain_id, mapping = realign_template(
                template_sequence, chain_id, mmcif, mapping, self._align)
            template_sequence, offset = seqres, 0
        positions, masks = template_atom_positions(mmcif, chain_id)

        num_res = len(query_sequence)
        out_positions = np.zeros((num_res, residue_constants.atom_type_num, 3), np.float32)
        out_masks = np.zeros((num_res, residue_constants.atom_type_num), np.float32)
        letters = ["-"] * num_res
        for query_index, template_index in mapping.items():
            out_positions[query_index] = positions[template_index + offset]
            out_masks[query_index] = masks[template_index + offset]
            letters[query_index] = template_sequence[template_index]
        if out_masks.sum() < 5:  # alanine, the smallest residue, has 5 atoms
            raise MissingStructureError(
                f"{pdb_id}_{chain_id}: no atoms observed on the aligned residues")
        sequence = "".join(letters)
        return {
            "template_all_atom_positions": out_positions,
            "template_all_atom_masks": out_masks,
            "template_sequence": sequence.encode(),
            "template_aatype": residue_constants.sequence_to_onehot(
                sequence, residue_constants.HHBLITS_AA_TO_ID),
            "template_domain_names": f"{pdb_id}_{chain_id}".encode(),
            "template_sum_probs": [hit.sum_probs if hit.sum_probs is not None else 0.0],
        }

    # ------------------------------------------------------------------ all hits

    def _ordered(self, hits: Sequence[TemplateHit]) -> list[TemplateHit]:
        return sorted(hits, key=lambda h: h.sum_probs or 0.0, reverse=True)

    def _empty(self, num_res: int) -> FeatureDict:
        return empty_template_features(num_res)

    def _distinct_key(self, features: Mapping[str, object], index: int) -> object:
        return index  # every template counts

    def get_templates(self, query_sequence: str,
                      hits: Sequence[TemplateHit]) -> TemplateSearchResult:
        """Template features for ``query_sequence`` (``N_res`` letters) from its hits."""
        if not query_sequence:
            raise ValueError("get_templates: the query sequence is empty")
        kept: list[dict[str, object]] = []
        seen: set[object] = set()
        errors: list[str] = []
        warnings: list[str] = []
        dropped: list[DroppedHit] = []
        counts: collections.Counter = collections.Counter()
        for index, hit in enumerate(self._ordered(hits)):
            if len(seen) >= self.max_hits:
                break
            label = hit.name.split()[0] if hit.name.split() else f"hit {hit.index}"
            try:
                features = self.process_hit(query_sequence, hit)
            except TemplateHitError as error:
                counts[error.kind] += 1
                message = f"{label} (rank {hit.index}, sum_probs {hit.sum_probs}): {error}"
                {"error": errors, "warning": warnings}.get(error.kind, []).append(message)
                dropped.append(DroppedHit(hit.index, label, error.kind, str(error)))
                logger.info("Dropped template hit %s", message)
                continue
            key = self._distinct_key(features, index)
            if key in seen:
                reason = "same template sequence as an earlier template"
                dropped.append(DroppedHit(hit.index, label, "duplicate", reason))
                logger.info("Dropped template hit %s: %s", label, reason)
                continue
            seen.add(key)
            kept.append(features)
        result = stack_template_features(kept) if kept else self._empty(len(query_sequence))
        logger.info("Templates: %d kept of %d hits (%s dropped)", len(kept), len(hits),
                    ", ".join(f"{n} {k}" for k, n in counts.items()) or "none")
        return TemplateSearchResult(result, errors, warnings, dropped)


class HhsearchHitFeaturizer(TemplateHitFeaturizer):
    """Templates from hhsearch (hhr) hits: best ``sum_probs`` first, ``max_hits`` of them,
    no template -> ``N_t = 0``."""


class HmmsearchHitFeaturizer(TemplateHitFeaturizer):
    """Templates from hmmsearch hits: file order (hmmsearch has no ``sum_probs``), only
    distinct template sequences count, no template -> one all-zero template (AF2)."""

    def _ordered(self, hits: Sequence[TemplateHit]) -> list[TemplateHit]:
        if not hits or hits[0].sum_probs is None:
            return list(hits)
        return super()._ordered(hits)

    def _distinct_key(self, features: Mapping[str, object], index: int) -> object:
        return features["template_sequence"]

    def _empty(self, num_res: int) -> FeatureDict:
        features = empty_template_features(num_res)
        for name, value in features.items():
            shape = (1, *value.shape[1:])
            features[name] = (np.array([b""], dtype=np.object_) if value.dtype == np.object_
                              else np.zeros(shape, dtype=value.dtype))
        return features
