"""Amber relaxation of predicted structures with AlphaFold 2's protocol.

`AmberRelaxation(...).process(prot)` returns the relaxed PDB text, debug numbers and the
per-residue violation mask. Needs the `relax` extra (OpenMM and pdbfixer); the numpy
violation check in `uni_fold.relax.violations` works without it. No torch is imported.
"""
from __future__ import annotations

from typing import Any

MISSING_EXTRA = (
    "Amber relaxation needs OpenMM and pdbfixer; install them with "
    "`pip install 'uni-fold[relax]'` (or `pip install openmm pdbfixer`)"
)

__all__ = ["AmberRelaxation", "MISSING_EXTRA", "find_structural_violations", "run_pipeline"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `uni_fold.relax.violations` imports without OpenMM installed.
    if name == "AmberRelaxation":
        from uni_fold.relax.relax import AmberRelaxation

        return AmberRelaxation
    if name == "run_pipeline":
        from uni_fold.relax.amber_minimize import run_pipeline

        return run_pipeline
    if name == "find_structural_violations":
        from uni_fold.relax.violations import find_structural_violations

        return find_structural_violations
    raise AttributeError(f"module 'uni_fold.relax' has no attribute {name!r}")
