"""Writing a target's results in the layout AlphaFold 2 and ColabFold users expect.

Per target, ``<output_dir>/<name>/`` holds:

=============================  ==========================================================
``ranked_<i>.pdb`` / ``.cif``  the predictions best first (relaxed when relaxed), pLDDT in
                               the B-factor column; the mmCIF is ModelCIF naming Uni-Fold
``unrelaxed_<model>.pdb``      every prediction as the network gave it
``relaxed_<model>.pdb``        Amber-relaxed predictions (``--amber``)
``ranking_debug.json``         AF2's ranking table: ``{"plddts" | "ptm": {..}, "order": [..]}``
``confidence_<model>.json``    per-residue pLDDT, the PAE matrix, max PAE, pTM
``timings.json``               seconds per stage (AF2's keys: ``features``,
                               ``process_features_<model>``, ``predict_and_compile_<model>``,
                               ``relax_<model>``)
``features.npz``               the raw input features (``data_pipeline.features``, no pickle)
``msas/``                      the alignment files the MSA came from
``plddt.png``, ``pae.png``,    plots (:mod:`uni_fold.inference.plots`)
``msa_coverage.png``
=============================  ==========================================================

Everything is first written into a hidden temporary directory next to the target
directory, which is renamed into place at the end: a target directory is either complete
or absent. :func:`is_finished` tells a complete one (it has ``ranking_debug.json``).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from data_pipeline import features as feature_io
from data_pipeline import protein as protein_io
from uni_fold.inference import plots
from uni_fold.inference.results import ModelPrediction, Prediction, mmcif_options

logger = logging.getLogger(__name__)

RANKING_FILE = "ranking_debug.json"
TIMINGS_FILE = "timings.json"
FEATURES_FILE = "features.npz"
MSAS_DIR = "msas"
PLDDT_PLOT = "plddt.png"
PAE_PLOT = "pae.png"
MSA_PLOT = "msa_coverage.png"


def confidence_file(name: str) -> str:
    return f"confidence_{name}.json"


def unrelaxed_file(name: str) -> str:
    return f"unrelaxed_{name}.pdb"


def relaxed_file(name: str) -> str:
    return f"relaxed_{name}.pdb"


def ranked_file(rank: int, suffix: str = ".pdb") -> str:
    return f"ranked_{rank}{suffix}"


def _two_decimals(values: np.ndarray) -> list:
    """Values rounded as the PDB B-factor column rounds them (``%.2f``), nested lists."""
    array = np.asarray(values, dtype=np.float64)
    rounded = np.vectorize(lambda v: float(f"{v:.2f}"), otypes=[np.float64])(array) \
        if array.size else array
    return rounded.tolist()


def confidence_json(m: ModelPrediction) -> dict[str, Any]:
    """The ``confidence_<model>.json`` content of one prediction.

    Keys: ``model_name``, ``seed``, ``num_recycles``, ``plddt`` [N_res] (2 decimals, as
    the PDB B-factors), ``mean_plddt``, ``ptm``, ``max_pae`` and ``pae`` [N_res][N_res]
    (Å, 2 decimals, as AF2's and ColabFold's JSON); the last three are null for models
    without a PAE head.
    """
    return {
        "model_name": m.model_name,
        "seed": int(m.seed),
        "num_recycles": int(m.num_recycles),
        "plddt": _two_decimals(m.plddt),
        "mean_plddt": round(m.mean_plddt, 4),
        "ptm": None if m.ptm is None else float(m.ptm),
        "max_pae": None if m.max_pae is None else float(m.max_pae),
        "pae": None if m.pae is None else np.round(np.asarray(m.pae, np.float64), 2).tolist(),
    }


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=4) + "\n", encoding="utf-8")


def is_finished(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a complete target output (its ``ranking_debug.json``)."""
    return (Path(directory) / RANKING_FILE).is_file()


def copy_alignments(source: str | os.PathLike, destination: str | os.PathLike) -> list[str]:
    """Copy the alignment files the data pipeline reads from ``source`` (an alignments
    directory: its MSAs and template hits; or one ``.a3m`` file) into ``destination``.
    Returns the names copied."""
    from data_pipeline.alignment_files import find_alignment_files

    found = find_alignment_files(source)
    files = [m.path for m in found.msas] + ([found.template_hits] if found.template_hits else [])
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copyfile(path, destination / os.path.basename(path))
    return [os.path.basename(p) for p in files]


def _ranked_protein(prediction: Prediction, m: ModelPrediction) -> protein_io.Protein:
    if m.name in prediction.relaxed:
        return protein_io.from_pdb_string(prediction.relaxed[m.name])
    return prediction.protein_of(m.name)


def _write_files(prediction: Prediction, out: Path, plots_on: bool) -> None:
    """Every output file of ``prediction`` into the (new, empty) directory ``out``."""
    if prediction.features is not None:
        feature_io.save_features(prediction.features, out / FEATURES_FILE)
    if prediction.msa_dir is not None and os.path.exists(prediction.msa_dir):
        copy_alignments(prediction.msa_dir, out / MSAS_DIR)
    for m in prediction.models:
        (out / unrelaxed_file(m.name)).write_text(prediction.to_pdb(m.name), encoding="utf-8")
        _write_json(out / confidence_file(m.name), confidence_json(m))
    for name, text in prediction.relaxed.items():
        (out / relaxed_file(name)).write_text(text, encoding="utf-8")
    for rank, m in enumerate(prediction.models):
        prot = _ranked_protein(prediction, m)
        (out / ranked_file(rank, ".pdb")).write_text(protein_io.to_pdb(prot), encoding="utf-8")
        cif = protein_io.to_mmcif(prot, plddt=m.plddt, **mmcif_options(prediction.name, m.name))
        (out / ranked_file(rank, ".cif")).write_text(cif, encoding="utf-8")
    if plots_on:
        write_plots(prediction, out)
    _write_json(out / TIMINGS_FILE, {k: round(float(v), 4) for k, v in prediction.timings.items()})
    _write_json(out / RANKING_FILE, prediction.ranking)  # last: marks the target finished


def write_plots(prediction: Prediction, directory: str | os.PathLike) -> list[str]:
    """``plddt.png`` (all models), ``pae.png`` (models with a PAE head) and
    ``msa_coverage.png`` (when the raw features hold the MSA) into ``directory``."""
    directory = Path(directory)
    written = [plots.plot_plddt({m.name: m.plddt for m in prediction.models},
                                directory / PLDDT_PLOT, title=f"{prediction.name}: pLDDT")]
    paes = {m.name: m.pae for m in prediction.models if m.pae is not None}
    if paes:
        max_pae = max((m.max_pae for m in prediction.models if m.max_pae is not None),
                      default=None)
        written.append(plots.plot_pae(paes, directory / PAE_PLOT, max_pae=max_pae))
    features: Mapping[str, np.ndarray] | None = prediction.features
    if features is not None and "msa" in features:
        written.append(plots.plot_msa_coverage(
            features["msa"], directory / MSA_PLOT, title=f"{prediction.name}: MSA coverage"))
    return written


def write_prediction(prediction: Prediction, directory: str | os.PathLike, *,
                     overwrite: bool = False, plots: bool = True) -> str:
    """Write every output of ``prediction`` into ``directory`` (layout in the module
    docstring), atomically: files go to a hidden temporary directory beside it, renamed
    into place at the end.

    Args:
        prediction: the ranked predictions of one target.
        directory: the target directory (created; its parent too).
        overwrite: replace an existing ``directory``; otherwise it is an error.
        plots: draw the PNG plots.

    Returns:
        The target directory's path.

    Raises:
        FileExistsError: ``directory`` exists and ``overwrite`` is off.
    """
    target = Path(directory)
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"output directory {target} already exists; pass overwrite=True (--overwrite) to "
            "replace it, or choose another output directory"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    staging = target.parent / f".{target.name}.tmp-{tag}"
    staging.mkdir()
    old = None
    try:
        _write_files(prediction, staging, plots)
        if target.exists():
            old = target.parent / f".{target.name}.old-{tag}"
            os.replace(target, old)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None and old.exists() and not target.exists():
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    logger.info("wrote %s (%d predictions, ranked by %s: %s)", target, len(prediction.models),
                prediction.rank_by, ", ".join(prediction.ranking["order"]))
    return str(target)
