"""Uni-Fold data pipeline: sequences, alignments and structures to raw features.

This package depends on numpy (plus gemmi / modelcif / Biopython for structure files) and
never imports torch or ``uni_fold``, so it can run on machines without PyTorch.

``data_pipeline.DataPipeline`` and ``data_pipeline.DatabaseConfig`` are imported lazily so
that ``import data_pipeline`` stays cheap.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {"DataPipeline": "data_pipeline.pipeline", "DatabaseConfig": "data_pipeline.pipeline"}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'data_pipeline' has no attribute {name!r}")
