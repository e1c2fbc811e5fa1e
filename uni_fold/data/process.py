"""Raw features -> the model batch: AF2's input processing in torch.

:func:`process_features` runs, in AF2's order (Jumper et al. 2021, Suppl. Section 1.2),

1. once per example: canonical types and shapes, HHblits -> our MSA alphabet, masks,
   the MSA profile, template residue types / mask / pseudo-beta / torsions, the atom14
   lookups, ``target_feat``, ground-truth features when a structure is given, template
   selection (the first ``max_templates``, or a random subset with
   ``subsample_templates``) and, in training, the crop start;
2. once per recycling iteration (and ensemble member; ``resample_msa_in_recycling``),
   with fresh random choices: MSA cluster sampling, masked MSA, nearest-centre cluster
   profiles, extra-MSA selection, ``msa_feat``;
3. per slice: the contiguous residue crop (training), padding to fixed sizes, and the
   slices stacked on a leading axis ``[num_ensemble * (num_recycle + 1), ...]``.

The output is the feature set of :mod:`uni_fold.data.schema`. The same code path serves
``predict``, ``eval`` and ``train``; the mode only adds features (ground truth) and the
crop. All randomness comes from one :class:`~uni_fold.data.sampling.Sampler` (by default
a ``torch.Generator`` seeded with ``seed``), so one seed gives one batch.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import torch

from uni_fold.config import Config, DataConfig
from uni_fold.data import msa as msa_transforms
from uni_fold.data import schema
from uni_fold.data import transforms as T
from uni_fold.data.ground_truth import make_ground_truth_features
from uni_fold.data.sampling import Sampler, TorchSampler

logger = logging.getLogger(__name__)

__all__ = ["MODES", "process_features", "prepare_features", "msa_cluster_size"]

MODES = ("predict", "eval", "train")
#: AF2's training crop (Suppl. Table 4, initial training).
DEFAULT_TRAIN_CROP_SIZE = 256
#: AF2 clamps the backbone FAPE in 90% of training examples.
CLAMPED_FAPE_PROBABILITY = 0.9
_PER_SLICE = ("msa", "deletion_matrix", "msa_mask", "msa_row_mask", "hhblits_profile")


def msa_cluster_size(data: DataConfig) -> int:
    """``N_clust``: ``max_msa_clusters``, less ``max_templates`` when
    ``reduce_msa_clusters_by_max_templates`` (template rows join the MSA in the model)."""
    if data.reduce_msa_clusters_by_max_templates:
        return data.max_msa_clusters - data.max_templates
    return data.max_msa_clusters


def _resolve_config(config: Config | DataConfig, num_recycle: int | None) -> tuple[DataConfig, int]:
    if isinstance(config, Config):
        data = config.data
        num_recycle = config.model.num_recycle if num_recycle is None else num_recycle
    elif isinstance(config, DataConfig):
        data = config
        if num_recycle is None:
            raise ValueError("pass num_recycle= with a DataConfig (or pass the whole Config)")
    else:
        raise TypeError(
            f"config must be a uni_fold.config.Config or DataConfig, got {type(config).__name__}; "
            "use uni_fold.config.model_config(name)"
        )
    if num_recycle < 0:
        raise ValueError(f"num_recycle must be >= 0, got {num_recycle}")
    if msa_cluster_size(data) < 1:
        raise ValueError(
            f"max_msa_clusters ({data.max_msa_clusters}) leaves no MSA cluster after "
            f"reducing by max_templates ({data.max_templates}); raise max_msa_clusters"
        )
    if data.max_extra_msa < 0 or data.max_templates < 0 or data.num_ensemble < 1:
        raise ValueError("max_extra_msa and max_templates must be >= 0, num_ensemble >= 1")
    return data, num_recycle


def _select_templates(
    protein: dict[str, torch.Tensor], data: DataConfig, sampler: Sampler
) -> None:
    """Keep the first ``max_templates`` templates, or with ``subsample_templates`` a random
    number of them in random order (AF2's training choice)."""
    num_templates = protein["template_mask"].shape[0]
    if data.subsample_templates:
        order = sampler.permutation(num_templates)
        start = sampler.randint(0, num_templates + 1)
        keep = order[start: start + min(num_templates - start, data.max_templates)]
    else:
        keep = torch.arange(min(num_templates, data.max_templates))
    for name in [k for k in protein if k.startswith("template_")]:
        protein[name] = protein[name][keep]


def prepare_features(
    raw: Mapping[str, Any], data: DataConfig, mode: str, sampler: Sampler
) -> dict[str, torch.Tensor]:
    """The once-per-example steps (AF2's non-ensembled transforms, template selection and
    ground truth); returns the working dict of :func:`process_features`, before the
    per-recycle MSA steps. ``data`` is a :class:`~uni_fold.config.DataConfig`."""
    protein = T.squeeze_features(raw)
    T.correct_msa_restypes(protein)
    T.make_seq_mask(protein)
    T.make_msa_mask(protein)
    T.make_hhblits_profile(protein)
    if data.use_templates:
        T.make_template_features(protein)
        _select_templates(protein, data, sampler)
    else:
        for name in [k for k in protein if k.startswith("template_")]:
            del protein[name]
    T.make_atom14_masks(protein)
    protein["target_feat"] = T.make_target_feat(
        protein["aatype"], protein["between_segment_residues"]
    )
    if "all_atom_positions" in protein:
        if mode == "predict":
            for name in ("all_atom_positions", "all_atom_mask", "resolution"):
                del protein[name]
        else:
            protein.update(make_ground_truth_features(
                protein["aatype"], protein["all_atom_positions"], protein["all_atom_mask"]
            ))
    elif mode == "train":
        raise ValueError(
            "mode='train' needs ground truth: add 'all_atom_positions', 'all_atom_mask' "
            "(and 'resolution') to the raw features, e.g. from data_pipeline.protein"
        )
    return protein


def _msa_slice(
    protein: Mapping[str, torch.Tensor], data: DataConfig, sampler: Sampler
) -> dict[str, torch.Tensor]:
    """One recycling slice's MSA features (Suppl. Alg. 1 inputs)."""
    work = {k: protein[k] for k in _PER_SLICE}
    msa_transforms.sample_msa(work, msa_cluster_size(data), sampler)
    msa_transforms.make_masked_msa(work, data.masked_msa, data.masked_msa.replace_fraction,
                                   sampler)
    if data.msa_cluster_features:
        msa_transforms.nearest_neighbor_clusters(work)
        msa_transforms.summarize_clusters(work)
    msa_transforms.crop_extra_msa(work, data.max_extra_msa, sampler)
    msa_transforms.make_msa_feat(work)
    return work


def _stack(slices: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack slices on a new leading axis, keys in the schema's order."""
    names = [k for k in schema.FEATURES if k in slices[0]]
    return {k: torch.stack([s[k] for s in slices]) for k in names}


def process_features(
    raw: Mapping[str, Any],
    config: Config | DataConfig,
    mode: str = "predict",
    seed: int = 0,
    *,
    num_recycle: int | None = None,
    crop_size: int | None = None,
    sampler: Sampler | None = None,
) -> dict[str, torch.Tensor]:
    """AF2's processed features (the model batch) from raw features.

    Args:
        raw: raw feature dict (numpy or torch; AF2's names, see ``../shared/DESIGN.md``).
            For ``train`` it must hold ``all_atom_positions``/``all_atom_mask``.
        config: the model's :class:`~uni_fold.config.Config` (its ``data`` and
            ``model.num_recycle``), or a :class:`~uni_fold.config.DataConfig` with
            ``num_recycle``.
        mode: ``predict`` (no ground truth), ``eval`` (ground truth when present, no crop)
            or ``train`` (ground truth required, random contiguous crop, sampled
            ``num_iter_recycling`` and ``use_clamped_fape``).
        seed: seed of the ``torch.Generator`` behind every random choice.
        num_recycle: overrides ``config.model.num_recycle``.
        crop_size: residues per training example (default 256); shorter chains are padded.
            Only used in ``train``.
        sampler: draw from this instead (e.g. to replay another pipeline's choices).
    Returns:
        ``{name: tensor [S, ...]}`` with ``S = num_ensemble * (num_recycle + 1)`` (or
        ``num_ensemble`` without ``resample_msa_in_recycling``); names, dtypes and shapes
        as :data:`uni_fold.data.schema.FEATURES`. CPU tensors.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    data, num_recycle = _resolve_config(config, num_recycle)
    if sampler is None:
        sampler = TorchSampler(seed)
    start_time = time.perf_counter()
    protein = prepare_features(raw, data, mode, sampler)
    num_res = protein["aatype"].shape[0]

    sizes = {
        schema.NUM_MSA_SEQ: msa_cluster_size(data),
        schema.NUM_EXTRA_SEQ: data.max_extra_msa,
        schema.NUM_TEMPLATES: data.max_templates,
    }
    crop_start = 0
    if mode == "train":
        crop_size = DEFAULT_TRAIN_CROP_SIZE if crop_size is None else crop_size
        if crop_size < 1:
            raise ValueError(f"crop_size must be >= 1, got {crop_size}")
        if num_res > crop_size:
            crop_start = sampler.randint(0, num_res - crop_size + 1)
        sizes[schema.NUM_RES] = crop_size
    else:
        crop_size = num_res

    static = {k: v for k, v in protein.items() if k in schema.FEATURES and k not in _PER_SLICE}
    num_slices = data.num_ensemble
    if data.resample_msa_in_recycling:
        num_slices *= num_recycle + 1
    slices = []
    for _ in range(num_slices):
        feats = {**static, **_msa_slice(protein, data, sampler)}
        feats = {k: v for k, v in feats.items() if k in schema.FEATURES}
        if mode == "train":
            feats = schema.crop_residues(feats, crop_start, crop_size)
        slices.append(schema.pad_to_size(feats, sizes))
    batch = _stack(slices)

    if mode == "train":
        recycles = sampler.randint(0, num_recycle + 1)
        clamped = float(sampler.uniform([1])[0] < CLAMPED_FAPE_PROBABILITY)
        batch["num_iter_recycling"] = torch.full((num_slices,), recycles, dtype=torch.int64)
        batch["use_clamped_fape"] = torch.full((num_slices,), clamped)
    logger.info(
        "processed %d residues (crop %d at %d), %d MSA rows -> %d slices in %.2f s (%s)",
        num_res, crop_size, crop_start, protein["msa"].shape[0], num_slices,
        time.perf_counter() - start_time, mode,
    )
    return batch
