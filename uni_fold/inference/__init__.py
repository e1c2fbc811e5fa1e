"""Running trained networks and writing their results.

* :mod:`uni_fold.inference.runner`: :class:`ModelRunner` (networks loaded once, chunk size
  from sequence length and free memory, retry with a smaller chunk after running out of
  memory);
* :mod:`uni_fold.inference.results`: :class:`ModelPrediction` and :class:`Prediction`
  (ranked predictions of one target);
* :mod:`uni_fold.inference.outputs`: the target directory AF2 / ColabFold users expect;
* :mod:`uni_fold.inference.plots`: pLDDT, PAE and MSA-coverage PNGs.
"""
from uni_fold.inference.results import ModelPrediction, Prediction, rank_predictions
from uni_fold.inference.runner import (
    ModelRunner,
    PredictionOutOfMemoryError,
    choose_chunk_size,
    load_runner,
)

__all__ = [
    "ModelPrediction",
    "ModelRunner",
    "Prediction",
    "PredictionOutOfMemoryError",
    "choose_chunk_size",
    "load_runner",
    "rank_predictions",
]
