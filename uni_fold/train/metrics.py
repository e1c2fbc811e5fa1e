"""Training metrics: structure scores, throughput, and the run's logs.

* :func:`lddt_ca` is :func:`uni_fold.loss.lddt.lddt_ca` (the metric AF2 reports and the
  pLDDT head learns); :func:`tm_score` is the TM-score of Zhang & Skolnick (2004) of the
  C-alpha trace after the best superposition found by a TM-score-style search.
* :class:`MetricsLogger` appends one JSON object per training step to
  ``<output>/metrics.jsonl`` (flushed at once, so a killed run keeps every finished step),
  mirrors scalars to TensorBoard when ``tensorboard`` is installed, and, on resume, drops
  the records written after the checkpoint it resumes from.
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from uni_fold.loss.lddt import lddt_ca

logger = logging.getLogger(__name__)

__all__ = ["lddt_ca", "tm_score", "kabsch", "tm_d0", "MetricsLogger", "read_metrics"]

Tensor = torch.Tensor


def tm_d0(num_res: int) -> float:
    """TM-score distance scale ``d0 = 1.24 (L - 15)^(1/3) - 1.8`` Å, at least 0.5 Å."""
    if num_res <= 21:
        return 0.5
    return max(0.5, 1.24 * (num_res - 15) ** (1.0 / 3.0) - 1.8)


def kabsch(mobile: Tensor, target: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Weighted least-squares superposition of ``mobile`` onto ``target`` (Kabsch).

    Shapes: ``mobile``, ``target [*, N, 3]``, ``weights [*, N]`` (>= 0, not all zero).
    Returns ``(rotation [*, 3, 3], translation [*, 3])`` with
    ``target ~= mobile @ rotation.T + translation``. Computed in fp64.
    """
    x, y, w = mobile.double(), target.double(), weights.double()
    total = w.sum(-1, keepdim=True).clamp_min(1e-12)
    cx = (w[..., None] * x).sum(-2) / total
    cy = (w[..., None] * y).sum(-2) / total
    xc, yc = x - cx[..., None, :], y - cy[..., None, :]
    cov_ij = torch.einsum("...n,...ni,...nj->...ij", w, xc, yc)
    u, _, vh = torch.linalg.svd(cov_ij)
    d = torch.sign(torch.linalg.det(vh.transpose(-1, -2) @ u.transpose(-1, -2)))
    fix = torch.ones_like(cx)
    fix[..., 2] = torch.where(d == 0, torch.ones_like(d), d)
    rot = vh.transpose(-1, -2) @ torch.diag_embed(fix) @ u.transpose(-1, -2)
    trans = cy - torch.einsum("...ij,...j->...i", rot, cx)
    return rot, trans


def _tm_terms(pred: Tensor, true: Tensor, rot: Tensor, trans: Tensor, d0: float) -> Tensor:
    moved = torch.einsum("sij,nj->sni", rot, pred) + trans[:, None, :]
    dist = (moved - true[None]).norm(dim=-1)
    return dist, 1.0 / (1.0 + (dist / d0) ** 2)


@torch.no_grad()
def tm_score(
    predicted_ca: Tensor, true_ca: Tensor, mask: Tensor, num_iterations: int = 20
) -> float:
    """TM-score of a predicted C-alpha trace against the true one (same residue order).

    ``TM = max over superpositions of (1 / L) sum_i 1 / (1 + (d_i / d0(L))^2)`` over the
    ``L`` residues with ``mask``. The superposition is searched as the TM-score program
    does: seed alignments on fragments of length L, L/2, L/4, ... (>= 4), each refined by
    re-superposing on the residues closer than ``d0_search = clip(d0, 4.5, 8)`` Å.
    This gives a lower bound of the exact maximum, equal to it in practice.

    Shapes: ``predicted_ca``, ``true_ca [N, 3]``, ``mask [N]``. Returns a float in [0, 1].
    """
    keep = mask.bool()
    pred, true = predicted_ca[keep].double(), true_ca[keep].double()
    num = pred.shape[0]
    if num == 0:
        raise ValueError("tm_score: the mask selects no residue")
    if num < 3:
        return 1.0 if torch.allclose(pred - pred.mean(0), true - true.mean(0), atol=1e-3) \
            else 0.0
    d0 = tm_d0(num)
    d0_search = min(max(d0, 4.5), 8.0)
    seeds = []
    length = num
    while True:
        length = max(length, min(4, num))
        step = max(1, length // 2)
        for start in range(0, num - length + 1, step):
            seed = torch.zeros(num, dtype=torch.float64)
            seed[start: start + length] = 1.0
            seeds.append(seed)
        if length <= 4:
            break
        length //= 2
    weights = torch.stack(seeds)  # [S, N]
    best = torch.zeros((), dtype=torch.float64)
    for _ in range(num_iterations):
        rot, trans = kabsch(pred.expand(len(weights), -1, -1), true.expand(len(weights), -1, -1),
                            weights)
        dist, terms = _tm_terms(pred, true, rot, trans, d0)
        best = torch.maximum(best, terms.mean(-1).max())
        new = (dist < d0_search).double()
        # A superposition with fewer than 3 close residues keeps its previous set.
        few = new.sum(-1) < 3
        new[few] = weights[few]
        if torch.equal(new, weights):
            break
        weights = new
    return float(best)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``; a truncated last line (killed writer) is ignored."""
    records = []
    path = Path(path)
    if not path.is_file():
        return records
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                logger.warning("%s: ignoring a truncated last line", path)
            else:
                raise ValueError(f"{path} line {i + 1} is not JSON") from None
    return records


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.detach().item() if value.numel() == 1 else value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


class MetricsLogger:
    """``metrics.jsonl`` (+ TensorBoard) of rank 0; every other rank gets a no-op logger.

    Args:
        output_dir: the run's output folder.
        enabled: False on ranks other than 0.
        tensorboard: also write ``output_dir/tensorboard`` when ``tensorboard`` imports.
    """

    def __init__(self, output_dir: str | os.PathLike, enabled: bool = True,
                 tensorboard: bool = True):
        self.path = Path(output_dir) / "metrics.jsonl"
        self.enabled = enabled
        self._writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                logger.info("tensorboard is not installed; metrics go to %s only", self.path)
            else:
                self._writer = SummaryWriter(str(Path(output_dir) / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Drop records of steps after ``step`` (written by a run that was then killed)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [r for r in read_metrics(self.path) if int(r.get("step", 0)) <= step]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
        os.replace(tmp, self.path)

    def log(self, record: Mapping[str, Any]) -> None:
        """Append one record (must hold ``step``); non-finite floats become null/"inf"."""
        if not self.enabled:
            return
        clean = {k: _jsonable(v) for k, v in record.items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(clean, sort_keys=True) + "\n")
            handle.flush()
        if self._writer is not None:
            step = int(clean["step"])
            for key, value in clean.items():
                if key != "step" and isinstance(value, (int, float)) \
                        and not isinstance(value, bool):
                    self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
