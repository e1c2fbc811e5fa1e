"""Optimiser, learning-rate schedule and weight EMA of AF2 training (Jumper et al. 2021,
Suppl. Section 1.11.3 and 1.11.7).

* Adam with ``lr = 1e-3, beta = (0.9, 0.999), eps = 1e-6`` (:func:`make_optimizer`);
* the learning rate rises linearly over the first ``warmup_steps`` updates, then is
  multiplied by ``decay_factor`` (0.95) every ``decay_every`` (50,000) updates
  (:func:`af2_lr_factor`, :func:`make_scheduler`);
* an exponential moving average of the weights with decay 0.999, which is what AF2
  evaluates and ships (:class:`ExponentialMovingAverage`).
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping

import torch
from torch import nn

from uni_fold.train.stages import TrainConfig

logger = logging.getLogger(__name__)

__all__ = ["af2_lr_factor", "make_optimizer", "make_scheduler", "ExponentialMovingAverage"]


def af2_lr_factor(step: int, warmup_steps: int, decay_every: int, decay_factor: float) -> float:
    """Multiplier of the base learning rate for update number ``step`` (0-based).

    ``(step + 1) / warmup_steps`` during the warm-up (so the first update is not wasted
    on a zero rate), then ``decay_factor ** (step // decay_every)``.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    factor = decay_factor ** (step // decay_every)
    if warmup_steps > 0 and step < warmup_steps:
        factor *= (step + 1) / warmup_steps
    return factor


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Adam:
    """Adam over every trainable parameter of ``model`` (no weight decay, as AF2)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.Adam(
        params, lr=config.learning_rate, betas=(config.adam_beta1, config.adam_beta2),
        eps=config.adam_eps,
    )


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """AF2's warm-up and step decay as a ``LambdaLR`` (call ``.step()`` after each update)."""
    warmup, every, factor = config.warmup_steps, config.decay_every, config.decay_factor
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: af2_lr_factor(step, warmup, every, factor)
    )


class ExponentialMovingAverage:
    """Suppl. 1.11.7: ``shadow <- decay * shadow + (1 - decay) * weight`` after each update.

    The shadow weights are fp32 copies of every floating-point parameter, keyed by the
    parameter names of the (unwrapped) model; buffers are not averaged. Use
    :meth:`swapped_into` to run validation with them and :meth:`state_dict` to save them.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().float().clone()
            for name, p in model.named_parameters()
            if p.is_floating_point()
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow weights towards ``model``'s current weights."""
        for name, p in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(p.detach().float(), 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The shadow weights (name -> fp32 tensor), as a model state dict."""
        return dict(self.shadow)

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore shadow weights; the names and shapes must equal the model's."""
        missing = sorted(set(self.shadow) - set(state))
        unexpected = sorted(set(state) - set(self.shadow))
        if missing or unexpected:
            raise ValueError(f"EMA state does not fit the model: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")
        for name, value in state.items():
            if value.shape != self.shadow[name].shape:
                raise ValueError(f"EMA state {name}: shape {tuple(value.shape)}, the model "
                                 f"has {tuple(self.shadow[name].shape)}")
            self.shadow[name].copy_(value)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the shadow weights into ``model``."""
        for name, p in model.named_parameters():
            if name in self.shadow:
                p.copy_(self.shadow[name].to(device=p.device, dtype=p.dtype))

    @contextlib.contextmanager
    def swapped_into(self, model: nn.Module) -> Iterator[nn.Module]:
        """Run the body with the EMA weights in ``model``; its own weights come back after."""
        backup = {name: p.detach().clone() for name, p in model.named_parameters()
                  if name in self.shadow}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name in backup:
                        p.copy_(backup[name])

    def to(self, device: torch.device | str) -> ExponentialMovingAverage:
        self.shadow = {k: v.to(device) for k, v in self.shadow.items()}
        return self
