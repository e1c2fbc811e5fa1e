"""Settings of the training data: filters, sampling weights, crops, MSA block deletion,
recycling and self-distillation (Jumper et al. 2021, Suppl. Sections 1.2.5, 1.2.6, 1.3).

The model's own input processing (MSA clusters, extra MSA, templates) stays in
:class:`uni_fold.config.DataConfig`; what is here only matters when training.
"""
from __future__ import annotations

import dataclasses
import datetime

__all__ = ["TrainingDataConfig", "parse_date"]


def parse_date(value: str, what: str) -> datetime.date:
    """``YYYY-MM-DD`` -> date, with an error naming ``what`` otherwise."""
    try:
        return datetime.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a date as YYYY-MM-DD, got {value!r}") from None


@dataclasses.dataclass
class TrainingDataConfig:
    """What the training data pipeline does around ``process_features``.

    Attributes:
        crop_size: residues per example (AF2: 256 initial training, 384 fine-tuning).
        num_recycle: the largest number of recycling iterations drawn per example (AF2
            draws 0..num_recycle, i.e. 1..num_recycle+1 passes, Suppl. 1.10); None takes
            ``config.model.num_recycle``.
        max_resolution: chains of entries solved at a worse resolution (Å) are dropped
            (AF2: 9 Å). Entries without a resolution (NMR, 0.0) are kept.
        min_length, max_length: SEQRES length range kept (None: no upper bound).
        max_single_aa_fraction: chains where one amino acid makes up more than this
            fraction of the sequence are dropped (AF2: 0.8).
        max_release_date: chains of entries released after this date (``YYYY-MM-DD``)
            are dropped (AF2 used 2018-04-30); None keeps all.
        length_weight_min, length_weight_max: the length term of the sampling weight is
            ``max(min(N, length_weight_max), length_weight_min) / length_weight_max``
            (AF2: 256 and 512); the cluster term is ``1 / cluster size``.
        block_delete_msa: delete random contiguous blocks of MSA rows (Suppl. Alg. 1)
            before input processing, keeping the query row.
        msa_fraction_per_block: a block's size as a fraction of the rows (AF2: 0.3).
        num_blocks: blocks deleted (AF2: 5); with ``randomize_num_blocks`` a number drawn
            uniformly from 0..num_blocks instead (AF2: False).
        distillation_ratio: fraction of examples drawn from the self-distillation source
            when one is mixed in (AF2: 0.75).
        distillation_min_plddt: residues of a predicted structure with pLDDT (0..100)
            below this are masked out of the ground truth (AF2: 70).
        max_template_date: templates released after this date are never used; in
            training a chain only gets templates released before the chain itself.
    """

    crop_size: int = 256
    num_recycle: int | None = None
    max_resolution: float = 9.0
    min_length: int = 1
    max_length: int | None = None
    max_single_aa_fraction: float = 0.8
    max_release_date: str | None = None
    length_weight_min: int = 256
    length_weight_max: int = 512
    block_delete_msa: bool = True
    msa_fraction_per_block: float = 0.3
    num_blocks: int = 5
    randomize_num_blocks: bool = False
    distillation_ratio: float = 0.75
    distillation_min_plddt: float = 70.0
    max_template_date: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.crop_size < 1:
            problems.append(f"crop_size must be >= 1, got {self.crop_size}")
        if self.num_recycle is not None and self.num_recycle < 0:
            problems.append(f"num_recycle must be >= 0 or None, got {self.num_recycle}")
        if not self.max_resolution > 0:
            problems.append(f"max_resolution must be > 0 Å, got {self.max_resolution}")
        if self.min_length < 1:
            problems.append(f"min_length must be >= 1, got {self.min_length}")
        if self.max_length is not None and self.max_length < self.min_length:
            problems.append(f"max_length ({self.max_length}) is below min_length "
                            f"({self.min_length})")
        if not 0.0 < self.max_single_aa_fraction <= 1.0:
            problems.append("max_single_aa_fraction must be in (0, 1], got "
                            f"{self.max_single_aa_fraction}")
        if not 1 <= self.length_weight_min <= self.length_weight_max:
            problems.append("need 1 <= length_weight_min <= length_weight_max, got "
                            f"{self.length_weight_min}, {self.length_weight_max}")
        if not 0.0 <= self.msa_fraction_per_block < 1.0:
            problems.append("msa_fraction_per_block must be in [0, 1), got "
                            f"{self.msa_fraction_per_block}")
        if self.num_blocks < 0:
            problems.append(f"num_blocks must be >= 0, got {self.num_blocks}")
        if not 0.0 <= self.distillation_ratio <= 1.0:
            problems.append(f"distillation_ratio must be in [0, 1], got "
                            f"{self.distillation_ratio}")
        if not 0.0 <= self.distillation_min_plddt <= 100.0:
            problems.append("distillation_min_plddt is a pLDDT in [0, 100], got "
                            f"{self.distillation_min_plddt}")
        if problems:
            raise ValueError("TrainingDataConfig: " + "; ".join(problems))
        for name in ("max_release_date", "max_template_date"):
            value = getattr(self, name)
            if value is not None:
                parse_date(value, f"TrainingDataConfig.{name}")
