"""Training Uni-Fold: AF2's optimiser, schedule, EMA and stages, DDP / DeepSpeed,
atomic checkpoints with exact resume, metrics (``train-uni-fold``, :mod:`.cli`).

The pieces: :mod:`.stages` (configuration), :mod:`.optim` (Adam, schedule, EMA),
:mod:`.distributed` (process groups, DDP / DeepSpeed), :mod:`.checkpoint`,
:mod:`.metrics` (lDDT-Ca, TM-score, ``metrics.jsonl``), :mod:`.data` (loaders) and
:mod:`.trainer` (the loop). Import the submodules directly; this package imports
nothing heavy.
"""
__all__ = ["checkpoint", "cli", "data", "distributed", "metrics", "optim", "stages", "trainer"]
