"""The training loop: one plain PyTorch class, readable top to bottom.

:class:`Trainer` runs AF2's training step (Jumper et al. 2021, Suppl. Section 1.11) on
this rank's stream of examples:

1. for each of ``grad_accum_steps`` examples: seed the dropout masks from the example's
   global stream position, run the model (earlier recycles without gradients, the model
   does that), the AF2 loss, and backpropagate (DDP synchronises on the last one);
2. an example whose loss is not finite on any rank is dropped on every rank; clip the
   gradient to ``grad_clip_norm``; if no example is left or the gradient norm is not
   finite, the update is skipped and counted;
3. Adam step, learning-rate schedule, EMA update;
4. one record to ``metrics.jsonl``; every ``validate_every`` updates the EMA weights are
   scored (lDDT-Ca, TM-score, loss) on the held-out chains; every ``checkpoint_every``
   updates a checkpoint is written atomically.

Dropout masks depend only on ``(seed, stream position)``, so one process accumulating
the examples of two ranks computes the same update as two DDP ranks, and a resumed run
repeats an uninterrupted one exactly.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from uni_fold.data import process_features
from uni_fold.data.weighted_sampler import derive_seed
from uni_fold.loss import AlphaFoldLoss
from uni_fold.model.alphafold import CHECKPOINT_WEIGHTS, AlphaFold
from uni_fold.model.runtime import RuntimeConfig, apply_runtime
from uni_fold.train import checkpoint as ckpt
from uni_fold.train.distributed import (
    DistributedContext,
    all_reduce_min,
    all_reduce_sum,
    wrap_model,
)
from uni_fold.train.metrics import MetricsLogger, lddt_ca, tm_score
from uni_fold.train.optim import ExponentialMovingAverage, make_optimizer, make_scheduler
from uni_fold.train.stages import RunConfig

logger = logging.getLogger(__name__)

__all__ = ["Trainer", "runtime_for", "load_initial_weights"]

Batch = dict[str, torch.Tensor]
LossFn = Callable[[Mapping[str, Any], Mapping[str, torch.Tensor]], Mapping[str, torch.Tensor]]
#: Seed stream of the dropout masks (distinct from the data pipeline's streams).
_DROPOUT_STREAM = 7
_CA = 1  # atom37 index of C-alpha
#: Settings that may change between a run and its resumption without comment.
_RESUME_FREE = {"max_steps", "num_workers", "log_every", "checkpoint_every", "validate_every",
                "keep_checkpoints", "tensorboard", "max_consecutive_skips"}


def runtime_for(run: RunConfig, device: torch.device) -> RuntimeConfig:
    """The model's runtime knobs for ``run`` on ``device`` (``auto`` resolved)."""
    t = run.train
    precision = t.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    backend = t.attention_backend
    if backend == "auto":
        backend = "sdpa" if device.type == "cuda" else "torch"
    return RuntimeConfig(chunk_size=t.chunk_size, attention_backend=backend,
                         checkpoint_blocks=t.checkpoint_blocks, precision=precision)


def load_initial_weights(model: AlphaFold, source: str | os.PathLike) -> None:
    """Initialise ``model`` from an AF2 ``.npz`` or one of our checkpoint folders, strictly."""
    path = Path(source)
    if path.is_file() and path.suffix == ".npz":
        from uni_fold.model.alphafold import load_alphafold_params

        load_alphafold_params(model, path)
    elif (path / CHECKPOINT_WEIGHTS).is_file():
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(path / CHECKPOINT_WEIGHTS)), strict=True)
    elif (path / ckpt.EMA_DIR / CHECKPOINT_WEIGHTS).is_file():
        load_initial_weights(model, path / ckpt.EMA_DIR)
        return
    else:
        raise FileNotFoundError(
            f"train.init_from={os.fspath(source)!r} is neither an AF2 params .npz nor a folder "
            f"with {CHECKPOINT_WEIGHTS} (a checkpoint's model/ or ema/ folder)")
    logger.info("initial weights from %s", path)


def _unbatch(batch: Mapping[str, Any], device: torch.device) -> Batch:
    """A ``DataLoader`` batch of one example ``[1, S, ...]`` -> ``[S, ...]`` on ``device``."""
    aatype = batch["aatype"]
    out: Batch = {}
    squeeze = aatype.dim() == 3
    if squeeze and aatype.shape[0] != 1:
        raise ValueError(f"the trainer takes one example per micro-step, got a batch of "
                         f"{aatype.shape[0]}; use batch_size=1 and train.grad_accum_steps")
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            out[k] = (v[0] if squeeze else v).to(device, non_blocking=True)
    return out


class Trainer:
    """AF2 training on one rank (see the module docstring).

    Args:
        run: the run configuration (:func:`uni_fold.train.stages.build_run_config`).
        model: the model, built from ``run.model`` (moved to ``ctx.device`` here).
        train_data: this rank's examples: an iterable of processed batches (``[S, ...]``,
            or ``[1, S, ...]`` from a ``DataLoader``). With ``state_dict`` /
            ``load_state_dict`` (``uni_fold.data.loader.ResumableDataLoader``) the data
            position is checkpointed; ``iter`` is called once, after any resume.
        output_dir: where ``metrics.jsonl``, ``run_config.json`` and ``checkpoints/`` go.
        ctx: this process's place in the process group (default: single CPU/GPU process).
        val_raw: held-out chains as raw features with ground truth (validated in ``eval``
            mode, uncropped); each rank scores every ``world_size``-th.
        loss_fn: ``(outputs, batch) -> {"loss": ..., term: ...}``; default
            :class:`uni_fold.loss.AlphaFoldLoss` on ``run.loss``.
    """

    def __init__(
        self,
        run: RunConfig,
        model: AlphaFold,
        train_data: Iterable[Mapping[str, Any]],
        output_dir: str | os.PathLike,
        ctx: DistributedContext | None = None,
        val_raw: Sequence[Mapping[str, Any]] = (),
        loss_fn: LossFn | None = None,
    ):
        self.run = run
        self.ctx = ctx or DistributedContext()
        self.output_dir = Path(output_dir)
        self.checkpoint_dir = self.output_dir / "checkpoints"
        t = run.train
        self.model = model.to(self.ctx.device)
        self.runtime = runtime_for(run, self.ctx.device)
        apply_runtime(self.model, self.runtime)
        self.loss_fn = loss_fn or AlphaFoldLoss(run.loss)
        base_optimizer = make_optimizer(self.model, t)
        self.scheduler = make_scheduler(base_optimizer, t)
        self.ema = ExponentialMovingAverage(self.model, t.ema_decay)
        self.wrapped, self.optimizer = wrap_model(self.model, base_optimizer, t, self.ctx)
        self.deepspeed = t.strategy == "deepspeed"
        self.train_data = train_data
        self._data_iter: Iterator[Mapping[str, Any]] | None = None
        self.val_raw = list(val_raw)
        self.metrics = MetricsLogger(self.output_dir, enabled=self.ctx.is_main,
                                     tensorboard=t.tensorboard)
        # Counters (all checkpointed).
        self.step = 0  # updates attempted (applied or skipped)
        self.updates = 0  # updates applied
        self.skipped_steps = 0
        self.dropped_examples = 0
        self.rank_samples = 0  # examples this rank has consumed
        self._consecutive_skips = 0
        self._stop_requested = False
        if self.ctx.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / "run_config.json").write_text(run.to_json())

    # ------------------------------------------------------------------ data

    def _next_example(self) -> tuple[Batch, int]:
        """The next example of this rank and its global stream position."""
        if self._data_iter is None:
            self._data_iter = iter(self.train_data)
        try:
            batch = next(self._data_iter)
        except StopIteration:
            raise RuntimeError("the training data ran out; use an infinite sampler (the "
                               "default) or lower --max-steps") from None
        position = self.ctx.rank + self.rank_samples * self.ctx.world_size
        self.rank_samples += 1
        return _unbatch(batch, self.ctx.device), position

    # ------------------------------------------------------------------ one step

    def _anchor(self) -> torch.Tensor:
        """``0 * sum(parameters)``: a zero-valued term that gives every parameter a (zero)
        gradient, so DDP / ZeRO reducers see all of them even when a head's loss weight is
        0 in this stage (e.g. experimentally resolved in initial training)."""
        return sum(p.sum() for p in self.model.parameters() if p.requires_grad) * 0.0

    def _sync_context(self, last: bool) -> contextlib.AbstractContextManager:
        if not last and isinstance(self.wrapped, nn.parallel.DistributedDataParallel):
            return self.wrapped.no_sync()
        return contextlib.nullcontext()

    def train_step(self) -> dict[str, Any]:
        """One update (``grad_accum_steps`` examples on every rank); returns its record."""
        t = self.run.train
        accum = t.grad_accum_steps
        self.wrapped.train()
        start = time.perf_counter()
        names: list[str] | None = None
        sums: torch.Tensor | None = None
        kept_total = 0
        ds_stepped = False
        residues = 0.0
        for micro in range(accum):
            last = micro == accum - 1
            batch, position = self._next_example()
            torch.manual_seed(derive_seed(t.seed, _DROPOUT_STREAM, position))
            with self._sync_context(last):
                outputs = self.wrapped(batch)
                terms = self.loss_fn(outputs, batch)
                if "lddt_ca" not in terms:
                    terms = {**terms, "lddt_ca": lddt_ca(
                        outputs["final_atom_positions"].detach(), batch["all_atom_positions"][-1],
                        batch["all_atom_mask"][-1])}
                loss = terms["loss"]
                finite = torch.isfinite(loss.detach()).float().reshape(1)
                keep = bool(all_reduce_min(finite, self.ctx).item())
                if self.deepspeed:
                    # DeepSpeed counts micro-steps itself: every one needs backward + step,
                    # a dropped example contributing a zero gradient (with one example per
                    # update, a dropped example skips both and so the update).
                    if keep or accum > 1:
                        self.wrapped.backward((loss if keep else 0.0) + self._anchor())
                        self.wrapped.step()
                        ds_stepped = True
                elif keep:
                    (loss / accum + self._anchor()).backward()
                elif last and kept_total > 0:
                    self._anchor().backward()  # still synchronise the earlier examples
            if names is None:
                names = sorted(k for k, v in terms.items()
                               if isinstance(v, torch.Tensor) and v.numel() == 1)
                sums = torch.zeros(len(names) + 2, dtype=torch.float64)
            values = torch.tensor([float(terms[k].detach()) for k in names], dtype=torch.float64)
            if keep:
                kept_total += 1
                sums[:-2] += values
                sums[-2] += 1.0
            else:
                self.dropped_examples += 1
                logger.warning("step %d: non-finite loss in an example at stream position "
                               "%d (on some rank); dropped", self.step + 1, position)
            residues += float(batch["seq_mask"][0].sum())
            del outputs, terms, loss
        sums[-1] = residues
        lr = self.scheduler.optimizer.param_groups[0]["lr"]  # the rate of this update
        grad_norm = self._apply_update(kept_total, ds_stepped)
        all_reduce_sum(sums, self.ctx)
        elapsed = time.perf_counter() - start
        self.step += 1
        record: dict[str, Any] = {"step": self.step}
        count = sums[-2].item()
        for i, name in enumerate(names or []):
            record[name] = sums[i].item() / count if count else float("nan")
        examples = accum * self.ctx.world_size
        record.update(
            lr=lr,
            grad_norm=grad_norm,
            skipped=grad_norm is None or not math.isfinite(grad_norm),
            skipped_steps=self.skipped_steps,
            dropped_examples=self.dropped_examples,
            samples_seen=self.rank_samples * self.ctx.world_size,
            step_time_s=elapsed,
            examples_per_s=examples / elapsed,
            residues_per_s=sums[-1].item() / elapsed,
        )
        if self.ctx.device.type == "cuda":
            record["peak_memory_gb"] = torch.cuda.max_memory_allocated(self.ctx.device) / 2**30
        return record

    def _apply_update(self, kept: int, ds_stepped: bool) -> float | None:
        """Clip, step, schedule and EMA; returns the gradient norm (None: skipped)."""
        t = self.run.train
        if kept == 0 and not ds_stepped:
            self._skip("every example had a non-finite loss")
            return None
        if self.deepspeed:
            norm = self.wrapped.get_global_grad_norm()
            norm = float(norm) if norm is not None else float("nan")
        else:
            params = [p for p in self.model.parameters() if p.grad is not None]
            max_norm = t.grad_clip_norm if t.grad_clip_norm > 0 else float("inf")
            norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
            if not math.isfinite(norm):
                self.optimizer.zero_grad(set_to_none=True)
                self._skip(f"gradient norm {norm}")
                return norm
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.ema.update(self.model)
        self.updates += 1
        self._consecutive_skips = 0
        return norm

    def _skip(self, why: str) -> None:
        self.skipped_steps += 1
        self._consecutive_skips += 1
        logger.warning("step %d skipped: %s (%d skipped so far)", self.step + 1, why,
                       self.skipped_steps)
        if self._consecutive_skips >= self.run.train.max_consecutive_skips:
            raise RuntimeError(
                f"{self._consecutive_skips} steps in a row had a non-finite loss or gradient; "
                "lower train.learning_rate, use train.precision=fp32, or check the data")

    # ------------------------------------------------------------------ validation

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Score the EMA weights on this rank's share of the held-out chains; the means
        over all chains (``val_lddt_ca``, ``val_tm_score``, ``val_loss``, ``val_fape``)."""
        model = self.model
        totals = torch.zeros(5, dtype=torch.float64)
        model.eval()
        try:
            with self.ema.swapped_into(model):
                for i in range(self.ctx.rank, len(self.val_raw), self.ctx.world_size):
                    batch = process_features(self.val_raw[i], self.run.model, mode="eval",
                                             seed=self.run.train.seed)
                    batch = {k: v.to(self.ctx.device) for k, v in batch.items()}
                    out = model(batch)
                    true = batch["all_atom_positions"][0]
                    mask = batch["all_atom_mask"][0]
                    pred = out["final_atom_positions"].float()
                    terms = self.loss_fn(out, batch)
                    ca_mask = mask[:, _CA].cpu()
                    if not ca_mask.any():
                        logger.warning("held-out chain %d has no resolved C-alpha; skipped", i)
                        continue
                    totals += torch.tensor([
                        float(lddt_ca(pred, true, mask)),
                        tm_score(pred[:, _CA].cpu(), true[:, _CA].cpu(), ca_mask),
                        float(terms["loss"]), float(terms.get("fape", float("nan"))), 1.0,
                    ], dtype=torch.float64)
        finally:
            model.train()
        all_reduce_sum(totals, self.ctx)
        n = totals[-1].item()
        if n == 0:
            return {}
        keys = ("val_lddt_ca", "val_tm_score", "val_loss", "val_fape")
        return {k: totals[i].item() / n for i, k in enumerate(keys)}

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self) -> Path:
        """Write the checkpoint of the current step (a collective call)."""
        t = self.run.train
        trainer_state = {
            "updates": self.updates,
            "skipped_steps": self.skipped_steps,
            "dropped_examples": self.dropped_examples,
            "scheduler": self.scheduler.state_dict(),
            "run_config": self.run.to_dict(),
        }
        rank_state: dict[str, Any] = {
            "rng": ckpt.capture_rng_state(),
            "rank_samples": self.rank_samples,
            "world_size": self.ctx.world_size,
        }
        if hasattr(self.train_data, "state_dict"):
            rank_state["data"] = self.train_data.state_dict()
        return ckpt.save_training_checkpoint(
            self.checkpoint_dir, self.step, model=self.model, ema=self.ema,
            optimizer=self.optimizer, trainer_state=trainer_state, rank_state=rank_state,
            ctx=self.ctx, sharded_optimizer=self.deepspeed, keep=t.keep_checkpoints,
        )

    def resume(self, directory: str | os.PathLike | None = None) -> bool:
        """Restore the newest complete checkpoint (or ``directory``); False if none."""
        directory = Path(directory) if directory else ckpt.latest_checkpoint(self.checkpoint_dir)
        if directory is None:
            logger.info("no checkpoint in %s; starting from step 0", self.checkpoint_dir)
            return False
        from safetensors.torch import load_file

        state = ckpt.load_trainer_state(directory)
        self._check_config(state.get("run_config", {}))
        weights = load_file(str(directory / ckpt.MODEL_DIR / CHECKPOINT_WEIGHTS))
        self.model.load_state_dict(weights, strict=True)
        ema = load_file(str(directory / ckpt.EMA_DIR / CHECKPOINT_WEIGHTS))
        self.ema.load_state_dict({k: v for k, v in ema.items() if k in self.ema.shadow})
        self.ema.to(self.ctx.device)
        sharded = bool(state.get("sharded_optimizer", False))
        if sharded != self.deepspeed:
            raise ValueError(f"checkpoint {directory} was written with "
                             f"{'DeepSpeed' if sharded else 'DDP'}; resume with the same "
                             "train.strategy")
        if sharded and state["world_size"] != self.ctx.world_size:
            raise ValueError(f"checkpoint {directory} holds a ZeRO optimiser of "
                             f"{state['world_size']} ranks; resume with as many")
        optim_state = ckpt.load_optimizer_state(directory, self.ctx.rank, sharded)
        if sharded:
            # ZeRO takes every rank's state by rank; same world size, so only ours is read.
            states: list[Any] = [None] * self.ctx.world_size
            states[self.ctx.rank] = optim_state
            self.optimizer.load_state_dict(states, load_from_fp32_weights=True)
        else:
            self.optimizer.load_state_dict(optim_state)
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.updates = int(state["updates"])
        self.skipped_steps = int(state["skipped_steps"])
        self.dropped_examples = int(state["dropped_examples"])
        rank_state = ckpt.load_rank_state(directory, self.ctx.rank)
        if rank_state is None or rank_state.get("world_size") != self.ctx.world_size:
            rank_state = self._rescaled_rank_state(directory)
        if rank_state.get("rng") is not None:
            ckpt.restore_rng_state(rank_state["rng"])
        self.rank_samples = int(rank_state["rank_samples"])
        if "data" in rank_state and hasattr(self.train_data, "load_state_dict"):
            self.train_data.load_state_dict(rank_state["data"])
        elif self.rank_samples:
            logger.warning("the training data has no load_state_dict: its stream restarts")
        self._data_iter = None
        self.metrics.truncate_after(self.step)
        logger.info("resumed from %s (step %d, %d updates)", directory, self.step, self.updates)
        return True

    def _rescaled_rank_state(self, directory: Path) -> dict[str, Any]:
        """A rank state for a world size other than the checkpoint's: the data position
        from rank 0's (the sampler rescales it), fresh RNG states."""
        first = ckpt.load_rank_state(directory, 0) or {}
        old_world = int(first.get("world_size", 1))
        seen = int(first.get("rank_samples", 0)) * old_world
        logger.warning("resuming a %d-rank checkpoint on %d ranks: the example stream "
                       "continues after %d examples", old_world, self.ctx.world_size, seen)
        state: dict[str, Any] = {"rng": None,
                                 "rank_samples": -(-seen // self.ctx.world_size)}
        if "data" in first:
            state["data"] = {**first["data"], "rank": self.ctx.rank}
        torch.manual_seed(derive_seed(self.run.train.seed, self.ctx.rank, self.step))
        return state

    def _check_config(self, saved: Mapping[str, Any]) -> None:
        """The architecture must be the checkpoint's; other differences are logged."""
        if not saved:
            return
        now = self.run.to_dict()
        if saved.get("model", {}).get("model") != now["model"]["model"]:
            raise ValueError("the checkpoint's model architecture differs from this run's "
                             "(--preset / --set model.*); resume with the same settings")
        for tree in ("model", "loss", "train", "train_data"):
            before, after = saved.get(tree, {}), now[tree]
            changed = sorted(k for k in set(before) | set(after)
                             if before.get(k) != after.get(k) and k not in _RESUME_FREE)
            if changed:
                logger.warning("resuming with changed %s settings: %s", tree, ", ".join(changed))

    # ------------------------------------------------------------------ the loop

    def install_signal_handlers(self) -> None:
        """On SIGTERM / SIGUSR1 (SLURM pre-emption), checkpoint after the current step and
        stop (call from the main thread)."""
        def request_stop(signum: int, _frame: Any) -> None:
            logger.warning("signal %d: checkpointing after this step, then stopping", signum)
            self._stop_requested = True

        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, request_stop)

    def fit(self, max_steps: int) -> dict[str, Any]:
        """Train until ``max_steps`` updates were attempted (counting those before a
        resume); returns the last record. Writes a checkpoint every ``checkpoint_every``
        steps and at the end."""
        t = self.run.train
        last: dict[str, Any] = {"step": self.step}
        saved_at = self.step
        logger.info("training from step %d to %d on %d rank(s), %s", self.step, max_steps,
                    self.ctx.world_size, self.runtime)
        while self.step < max_steps:
            record = self.train_step()
            if t.validate_every and self.val_raw and self.step % t.validate_every == 0:
                record.update(self.validate())
            self.metrics.log(record)
            last = record
            if self.ctx.is_main and (self.step % t.log_every == 0 or self.step == max_steps):
                logger.info(
                    "step %d  loss %.4f  fape %.4f  lddt_ca %.3f  lr %.2e  %.2f s/step  "
                    "%.0f res/s", self.step, record.get("loss", float("nan")),
                    record.get("fape", float("nan")), record.get("lddt_ca", float("nan")),
                    record["lr"], record["step_time_s"], record["residues_per_s"])
            stop = torch.tensor([float(self._stop_requested)])
            stop_now = bool(all_reduce_sum(stop, self.ctx).item())
            if self.step % t.checkpoint_every == 0 or self.step == max_steps or stop_now:
                self.save_checkpoint()
                saved_at = self.step
            if stop_now:
                logger.warning("stopped at step %d on request", self.step)
                break
        if saved_at != self.step:
            self.save_checkpoint()
        self.metrics.close()
        return last
