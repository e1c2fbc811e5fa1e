"""The trainer's view of the training data: this rank's resumable loader over the chain
list (plus an optional self-distillation set), and the held-out chains for validation.

Thin glue over :mod:`uni_fold.data.dataset` (``ChainDataset``, ``DistillationDataset``),
:mod:`uni_fold.data.weighted_sampler` (one global stream of examples, rank ``r`` of ``W``
taking positions ``r, r + W, ...``) and :mod:`uni_fold.data.loader` (worker processes,
a ``state_dict`` with the number of examples delivered).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from uni_fold.data.dataset import ChainDataset
from uni_fold.data.distillation import DistillationDataset, mixed_training_dataset
from uni_fold.data.loader import ResumableDataLoader, make_dataloader, make_sampler
from uni_fold.train.distributed import DistributedContext
from uni_fold.train.stages import RunConfig

logger = logging.getLogger(__name__)

__all__ = ["DataPaths", "build_train_loader", "load_validation_chains"]

PathLike = str | os.PathLike


@dataclass(frozen=True)
class DataPaths:
    """Where the training data lives.

    Attributes:
        mmcif_dir: ``<pdb id>.cif`` files.
        alignments_dir: per-chain alignment folders ``<pdb id>_<chain id>/``.
        chain_list: training chains, one ``<pdb id>_<chain id>`` a line (optional cluster
            id after a tab).
        val_chain_list: held-out chains (same folders), or None.
        template_mmcif_dir: template mmCIF files (None: no templates).
        feature_cache_dir: where raw features are cached as ``.npz`` (None: no cache).
        distillation_dir, distillation_alignments_dir, distillation_chain_list: the
            self-distillation set (predicted structures with pLDDT B-factors), or None.
    """

    mmcif_dir: PathLike
    alignments_dir: PathLike
    chain_list: PathLike
    val_chain_list: PathLike | None = None
    template_mmcif_dir: PathLike | None = None
    feature_cache_dir: PathLike | None = None
    distillation_dir: PathLike | None = None
    distillation_alignments_dir: PathLike | None = None
    distillation_chain_list: PathLike | None = None


def build_train_loader(
    run: RunConfig, paths: DataPaths, ctx: DistributedContext
) -> ResumableDataLoader:
    """This rank's infinite, resumable loader of training examples (one per batch)."""
    common: dict[str, Any] = {"feature_cache_dir": paths.feature_cache_dir,
                              "seed": run.train.seed}
    pdb = ChainDataset(paths.mmcif_dir, paths.alignments_dir, paths.chain_list, run.model,
                       run.train_data, template_mmcif_dir=paths.template_mmcif_dir, **common)
    distill_args = (paths.distillation_dir, paths.distillation_alignments_dir,
                    paths.distillation_chain_list)
    distillation = None
    if any(distill_args):
        if not all(distill_args):
            raise ValueError("a self-distillation set needs all of --distillation-dir, "
                             "--distillation-alignments-dir and --distillation-chain-list")
        distillation = DistillationDataset(*distill_args, run.model, run.train_data, **common)
    dataset = mixed_training_dataset(pdb, distillation, run.train_data)
    sampler = make_sampler(dataset, seed=run.train.seed, num_replicas=ctx.world_size,
                           rank=ctx.rank)
    logger.info("training on %d chains%s", len(pdb),
                f" + {len(distillation)} distillation structures" if distillation else "")
    return make_dataloader(dataset, sampler, batch_size=1, num_workers=run.train.num_workers,
                           pin_memory=ctx.device.type == "cuda")


def load_validation_chains(run: RunConfig, paths: DataPaths) -> list[Mapping[str, Any]]:
    """Raw features (with ground truth) of the held-out chains, or [] without a list."""
    if paths.val_chain_list is None:
        return []
    val = ChainDataset(paths.mmcif_dir, paths.alignments_dir, paths.val_chain_list,
                       run.model, run.train_data, template_mmcif_dir=paths.template_mmcif_dir,
                       feature_cache_dir=paths.feature_cache_dir, seed=run.train.seed)
    chains = [val.raw_features(i) for i in range(len(val))]
    logger.info("validating on %d held-out chains", len(chains))
    return chains
