"""Uni-Fold: a trainable PyTorch reproduction of AlphaFold 2."""

__version__ = "0.1.0"
