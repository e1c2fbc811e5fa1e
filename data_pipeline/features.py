"""Raw feature builders (AF2's key names, dtypes and shapes) and the ``.npz`` feature cache.

A raw feature dict describes one chain before the model's input processing:

==============================  ==========================  ========
key                             shape                       dtype
==============================  ==========================  ========
aatype                          [N_res, 21] one-hot         int32
between_segment_residues        [N_res]                     int32
domain_name                     [1] bytes                   object
residue_index                   [N_res]                     int32
seq_length                      [N_res] (N_res repeated)    int32
sequence                        [1] bytes                   object
msa                             [N_seq, N_res] HHblits ids  int32
deletion_matrix_int             [N_seq, N_res]              int32
num_alignments                  [N_res] (N_seq repeated)    int32
msa_species_identifiers         [N_seq] bytes               object
template_aatype                 [N_t, N_res, 22] one-hot    float32
template_all_atom_positions     [N_t, N_res, 37, 3]         float32
template_all_atom_masks         [N_t, N_res, 37]            float32
template_domain_names           [N_t] bytes                 object
template_sequence               [N_t] bytes                 object
template_sum_probs              [N_t, 1]                    float32
==============================  ==========================  ========

``make_msa_features`` drops rows repeated across (and within) MSAs, as DeepMind's
official AF2 does. Byte-string (``object``) features are stored in ``.npz`` files as
fixed-width ``bytes`` arrays, so files load with ``allow_pickle=False``.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping, MutableMapping, Sequence

import numpy as np

from data_pipeline import msa_identifiers, residue_constants
from data_pipeline.parsers import Msa
from data_pipeline.parsers.fasta import PathLike

logger = logging.getLogger(__name__)

FeatureDict = MutableMapping[str, np.ndarray]

#: Template feature name -> dtype (AF2's ``TEMPLATE_FEATURES``).
TEMPLATE_FEATURES: dict[str, type] = {
    "template_aatype": np.float32,
    "template_all_atom_masks": np.float32,
    "template_all_atom_positions": np.float32,
    "template_domain_names": np.object_,
    "template_sequence": np.object_,
    "template_sum_probs": np.float32,
}

# Byte value -> HHblits id, -1 for characters an MSA row may not hold.
_HHBLITS_LOOKUP = np.full(256, -1, dtype=np.int32)
for _letter, _index in residue_constants.HHBLITS_AA_TO_ID.items():
    _HHBLITS_LOOKUP[ord(_letter)] = _index


def make_sequence_features(sequence: str, description: str, num_res: int) -> FeatureDict:
    """Per-residue features of the query (AF2's ``make_sequence_features``).

    Args:
        sequence: the query, ``N_res`` upper-case letters (unknown ones become X).
        description: the FASTA header (stored as ``domain_name``).
        num_res: ``N_res``; must equal ``len(sequence)``.

    Returns:
        ``aatype`` [N_res, 21] one-hot int32, ``between_segment_residues``,
        ``residue_index`` (0-based), ``seq_length`` [N_res] int32, ``domain_name`` and
        ``sequence`` [1] bytes objects.
    """
    if num_res != len(sequence):
        raise ValueError(f"num_res={num_res} but the sequence has {len(sequence)} residues")
    return {
        "aatype": residue_constants.sequence_to_onehot(
            sequence, residue_constants.restype_order_with_x, map_unknown_to_x=True),
        "between_segment_residues": np.zeros((num_res,), dtype=np.int32),
        "domain_name": np.array([description.encode("utf-8")], dtype=np.object_),
        "residue_index": np.arange(num_res, dtype=np.int32),
        "seq_length": np.full((num_res,), num_res, dtype=np.int32),
        "sequence": np.array([sequence.encode("utf-8")], dtype=np.object_),
    }


def _hhblits_ids(row: str, where: str) -> np.ndarray:
    ids = _HHBLITS_LOOKUP[np.frombuffer(row.encode("latin-1", "replace"), dtype=np.uint8)]
    if (ids < 0).any():
        bad = row[int(np.flatnonzero(ids < 0)[0])]
        raise ValueError(f"{where}: character {bad!r} is not an amino-acid letter or '-'")
    return ids


def make_msa_features(msas: Sequence[Msa], deduplicate: bool = True) -> FeatureDict:
    """Merge MSAs (query first in each) into AF2's MSA features.

    Args:
        msas: one or more ``Msa``, all ``N_res`` columns wide; the first row of the first
            is the query and stays row 0.
        deduplicate: keep only the first occurrence of each aligned sequence across all
            MSAs (official AF2); False keeps every row (the ColabFold fork's behaviour).

    Returns:
        ``msa`` [N_seq, N_res] int32 HHblits ids, ``deletion_matrix_int`` [N_seq, N_res]
        int32, ``num_alignments`` [N_res] int32, ``msa_species_identifiers`` [N_seq]
        bytes objects (empty where the description is not a UniProt entry).

    Raises:
        ValueError: no MSA, an empty MSA, or MSAs of different widths.
    """
    if not msas:
        raise ValueError("make_msa_features needs at least one MSA (e.g. the query alone)")
    num_res = len(msas[0].sequences[0]) if len(msas[0]) else 0
    rows: list[np.ndarray] = []
    deletions: list[Sequence[int]] = []
    species: list[bytes] = []
    seen: set[str] = set()
    for msa_index, msa in enumerate(msas):
        if not len(msa):
            raise ValueError(f"MSA {msa_index} is empty; every MSA needs the query row")
        for row, (sequence, deletion_row, description) in enumerate(
                zip(msa.sequences, msa.deletion_matrix, msa.descriptions, strict=True)):
            if len(sequence) != num_res:
                raise ValueError(
                    f"MSA {msa_index} row {row} has {len(sequence)} columns, the query "
                    f"{num_res}; all MSAs must be aligned to the same query"
                )
            if deduplicate:
                if sequence in seen:
                    continue
                seen.add(sequence)
            rows.append(_hhblits_ids(sequence, f"MSA {msa_index} row {row}"))
            deletions.append(deletion_row)
            species.append(msa_identifiers.get_identifiers(description).species_id.encode())
    num_alignments = len(rows)
    logger.debug("MSA features: %d rows kept of %d", num_alignments, sum(map(len, msas)))
    return {
        "msa": np.stack(rows).astype(np.int32),
        "deletion_matrix_int": np.array(deletions, dtype=np.int32).reshape(-1, num_res),
        "num_alignments": np.full((num_res,), num_alignments, dtype=np.int32),
        "msa_species_identifiers": np.array(species, dtype=np.object_),
    }


def single_sequence_msa(sequence: str, description: str = "query") -> Msa:
    """The query alone as an MSA (single-sequence mode)."""
    return Msa(sequences=[sequence], deletion_matrix=[[0] * len(sequence)],
               descriptions=[description])


def empty_template_features(num_res: int) -> FeatureDict:
    """Template features with no template (``N_t = 0``), shapes as in the table above."""
    return {
        "template_aatype": np.zeros(
            (0, num_res, len(residue_constants.restypes_with_x_and_gap)), np.float32),
        "template_all_atom_masks": np.zeros(
            (0, num_res, residue_constants.atom_type_num), np.float32),
        "template_all_atom_positions": np.zeros(
            (0, num_res, residue_constants.atom_type_num, 3), np.float32),
        "template_domain_names": np.zeros((0,), dtype=np.object_),
        "template_sequence": np.zeros((0,), dtype=np.object_),
        "template_sum_probs": np.zeros((0, 1), dtype=np.float32),
    }


def stack_template_features(per_hit: Sequence[Mapping[str, object]]) -> FeatureDict:
    """Stack per-template features (one dict per template) into ``[N_t, ...]`` arrays
    with AF2's template dtypes. ``per_hit`` must not be empty."""
    if not per_hit:
        raise ValueError("stack_template_features needs at least one template; use "
                         "empty_template_features for none")
    out: FeatureDict = {}
    for name, dtype in TEMPLATE_FEATURES.items():
        values = [hit[name] for hit in per_hit]
        if dtype is np.object_:
            out[name] = np.array(values, dtype=np.object_)
        else:
            out[name] = np.stack([np.asarray(v) for v in values]).astype(dtype)
    return out


# ------------------------------------------------------------------------ .npz cache


_META_PREFIX = "__meta__"


def save_features(features: Mapping[str, np.ndarray], path: PathLike,
                  metadata: Mapping[str, str] | None = None) -> None:
    """Write a raw feature dict to ``path`` (``.npz``, compressed, no pickle).

    ``object`` arrays must hold ``bytes`` (or ``str``); they are stored as fixed-width
    byte strings and come back as ``object`` arrays from ``load_features``. ``metadata``
    (text) is stored alongside and read back by ``read_feature_metadata``. The file is
    written under a temporary name and renamed, so a crash leaves no half-written file.
    """
    path = os.fspath(path)
    arrays = {_META_PREFIX + k: np.array(str(v)) for k, v in (metadata or {}).items()}
    for name, value in features.items():
        if name.startswith(_META_PREFIX):
            raise ValueError(f"feature name {name!r} is reserved for metadata")
        array = np.asarray(value)
        if array.dtype == np.object_:
            items = [v.encode("utf-8") if isinstance(v, str) else v for v in array.ravel()]
            if not all(isinstance(v, bytes) for v in items):
                raise ValueError(
                    f"feature {name!r} holds objects other than bytes/str; only byte strings "
                    "can be stored without pickle"
                )
            array = np.array(items, dtype=np.bytes_).reshape(array.shape) if items \
                else np.zeros(array.shape, dtype="S1")
        arrays[name] = array
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp_path = os.path.join(directory, f".{name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp_path, "xb") as out:
            np.savez_compressed(out, **arrays)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def load_features(path: PathLike) -> FeatureDict:
    """Read a feature dict written by ``save_features`` (byte strings as ``object``)."""
    path = os.fspath(path)
    with np.load(path, allow_pickle=False) as data:
        return {name: (data[name].astype(np.object_) if data[name].dtype.kind == "S"
                       else data[name])
                for name in data.files if not name.startswith(_META_PREFIX)}


def read_feature_metadata(path: PathLike) -> dict[str, str]:
    """The ``metadata`` stored by ``save_features`` (empty if none)."""
    with np.load(os.fspath(path), allow_pickle=False) as data:
        return {name[len(_META_PREFIX):]: str(data[name]) for name in data.files
                if name.startswith(_META_PREFIX)}
