"""Where the random choices of input processing come from.

Every random draw of :mod:`uni_fold.data` goes through a :class:`Sampler`, in a fixed
order, so that a batch is a pure function of the raw features, the config and the seed.
:class:`TorchSampler` draws from a ``torch.Generator`` (CPU); tests can pass any object
with the same methods, e.g. one that replays the choices another pipeline made.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch

__all__ = ["Sampler", "TorchSampler"]


@runtime_checkable
class Sampler(Protocol):
    """The random draws the pipeline makes.

    * ``permutation(n)``: a permutation of ``0..n-1``, ``[n]`` int64.
    * ``uniform(shape)``: float32 uniform on ``[0, 1)``.
    * ``categorical(probs)``: one class index per row of ``probs [*, K]`` (probabilities
      proportional to the row, which need not sum to 1), ``[*]`` int64.
    * ``randint(low, high)``: an int uniform on ``[low, high)``.
    """

    def permutation(self, n: int) -> torch.Tensor: ...

    def uniform(self, shape: Sequence[int]) -> torch.Tensor: ...

    def categorical(self, probs: torch.Tensor) -> torch.Tensor: ...

    def randint(self, low: int, high: int) -> int: ...


class TorchSampler:
    """A :class:`Sampler` over one CPU ``torch.Generator`` seeded with ``seed``."""

    def __init__(self, seed: int) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(seed)

    def permutation(self, n: int) -> torch.Tensor:
        return torch.randperm(n, generator=self.generator, dtype=torch.int64)

    def uniform(self, shape: Sequence[int]) -> torch.Tensor:
        return torch.rand(tuple(shape), generator=self.generator, dtype=torch.float32)

    def categorical(self, probs: torch.Tensor) -> torch.Tensor:
        # Inverse CDF: one uniform per row, scaled by the row's total.
        cdf = probs.to(torch.float64).cumsum(dim=-1)
        u = self.uniform(probs.shape[:-1]).to(torch.float64) * cdf[..., -1]
        index = torch.searchsorted(cdf, u[..., None].contiguous(), right=True)[..., 0]
        return index.clamp(max=probs.shape[-1] - 1)

    def randint(self, low: int, high: int) -> int:
        if high <= low:
            raise ValueError(f"randint needs low < high, got [{low}, {high})")
        return int(torch.randint(low, high, (), generator=self.generator))
