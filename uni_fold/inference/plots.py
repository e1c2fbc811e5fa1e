"""PNG plots of a prediction: pLDDT per residue, PAE heat maps, MSA coverage.

Drawn with matplotlib's object API on the Agg canvas (no pyplot state, no display needed,
safe in threads). Each function writes its PNG under a temporary name and renames it, so a
reader never sees half a file.
"""
from __future__ import annotations

import logging
import math
import os
import uuid
from collections.abc import Mapping

import numpy as np

logger = logging.getLogger(__name__)

#: HHblits alphabet id of the gap ('-') in the raw ``msa`` feature.
GAP_ID = 21
#: pLDDT bands of the AlphaFold DB (very low / low / confident / very high).
PLDDT_BANDS = (50.0, 70.0, 90.0)
DPI = 100


def _figure(width: float, height: float):  # noqa: ANN202 - matplotlib Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> str:  # noqa: ANN001 - matplotlib Figure
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex[:8]}.tmp.png")
    try:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    logger.debug("wrote %s", path)
    return path


def plot_plddt(plddts: Mapping[str, np.ndarray], path: str | os.PathLike,
               title: str | None = None) -> str:
    """One line per model: pLDDT ``[N_res]`` (0-100) against the residue number.

    Args:
        plddts: prediction name -> per-residue pLDDT, in the order to draw (best first).
        path: the PNG to write.
        title: figure title (default "Predicted LDDT per position").
    """
    if not plddts:
        raise ValueError("plot_plddt needs at least one model's pLDDT")
    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    for name, plddt in plddts.items():
        plddt = np.asarray(plddt, dtype=np.float64)
        if plddt.ndim != 1:
            raise ValueError(f"pLDDT of {name} must be [N_res], got shape {plddt.shape}")
        ax.plot(np.arange(1, plddt.size + 1), plddt, label=f"{name} ({plddt.mean():.1f})",
                linewidth=1.2)
    for level in PLDDT_BANDS:
        ax.axhline(level, color="grey", linewidth=0.6, linestyle="--")
    ax.set_ylim(0, 100)
    ax.set_xlabel("Residue")
    ax.set_ylabel("Predicted LDDT")
    ax.set_title(title or "Predicted LDDT per position")
    ax.legend(loc="lower left", fontsize="small")
    return _save(fig, path)


def plot_pae(paes: Mapping[str, np.ndarray], path: str | os.PathLike,
             max_pae: float | None = None) -> str:
    """PAE heat maps ``[N_res, N_res]`` (Å), one panel per model, a shared colour scale
    from 0 to ``max_pae`` (default: the largest value shown)."""
    if not paes:
        raise ValueError("plot_pae needs at least one model's PAE")
    mats = {name: np.asarray(p, dtype=np.float64) for name, p in paes.items()}
    for name, p in mats.items():
        if p.ndim != 2 or p.shape[0] != p.shape[1]:
            raise ValueError(f"PAE of {name} must be [N_res, N_res], got shape {p.shape}")
    vmax = max_pae if max_pae is not None else max(float(p.max()) for p in mats.values())
    cols = min(len(mats), 5)
    rows = math.ceil(len(mats) / cols)
    fig = _figure(3.6 * cols, 3.3 * rows)
    image = None
    for k, (name, p) in enumerate(mats.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        image = ax.imshow(p, cmap="bwr", vmin=0.0, vmax=vmax, interpolation="nearest",
                          extent=(0.5, p.shape[1] + 0.5, p.shape[0] + 0.5, 0.5))
        ax.set_title(name, fontsize="small")
        ax.set_xlabel("Scored residue")
        ax.set_ylabel("Aligned residue")
    fig.colorbar(image, ax=fig.axes, label="Expected position error (Å)", shrink=0.8)
    return _save(fig, path)


def msa_coverage(msa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row identity to the query and the coverage picture of an MSA.

    Args:
        msa: ``[N_seq, N_res]`` HHblits ids (the raw ``msa`` feature), query first.

    Returns:
        ``(image [N_seq, N_res], coverage [N_res])``: rows sorted by decreasing identity
        to the query, each aligned position holding the row's identity (NaN at gaps), and
        the number of non-gap rows per column.
    """
    msa = np.asarray(msa)
    if msa.ndim != 2 or msa.shape[0] < 1:
        raise ValueError(f"msa must be [N_seq >= 1, N_res], got shape {msa.shape}")
    present = msa != GAP_ID
    identity = (msa == msa[:1]).mean(axis=1)
    order = np.argsort(-identity, kind="stable")
    image = np.where(present, identity[:, None], np.nan)[order]
    return image, present.sum(axis=0)


def plot_msa_coverage(msa: np.ndarray, path: str | os.PathLike, title: str | None = None) -> str:
    """ColabFold-style MSA picture: one row per sequence (sorted by identity to the query,
    coloured by it), gaps blank, and the number of sequences covering each position."""
    image, coverage = msa_coverage(msa)
    n_seq, n_res = image.shape
    fig = _figure(8, 5)
    ax = fig.add_subplot()
    shown = ax.imshow(image, cmap="rainbow_r", vmin=0.0, vmax=1.0, aspect="auto",
                      interpolation="nearest", origin="lower",
                      extent=(0.5, n_res + 0.5, 0, n_seq))
    ax.plot(np.arange(1, n_res + 1), coverage, color="black", linewidth=1.0)
    ax.set_xlim(0.5, n_res + 0.5)
    ax.set_ylim(0, n_seq)
    ax.set_xlabel("Position")
    ax.set_ylabel("Sequences")
    ax.set_title(title or f"Sequence coverage ({n_seq} sequences)")
    fig.colorbar(shown, ax=ax, label="Sequence identity to query")
    return _save(fig, path)
