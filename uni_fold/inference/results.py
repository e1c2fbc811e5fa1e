"""Result types of a structure prediction: one model's output and one target's ranked set.

:class:`ModelPrediction` holds what one model (with one seed) predicted for a target, as
numpy arrays; :class:`Prediction` holds every model's prediction of one target, ranked
best first, plus the raw features and timings. Both are plain data: nothing here runs a
model or writes a file unless asked (:meth:`Prediction.save`).

Ranking follows AlphaFold 2: by mean pLDDT (``rank_by="plddt"``), or by pTM
(``rank_by="ptm"``, the default for ``_ptm`` models; ColabFold's ``--rank ptm``). The
ranking table (:attr:`Prediction.ranking`) has the layout of AF2's ``ranking_debug.json``.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from data_pipeline import protein as protein_io
from data_pipeline import residue_constants as rc

RANK_BY = ("plddt", "ptm")
#: ``ranking_debug.json`` key of each ranking metric (AF2 writes ``"plddts"``).
RANKING_KEYS = {"plddt": "plddts", "ptm": "ptm"}


@dataclasses.dataclass
class ModelPrediction:
    """One model's prediction of one target.

    Attributes:
        name: the prediction's name in file names, e.g. ``model_1_ptm`` (or
            ``model_1_ptm_pred_1`` for a second seed).
        model_name: the model (parameter set) that made it, e.g. ``model_1_ptm``.
        seed: the seed of its input processing (MSA sampling).
        atom_positions: ``[N_res, 37, 3]`` float32, Å (``final_atom_positions``).
        atom_mask: ``[N_res, 37]`` float32 (``final_atom_mask``).
        plddt: ``[N_res]`` float32, 0-100.
        pae: ``[N_res, N_res]`` float32 predicted aligned error (Å), None without a
            PAE head.
        max_pae: the largest PAE the head can predict (Å), None without a PAE head.
        ptm: predicted TM-score, None without a PAE head.
        num_recycles: recycling iterations run (fewer than asked after an early stop).
        chunk_size: the chunk size the network finally ran with (None: unchunked).
        timings: seconds per stage (``process_features``, ``predict``).
    """

    name: str
    model_name: str
    seed: int
    atom_positions: np.ndarray
    atom_mask: np.ndarray
    plddt: np.ndarray
    pae: np.ndarray | None = None
    max_pae: float | None = None
    ptm: float | None = None
    num_recycles: int = 0
    chunk_size: int | None = None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def mean_plddt(self) -> float:
        """Mean pLDDT over residues (AF2's monomer ranking confidence)."""
        return float(np.mean(self.plddt))

    def score(self, rank_by: str) -> float:
        """The ranking confidence: mean pLDDT (0-100) or pTM (0-1)."""
        if rank_by == "plddt":
            return self.mean_plddt
        if rank_by == "ptm":
            if self.ptm is None:
                raise ValueError(
                    f"{self.name} has no pTM (its model has no PAE head); rank by 'plddt' or "
                    "use a _ptm model"
                )
            return float(self.ptm)
        raise ValueError(f"rank_by must be one of {RANK_BY}, got {rank_by!r}")


def rank_predictions(
    predictions: Sequence[ModelPrediction], rank_by: str
) -> list[ModelPrediction]:
    """``predictions`` sorted by decreasing score (stable: ties keep their order)."""
    return sorted(predictions, key=lambda p: -p.score(rank_by))


def default_rank_by(model_names: Sequence[str]) -> str:
    """``"ptm"`` when every model has a PAE head (``_ptm`` names), else ``"plddt"``."""
    names = list(model_names)
    return "ptm" if names and all(n.endswith("_ptm") for n in names) else "plddt"


@dataclasses.dataclass
class Prediction:
    """Every model's prediction of one target, ranked best first.

    Attributes:
        name: the target's file-system-safe name (from its FASTA header).
        description: the FASTA header.
        sequence: the query sequence (upper case, ``N_res`` letters).
        models: the predictions, best first (``rank_by``).
        rank_by: ``"plddt"`` or ``"ptm"``.
        features: the raw features the models were fed (numpy, AF2's names), or None.
        timings: seconds per stage for the whole target.
        relaxed: Amber-relaxed PDB text by prediction name (``--amber``).
        msa_dir: the alignments directory the MSA came from (copied to ``msas/`` by
            :meth:`save`), or None.
    """

    name: str
    description: str
    sequence: str
    models: list[ModelPrediction]
    rank_by: str = "plddt"
    features: Mapping[str, np.ndarray] | None = None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    relaxed: dict[str, str] = dataclasses.field(default_factory=dict)
    msa_dir: str | None = None

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError(f"Prediction {self.name!r} needs at least one model prediction")
        if self.rank_by not in RANK_BY:
            raise ValueError(f"rank_by must be one of {RANK_BY}, got {self.rank_by!r}")
        self.models = rank_predictions(self.models, self.rank_by)

    # -- the best model ------------------------------------------------------------------

    @property
    def best(self) -> ModelPrediction:
        """The top-ranked model prediction."""
        return self.models[0]

    @property
    def plddt(self) -> np.ndarray:
        """``[N_res]`` pLDDT of the best model."""
        return self.best.plddt

    @property
    def pae(self) -> np.ndarray | None:
        """``[N_res, N_res]`` PAE (Å) of the best model, None without a PAE head."""
        return self.best.pae

    @property
    def ptm(self) -> float | None:
        """pTM of the best model, None without a PAE head."""
        return self.best.ptm

    @property
    def protein(self) -> protein_io.Protein:
        """The best model as a :class:`data_pipeline.protein.Protein` (pLDDT in B-factors)."""
        return self.protein_of(0)

    # -- ranking ---------------------------------------------------------------------------

    @property
    def ranking(self) -> dict[str, Any]:
        """AF2's ``ranking_debug.json`` layout: ``{<metric>: {name: score}, "order":
        [names best first]}``; the metric key is ``"plddts"`` (mean pLDDT) or ``"ptm"``.
        With ``"ptm"`` the mean pLDDTs follow under ``"plddts"`` as well."""
        key = RANKING_KEYS[self.rank_by]
        out: dict[str, Any] = {key: {m.name: m.score(self.rank_by) for m in self.models}}
        if self.rank_by != "plddt":
            out["plddts"] = {m.name: m.mean_plddt for m in self.models}
        out["order"] = [m.name for m in self.models]
        return out

    def model(self, name_or_rank: str | int) -> ModelPrediction:
        """A model prediction by rank (0 = best) or by name."""
        if isinstance(name_or_rank, int):
            if not -len(self.models) <= name_or_rank < len(self.models):
                raise IndexError(
                    f"rank {name_or_rank} out of range: {self.name} has {len(self.models)} "
                    "predictions"
                )
            return self.models[name_or_rank]
        for m in self.models:
            if m.name == name_or_rank:
                return m
        raise KeyError(f"{self.name} has no prediction {name_or_rank!r}; it has "
                       f"{[m.name for m in self.models]}")

    # -- structures --------------------------------------------------------------------------

    def protein_of(self, name_or_rank: str | int = 0) -> protein_io.Protein:
        """One prediction as a ``Protein``: residues numbered 1..N_res, chain A, pLDDT
        in every atom's B-factor."""
        m = self.model(name_or_rank)
        aatype = np.array([rc.restype_order.get(a, rc.unk_restype_index) for a in self.sequence],
                          dtype=np.int32)
        return protein_io.from_prediction(
            m.atom_positions, m.atom_mask, aatype, plddt=m.plddt,
            residue_index=np.arange(1, len(self.sequence) + 1, dtype=np.int32),
        )

    def to_pdb(self, name_or_rank: str | int = 0) -> str:
        """PDB text of one prediction (default: the best), pLDDT in the B-factor column."""
        return protein_io.to_pdb(self.protein_of(name_or_rank))

    def to_mmcif(self, name_or_rank: str | int = 0) -> str:
        """ModelCIF text of one prediction (default: the best), with the per-residue pLDDT
        as a ModelCIF QA metric and Uni-Fold named as the software."""
        m = self.model(name_or_rank)
        return protein_io.to_mmcif(self.protein_of(name_or_rank), plddt=m.plddt,
                                   **mmcif_options(self.name, m.name))

    def save(self, directory: str | os.PathLike, *, overwrite: bool = False,
             plots: bool = True) -> str:
        """Write every output file into ``directory`` (see
        :func:`uni_fold.inference.outputs.write_prediction`); returns its path."""
        from uni_fold.inference.outputs import write_prediction

        return write_prediction(self, directory, overwrite=overwrite, plots=plots)


def mmcif_options(target_name: str, prediction_name: str) -> dict[str, str]:
    """ModelCIF entry options naming the target, the model and the software."""
    from uni_fold import __version__

    entry = "".join(c if c.isalnum() or c in "._-" else "_" for c in target_name) or "model"
    return {
        "entry_id": entry,
        "model_name": f"Uni-Fold {prediction_name}",
        "title": f"Uni-Fold prediction of {target_name} ({prediction_name})",
        "software_name": "Uni-Fold",
        "software_version": __version__,
    }
