"""Self-distillation: predicted structures as a second training source.

AF2 trained on 75 % predicted structures of sequences without a known structure (Jumper
et al. 2021, Suppl. Section 1.3). :class:`DistillationDataset` reads such predictions
(PDB or mmCIF files with the per-residue pLDDT in the B-factor column, as AlphaFold,
ColabFold and Uni-Fold write them) together with each sequence's precomputed alignments.
Residues predicted with pLDDT below ``data_config.distillation_min_plddt`` (70) are masked
out of the ground truth, the examples carry ``is_distillation = 1`` and resolution 0 (so
the losses AF2 trains only on experimental structures skip them), and are otherwise made
like PDB examples. Mix the two with :class:`~uni_fold.data.dataset.MixedDataset` at
``data_config.distillation_ratio``.

Layout: a chain list of names (any file-system-safe name, optional cluster id after a
tab), ``<structures_dir>/<name>.pdb`` (or ``.cif``, ``.mmcif``, optionally ``.gz``) and
``<alignments_dir>/<name>/``.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from data_pipeline import protein as protein_io
from data_pipeline import residue_constants as rc
from uni_fold.data.chain_list import ChainEntry, ChainMetadata
from uni_fold.data.dataset import ChainDataset, MixedDataset, TrainingSource
from uni_fold.data.train_config import TrainingDataConfig

logger = logging.getLogger(__name__)

__all__ = ["DistillationDataset", "residue_plddt", "plddt_mask", "mixed_training_dataset"]

_SUFFIXES = (".pdb", ".cif", ".mmcif", ".ent", ".pdb.gz", ".cif.gz", ".mmcif.gz")
_CA = rc.atom_order["CA"]


def residue_plddt(prot: protein_io.Protein, source: str) -> np.ndarray:
    """Per-residue pLDDT ``[N_res]`` (0..100) from the B-factors: the CA atom's, or the
    highest of the residue's atoms when CA is absent.

    Raises:
        ValueError: the B-factors are not pLDDT in 0..100 (e.g. a 0..1 scale).
    """
    present = prot.atom_mask > 0.5
    ca = prot.b_factors[:, _CA]
    best = np.where(present, prot.b_factors, -np.inf).max(axis=-1)
    plddt = np.where(present[:, _CA], ca, best).astype(np.float32)
    if plddt.size and (plddt.min() < 0 or plddt.max() > 100):
        raise ValueError(f"{source}: B-factors range {plddt.min():g}..{plddt.max():g}; "
                         "self-distillation needs pLDDT in 0..100 in the B-factor column")
    if plddt.size and plddt.max() <= 1.0:
        raise ValueError(f"{source}: every B-factor is <= 1; the pLDDT looks like a 0..1 "
                         "scale (e.g. RoseTTAFold): multiply it by 100 in the files")
    return plddt


def plddt_mask(all_atom_mask: np.ndarray, plddt: np.ndarray, min_plddt: float) -> np.ndarray:
    """``all_atom_mask [N_res, 37]`` with residues whose ``plddt [N_res]`` is below
    ``min_plddt`` cleared."""
    keep = (np.asarray(plddt) >= min_plddt).astype(np.float32)
    return np.asarray(all_atom_mask, dtype=np.float32) * keep[:, None]


class DistillationDataset(TrainingSource):
    """Predicted structures + alignments as training examples (module docstring).

    Args:
        structures_dir: folder of ``<name>.pdb`` / ``<name>.cif`` predictions, one chain
            each, pLDDT (0..100) in the B-factors.
        alignments_dir: folder of ``<name>/`` alignment folders.
        chain_list: a chain-list file (names need not be PDB chains), or entries / names.
        config, data_config, feature_cache_dir, metadata_cache, seed: as
            :class:`~uni_fold.data.dataset.ChainDataset`.

    Raises:
        FileNotFoundError: missing structure files or alignments folders, all named.
        ValueError: a file with several chains or B-factors that are not pLDDT.
    """

    pdb_names = False

    def structure_path(self, entry: ChainEntry) -> str:
        names = [entry.name + suffix for suffix in _SUFFIXES]
        for name in names:
            path = os.path.join(self.structures_dir, name)
            if os.path.isfile(path):
                return path
        raise FileNotFoundError(f"no predicted structure for {entry.name} in "
                                f"{self.structures_dir!r} (looked for {', '.join(names)})")

    def _read(self, entry: ChainEntry) -> protein_io.Protein:
        path = self.structure_path(entry)
        prot = protein_io.from_file(path)
        if prot.num_chains != 1:
            raise ValueError(f"{path}: a self-distillation structure must hold one protein "
                             f"chain, found {prot.present_chain_ids()}; split the file")
        return prot

    def _read_metadata(self, names: Sequence[str]) -> dict[str, ChainMetadata]:
        return {name: ChainMetadata(sequence=self._read(ChainEntry(name)).sequence())
                for name in names}

    def _build(self, entry: ChainEntry, folder: str) -> dict[str, Any]:
        prot = self._read(entry)
        raw = self._pipeline_features(self._pipeline(), entry, prot.sequence(), folder)
        raw.update(
            all_atom_positions=prot.atom_positions,
            all_atom_mask=prot.atom_mask,
            plddt=residue_plddt(prot, self.structure_path(entry)),
            resolution=np.zeros((1,), np.float32),
            is_distillation=np.ones((1,), np.float32),
        )
        return raw

    def _finish(self, raw: dict[str, Any]) -> dict[str, Any]:
        plddt = raw.pop("plddt")
        raw["all_atom_mask"] = plddt_mask(raw["all_atom_mask"], plddt,
                                          self.data_config.distillation_min_plddt)
        return raw


def mixed_training_dataset(
    pdb: ChainDataset, distillation: DistillationDataset | None,
    data_config: TrainingDataConfig | None = None,
) -> MixedDataset:
    """PDB chains and self-distillation mixed at ``data_config.distillation_ratio``
    (AF2: 75 % distillation); the PDB alone when ``distillation`` is None."""
    data_config = data_config or pdb.data_config
    if distillation is None:
        return MixedDataset([pdb], [1.0])
    ratio = data_config.distillation_ratio
    return MixedDataset([pdb, distillation], [1.0 - ratio, ratio])
