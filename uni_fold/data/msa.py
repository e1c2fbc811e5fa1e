"""Per-recycle MSA transforms: cluster sampling, masked MSA, cluster profiles, extra MSA.

Jumper et al. 2021, Suppl. Section 1.2.7 (MSA clustering) and 1.9.9 (masked MSA). AF2
runs these once per recycling iteration (and ensemble member), each time with fresh random
choices, on a working dict ``protein`` holding ``msa [N_seq, N_res]`` (our alphabet,
0..21), ``deletion_matrix``, ``msa_mask``, ``msa_row_mask`` and ``hhblits_profile
[N_res, 22]``. Every random draw comes from a :class:`~uni_fold.data.sampling.Sampler`.

Order, as AF2: :func:`sample_msa` -> :func:`make_masked_msa` ->
:func:`nearest_neighbor_clusters` -> :func:`summarize_clusters` -> :func:`crop_extra_msa`
-> :func:`make_msa_feat`.
"""
from __future__ import annotations

import logging
import math

import torch
from torch.nn import functional as F

from uni_fold.config import MaskedMsaConfig
from uni_fold.data.sampling import Sampler

logger = logging.getLogger(__name__)

__all__ = [
    "MSA_FEATURE_NAMES",
    "sample_msa",
    "make_masked_msa",
    "nearest_neighbor_clusters",
    "summarize_clusters",
    "crop_extra_msa",
    "make_msa_feat",
    "deletion_value",
]

#: Row-aligned MSA features that sampling splits into cluster centres and ``extra_*``.
MSA_FEATURE_NAMES = ("msa", "deletion_matrix", "msa_mask", "msa_row_mask", "bert_mask",
                     "true_msa")
#: Classes of the MSA one-hot: 20 amino acids, X, gap, and the BERT mask token (22).
NUM_MSA_CLASSES = 23
_MASK_TOKEN = 22
#: Classes that count towards cluster agreement: the 20 amino acids and X (not gap, mask).
_AGREEMENT_CLASSES = 21


def sample_msa(
    protein: dict[str, torch.Tensor], max_seq: int, sampler: Sampler
) -> dict[str, torch.Tensor]:
    """Keep the query and ``max_seq - 1`` random other rows as cluster centres; the rest
    become ``extra_*`` (Suppl. Section 1.2.7).

    Args:
        protein: holds the :data:`MSA_FEATURE_NAMES` present, ``[N_seq, ...]``.
        max_seq: number of cluster centres ``N_clust`` (fewer if the MSA is smaller).
        sampler: draws ``permutation(N_seq - 1)`` for the non-query rows.
    Returns:
        ``protein`` with those features cut to ``[min(max_seq, N_seq), ...]`` and
        ``extra_<name> [N_seq - N_clust, ...]`` added.
    """
    num_seq = protein["msa"].shape[0]
    shuffled = sampler.permutation(num_seq - 1).to(torch.int64) + 1
    order = torch.cat([torch.zeros(1, dtype=torch.int64), shuffled])
    num_sel = min(max_seq, num_seq)
    selected, rest = order[:num_sel], order[num_sel:]
    for name in MSA_FEATURE_NAMES:
        if name in protein:
            protein["extra_" + name] = protein[name][rest]
            protein[name] = protein[name][selected]
    return protein


def make_masked_msa(
    protein: dict[str, torch.Tensor],
    config: MaskedMsaConfig,
    replace_fraction: float,
    sampler: Sampler,
) -> dict[str, torch.Tensor]:
    """BERT-style corruption of the cluster centres (Suppl. Section 1.9.9).

    Each entry is selected with probability ``replace_fraction``; a selected entry becomes
    a uniformly random amino acid (``uniform_prob``), a draw from the column's MSA profile
    (``profile_prob``), itself (``same_prob``), or the mask token 22 (the rest).

    Args:
        protein: ``msa [N_clust, N_res]``, ``hhblits_profile [N_res, 22]``.
        sampler: draws ``uniform([N_clust, N_res])`` (selection), then
            ``categorical([N_clust, N_res, 23])`` (replacement).
    Returns:
        ``protein`` with the corrupted ``msa``, ``true_msa`` (the original) and
        ``bert_mask [N_clust, N_res]`` (1 where selected).
    """
    mask_prob = 1.0 - config.profile_prob - config.same_prob - config.uniform_prob
    if mask_prob < -1e-6:
        raise ValueError(
            "masked_msa profile_prob + same_prob + uniform_prob must not exceed 1, got "
            f"{config.profile_prob} + {config.same_prob} + {config.uniform_prob}"
        )
    msa = protein["msa"]
    random_aa = torch.tensor([0.05] * 20 + [0.0, 0.0], dtype=torch.float32)
    probs = (
        config.uniform_prob * random_aa
        + config.profile_prob * protein["hhblits_profile"]
        + config.same_prob * F.one_hot(msa, 22).float()
    )
    probs = F.pad(probs, (0, 1), value=max(mask_prob, 0.0))
    mask_position = sampler.uniform(msa.shape) < replace_fraction
    replacement = sampler.categorical(probs).to(msa.dtype)
    protein["bert_mask"] = mask_position.float()
    protein["true_msa"] = msa
    protein["msa"] = torch.where(mask_position, replacement, msa)
    return protein


def _agreement_one_hot(msa: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[N, N_res * 21]`` masked one-hot of the classes that count for agreement."""
    one_hot = F.one_hot(msa, NUM_MSA_CLASSES)[..., :_AGREEMENT_CLASSES].float()
    return (one_hot * mask[..., None]).flatten(-2)


def nearest_neighbor_clusters(
    protein: dict[str, torch.Tensor], chunk_size: int = 512
) -> dict[str, torch.Tensor]:
    """Assign each extra row to the cluster centre it agrees with most (Suppl. 1.2.7).

    Agreement counts columns where both hold the same amino acid or X (gaps and mask
    tokens count 0); ties go to the first centre.

    Args:
        protein: ``msa``, ``msa_mask [N_clust, N_res]``, ``extra_msa``,
            ``extra_msa_mask [N_extra, N_res]``.
        chunk_size: extra rows compared at a time (memory ``chunk * N_res * 21`` floats).
    Returns:
        ``protein`` with ``extra_cluster_assignment [N_extra]`` (int64).
    """
    centres = _agreement_one_hot(protein["msa"], protein["msa_mask"])  # [C, L*21]
    extra, extra_mask = protein["extra_msa"], protein["extra_msa_mask"]
    parts = []
    for start in range(0, extra.shape[0], chunk_size):
        rows = _agreement_one_hot(extra[start:start + chunk_size],
                                  extra_mask[start:start + chunk_size])
        parts.append(torch.argmax(rows @ centres.T, dim=1))
    protein["extra_cluster_assignment"] = (
        torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)
    )
    return protein


def summarize_clusters(protein: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cluster profiles and mean deletions over each centre and its extra rows.

    Returns:
        ``protein`` with ``cluster_profile [N_clust, N_res, 23]`` (class frequencies,
        masked entries excluded) and ``cluster_deletion_mean [N_clust, N_res]``.
    """
    msa, msa_mask = protein["msa"], protein["msa_mask"]
    num_clust, num_res = msa.shape
    assign = protein["extra_cluster_assignment"]
    extra, extra_mask = protein["extra_msa"], protein["extra_msa_mask"]
    counts = torch.zeros(num_clust, num_res).index_add_(0, assign, extra_mask)
    msa_sum = torch.zeros(num_clust, num_res, NUM_MSA_CLASSES)
    columns = torch.arange(num_res).expand(extra.shape)
    msa_sum.index_put_((assign[:, None].expand(extra.shape), columns, extra), extra_mask,
                       accumulate=True)
    msa_sum += F.one_hot(msa, NUM_MSA_CLASSES).float()
    mask_counts = (1e-6 + msa_mask) + counts  # the centre counts itself
    protein["cluster_profile"] = msa_sum / mask_counts[..., None]
    del_sum = torch.zeros(num_clust, num_res).index_add_(
        0, assign, extra_mask * protein["extra_deletion_matrix"]
    )
    del_sum += protein["deletion_matrix"]
    protein["cluster_deletion_mean"] = del_sum / mask_counts
    return protein


def crop_extra_msa(
    protein: dict[str, torch.Tensor], max_extra_msa: int, sampler: Sampler
) -> dict[str, torch.Tensor]:
    """Keep ``max_extra_msa`` random extra rows (drawn as ``permutation(N_extra)``)."""
    num_extra = protein["extra_msa"].shape[0]
    keep = sampler.permutation(num_extra).to(torch.int64)[: min(max_extra_msa, num_extra)]
    for name in MSA_FEATURE_NAMES:
        if "extra_" + name in protein:
            protein["extra_" + name] = protein["extra_" + name][keep]
    return protein


def deletion_value(deletions: torch.Tensor) -> torch.Tensor:
    """AF2's squashing of deletion counts: ``atan(d / 3) * 2 / pi`` in [0, 1)."""
    return torch.atan(deletions / 3.0) * (2.0 / math.pi)


def make_msa_feat(protein: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``msa_feat [N_clust, N_res, 49]`` and the extra MSA's deletion features.

    Channels (Suppl. Table 1): one-hot ``msa`` (23), ``has_deletion`` (1),
    ``deletion_value`` (1), ``cluster_profile`` (23), ``cluster_deletion_mean`` squashed
    like ``deletion_value`` (1). Without cluster features the last 24 are absent.
    Adds ``extra_has_deletion`` and ``extra_deletion_value [N_extra, N_res]``.
    """
    deletion = protein["deletion_matrix"]
    parts = [
        F.one_hot(protein["msa"], NUM_MSA_CLASSES).float(),
        deletion.clamp(0.0, 1.0)[..., None],
        deletion_value(deletion)[..., None],
    ]
    if "cluster_profile" in protein:
        parts += [
            protein["cluster_profile"],
            deletion_value(protein["cluster_deletion_mean"])[..., None],
        ]
    protein["msa_feat"] = torch.cat(parts, dim=-1)
    if "extra_deletion_matrix" in protein:
        extra_deletion = protein["extra_deletion_matrix"]
        protein["extra_has_deletion"] = extra_deletion.clamp(0.0, 1.0)
        protein["extra_deletion_value"] = deletion_value(extra_deletion)
    return protein
