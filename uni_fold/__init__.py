"""Uni-Fold: a trainable PyTorch reproduction of AlphaFold 2.

The prediction API (:mod:`uni_fold.api`) is imported on first use, so ``import uni_fold``
stays cheap: ``uni_fold.load_model``, ``uni_fold.predict``, ``uni_fold.Prediction``,
``uni_fold.read_targets``.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("load_model", "predict", "Prediction", "ModelPrediction", "read_targets")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from uni_fold import api

        return getattr(api, name)
    raise AttributeError(f"module 'uni_fold' has no attribute {name!r}")
