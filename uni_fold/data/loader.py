"""The training ``DataLoader``: worker processes, seeding and resumable position.

Every random choice of an example is seeded by its
:class:`~uni_fold.data.weighted_sampler.SampleKey` (made in the main process by the
sampler), so the batches are the same with 0 or many workers. Workers still get distinct,
reproducible global seeds (``torch``, ``numpy``, ``random``) for any code that uses them.

Workers prefetch, so the sampler runs ahead of the training loop. The loader therefore
counts the samples it has *delivered*; its :meth:`ResumableDataLoader.state_dict` is the
position to resume from, and :meth:`~ResumableDataLoader.load_state_dict` makes the next
iteration continue exactly there.
"""
from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from uni_fold.data.weighted_sampler import WeightedSampler, derive_seed

logger = logging.getLogger(__name__)

__all__ = ["ResumableDataLoader", "make_dataloader", "make_sampler", "seed_worker"]


def seed_worker(base_seed: int, worker_id: int) -> None:
    """``worker_init_fn``: seed torch, numpy and ``random`` from ``(base_seed, worker_id)``."""
    seed = derive_seed(base_seed, worker_id)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the legacy global state, on purpose
    random.seed(seed)


def _batch_length(batch: Any) -> int:
    if isinstance(batch, Mapping) and batch:
        first = next(iter(batch.values()))
        return len(first)
    if isinstance(batch, list | tuple):
        return len(batch)
    raise TypeError(f"cannot count the samples of a batch of type {type(batch).__name__}; "
                    "collate_fn must return a dict of tensors or a list")


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a :class:`WeightedSampler` that knows how many samples it
    delivered, so training can resume at the next one. Build it with
    :func:`make_dataloader`."""

    def __init__(self, dataset: Dataset, sampler: WeightedSampler, **kwargs: Any) -> None:
        if not isinstance(sampler, WeightedSampler):
            raise TypeError(f"sampler must be a WeightedSampler, got {type(sampler).__name__}")
        super().__init__(dataset, sampler=sampler, **kwargs)
        self._delivered = sampler.num_samples_drawn

    @property
    def num_samples_delivered(self) -> int:
        """Samples this rank's loader has yielded (in batches) so far."""
        return self._delivered

    def __iter__(self) -> Iterator[Any]:
        # Start where the consumer is, not where prefetching left the sampler.
        self.sampler.set_position(self._delivered)
        for batch in super().__iter__():
            self._delivered += _batch_length(batch)
            yield batch

    def state_dict(self) -> dict[str, int]:
        """The sampler's state at the position after the last delivered batch."""
        state = self.sampler.state_dict()
        state["num_samples_drawn"] = self._delivered
        state["samples_seen"] = self._delivered * self.sampler.num_replicas
        return state

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue after the samples recorded in ``state`` (from :meth:`state_dict`)."""
        self.sampler.load_state_dict(state)
        self._delivered = self.sampler.num_samples_drawn


def make_sampler(
    dataset: Dataset, *, seed: int = 0, num_replicas: int = 1, rank: int = 0,
    num_samples: int | None = None,
) -> WeightedSampler:
    """The :class:`WeightedSampler` of a training dataset (``ChainDataset``,
    ``DistillationDataset`` or ``MixedDataset``): its weights and source ratios, this
    rank's shard of the stream."""
    if not hasattr(dataset, "source_weights"):
        raise TypeError(f"{type(dataset).__name__} has no source_weights; use a "
                        "ChainDataset, DistillationDataset or MixedDataset")
    return WeightedSampler(dataset.source_weights, ratios=dataset.source_ratios, seed=seed,
                           num_replicas=num_replicas, rank=rank, num_samples=num_samples)


def make_dataloader(
    dataset: Dataset,
    sampler: WeightedSampler,
    batch_size: int = 1,
    num_workers: int = 0,
    *,
    seed: int | None = None,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    pin_memory: bool = False,
    prefetch_factor: int | None = None,
    persistent_workers: bool = False,
    multiprocessing_context: Any = None,
    timeout: float = 0,
) -> ResumableDataLoader:
    """The training loader: ``batch_size`` examples stacked (``[B, S, ...]`` for
    processed batches of ``S`` recycling slices), loaded in ``num_workers`` processes.

    Args:
        dataset: indexed by the sampler's keys.
        sampler: this rank's :class:`WeightedSampler`.
        batch_size: examples per batch (all have ``N_res = crop_size``).
        num_workers: loader processes; the batches do not depend on it.
        seed: base of the workers' global seeds; default the sampler's seed.
        collate_fn, pin_memory, prefetch_factor, persistent_workers,
            multiprocessing_context, timeout: as ``torch.utils.data.DataLoader``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    base_seed = sampler.seed if seed is None else seed
    extra: dict[str, Any] = {}
    if num_workers > 0:
        extra.update(prefetch_factor=prefetch_factor, persistent_workers=persistent_workers,
                     multiprocessing_context=multiprocessing_context)
    return ResumableDataLoader(
        dataset, sampler,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        drop_last=False,
        timeout=timeout,
        worker_init_fn=functools.partial(seed_worker, derive_seed(base_seed, sampler.rank)),
        generator=torch.Generator().manual_seed(base_seed),
        **extra,
    )
