"""An infinite, deterministic, resumable weighted sampler sharded across ranks.

The sampler defines one **global stream** of examples for a seed: position ``p = 0, 1,
2, ...`` of the stream is a :class:`SampleKey` (which source, which example, and the seed
of that example's random choices). Rank ``r`` of ``W`` takes positions ``r, r + W,
r + 2W, ...``, so ranks see disjoint parts of the same stream, and ``W`` ranks together
see exactly what one process would.

Positions are drawn in chunks of ``chunk_size``; chunk ``c`` comes from a numpy
``Generator`` seeded with ``(seed, c)``, so any position can be reached without replaying
the stream before it (resuming costs one chunk). With several sources (e.g. PDB chains
and self-distillation) each position first picks a source by ``ratios``, then an example
of that source by its weights.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = ["SampleKey", "derive_seed", "WeightedSampler"]


class SampleKey(NamedTuple):
    """One position of the sample stream, what a dataset's ``__getitem__`` receives.

    Attributes:
        source: index of the source in a mixture (0 for a single dataset).
        index: example index within that source.
        seed: seed of every random choice made for this example (crop, MSA sampling,
            block deletion, number of recycles).
        position: position in the global stream.
    """

    source: int
    index: int
    seed: int
    position: int


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that depends on every part (numpy ``SeedSequence`` hashing), e.g.
    ``derive_seed(global_seed, position)``. Parts must be non-negative ints."""
    if any(not isinstance(p, int | np.integer) or p < 0 for p in parts):
        raise ValueError(f"seed parts must be non-negative ints, got {parts}")
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _as_probabilities(weights: Any, what: str) -> np.ndarray:
    array = np.asarray(weights, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D array, got shape {array.shape}")
    if not np.all(np.isfinite(array)) or (array < 0).any():
        raise ValueError(f"{what} must be finite and >= 0")
    total = array.sum()
    if total <= 0:
        raise ValueError(f"{what} are all zero; nothing can be drawn")
    return array / total


class WeightedSampler(torch.utils.data.Sampler):
    """Draws :class:`SampleKey` s with replacement, forever (or ``num_samples`` per rank).

    Args:
        weights: one weight per example ``[N]`` (need not sum to 1), or a list of such
            arrays, one per source.
        ratios: with several sources, the fraction of draws from each (normalised);
            None for a single source.
        seed: the stream's seed.
        num_replicas: ranks sharing the stream (DDP world size).
        rank: this process's rank.
        num_samples: stop after this many samples on this rank; None: never stop.
        chunk_size: positions drawn at once (any value gives the same stream for the
            same chunk size; changing it changes the stream).
    """

    def __init__(
        self,
        weights: Sequence[float] | np.ndarray | Sequence[Sequence[float] | np.ndarray],
        *,
        ratios: Sequence[float] | None = None,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        num_samples: int | None = None,
        chunk_size: int = 1024,
    ) -> None:
        nested = len(weights) > 0 and np.ndim(weights[0]) == 1
        per_source = list(weights) if nested else [weights]
        self.probabilities = [
            _as_probabilities(w, f"weights of source {i}") for i, w in enumerate(per_source)
        ]
        if ratios is None:
            if len(per_source) != 1:
                raise ValueError(f"{len(per_source)} weight arrays given: pass ratios= with "
                                 "the fraction of draws from each source")
            ratios = [1.0]
        if len(ratios) != len(per_source):
            raise ValueError(f"ratios has {len(ratios)} entries for {len(per_source)} sources")
        self.ratios = _as_probabilities(ratios, "ratios")
        if not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, got "
                             f"rank={rank}, num_replicas={num_replicas}")
        if num_samples is not None and num_samples < 0:
            raise ValueError(f"num_samples must be >= 0 or None, got {num_samples}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.seed = int(seed)
        self.num_replicas = num_replicas
        self.rank = rank
        self.num_samples = num_samples
        self.chunk_size = chunk_size
        self.num_samples_drawn = 0
        self._chunk_cache: tuple[int, np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ the stream

    def _chunk(self, chunk: int) -> tuple[np.ndarray, np.ndarray]:
        """Sources and indices ``[chunk_size]`` of global chunk ``chunk``."""
        if self._chunk_cache is not None and self._chunk_cache[0] == chunk:
            return self._chunk_cache[1], self._chunk_cache[2]
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, chunk])))
        if len(self.ratios) == 1:
            sources = np.zeros(self.chunk_size, dtype=np.int64)
        else:
            sources = rng.choice(len(self.ratios), size=self.chunk_size, p=self.ratios)
        indices = np.zeros(self.chunk_size, dtype=np.int64)
        for source, probs in enumerate(self.probabilities):
            where = np.flatnonzero(sources == source)
            if where.size:
                indices[where] = rng.choice(probs.size, size=where.size, p=probs)
        self._chunk_cache = (chunk, sources, indices)
        return sources, indices

    def key_at(self, position: int) -> SampleKey:
        """The :class:`SampleKey` at a global stream position."""
        if position < 0:
            raise ValueError(f"stream positions are >= 0, got {position}")
        sources, indices = self._chunk(position // self.chunk_size)
        offset = position % self.chunk_size
        return SampleKey(int(sources[offset]), int(indices[offset]),
                         derive_seed(self.seed, position), position)

    def global_position(self, num_drawn: int | None = None) -> int:
        """Global position of this rank's ``num_drawn``-th sample (default: the next)."""
        drawn = self.num_samples_drawn if num_drawn is None else num_drawn
        return self.rank + drawn * self.num_replicas

    def __iter__(self) -> Iterator[SampleKey]:
        while self.num_samples is None or self.num_samples_drawn < self.num_samples:
            key = self.key_at(self.global_position())
            self.num_samples_drawn += 1
            yield key

    def __len__(self) -> int:
        if self.num_samples is None:
            raise TypeError("an infinite WeightedSampler has no length; pass num_samples= "
                            "for a finite one")
        return self.num_samples

    # ------------------------------------------------------------------- resuming

    def set_position(self, num_samples_drawn: int) -> None:
        """Continue the stream after this rank's first ``num_samples_drawn`` samples."""
        if num_samples_drawn < 0:
            raise ValueError(f"num_samples_drawn must be >= 0, got {num_samples_drawn}")
        self.num_samples_drawn = int(num_samples_drawn)

    def state_dict(self) -> dict[str, int]:
        """``seed``, ``num_replicas``, ``rank``, ``num_samples_drawn`` (this rank) and
        ``samples_seen`` (all ranks: ``num_samples_drawn * num_replicas``)."""
        return {
            "seed": self.seed,
            "num_replicas": self.num_replicas,
            "rank": self.rank,
            "num_samples_drawn": self.num_samples_drawn,
            "samples_seen": self.num_samples_drawn * self.num_replicas,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume from :meth:`state_dict`. The seed must match. With another world size
        the stream continues after the samples all ranks had seen (rounded up, so no
        sample is repeated)."""
        for name in ("seed", "num_samples_drawn"):
            if name not in state:
                raise ValueError(f"sampler state lacks {name!r}; pass WeightedSampler."
                                 "state_dict() output")
        if int(state["seed"]) != self.seed:
            raise ValueError(f"the sampler state was saved with seed {state['seed']} but this "
                             f"sampler has seed {self.seed}; build it with the saved seed")
        old_replicas = int(state.get("num_replicas", self.num_replicas))
        drawn = int(state["num_samples_drawn"])
        if old_replicas != self.num_replicas:
            seen = drawn * old_replicas
            drawn = math.ceil(seen / self.num_replicas)
            if drawn * self.num_replicas != seen:
                logger.warning("resuming %d samples seen on %d ranks with %d ranks: skipping "
                               "%d samples", seen, old_replicas, self.num_replicas,
                               drawn * self.num_replicas - seen)
        self.set_position(drawn)
