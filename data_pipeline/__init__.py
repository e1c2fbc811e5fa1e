"""Uni-Fold data pipeline: sequences, alignments and structures to raw features.

This package depends on numpy (plus gemmi / modelcif for structure files) and never
imports torch or ``uni_fold``, so it can run on machines without PyTorch.
"""

__version__ = "0.1.0"
