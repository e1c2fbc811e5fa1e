"""Training checkpoints: written atomically, found and loaded without executing code.

A checkpoint is a folder ``<root>/step_<8-digit step>/``::

    model/   model.safetensors + config.json   the trained weights
    ema/     model.safetensors + config.json   the EMA weights (what to validate / ship)
    optimizer.pt                               Adam state (DeepSpeed: optimizer_rank<r>.pt)
    trainer_state.json                         step, counters, scheduler, run config
    rank_<r>.json                              per rank: RNG states, data position

``model/`` and ``ema/`` load with :meth:`uni_fold.model.alphafold.AlphaFold.from_checkpoint`.
Optimiser files load with ``torch.load(weights_only=True)`` (tensors and plain Python
values only); everything else is safetensors or JSON.

Atomicity: every rank writes into one hidden temporary folder ``<root>/.tmp-step_...``,
files are flushed to disk, and rank 0 renames the folder to its final name. A run killed
while saving leaves only a temporary folder, which is ignored and later removed, so the
newest ``step_*`` folder is always complete.
"""
from __future__ import annotations

import base64
import enum
import json
import logging
import os
import random
import re
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uni_fold.model.alphafold import AlphaFold, save_checkpoint
from uni_fold.train.distributed import DistributedContext, barrier, broadcast_object
from uni_fold.train.optim import ExponentialMovingAverage

logger = logging.getLogger(__name__)

__all__ = [
    "capture_rng_state",
    "restore_rng_state",
    "save_training_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "load_rank_state",
    "load_trainer_state",
    "load_optimizer_state",
]

_STEP_DIR = re.compile(r"^step_(\d{8,})$")
TRAINER_STATE = "trainer_state.json"
MODEL_DIR, EMA_DIR = "model", "ema"


# ----------------------------------------------------------------------------- RNG states


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _from_b64(text: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype=np.uint8).copy())


def capture_rng_state() -> dict[str, Any]:
    """The states of Python's ``random``, numpy's global generator, torch's CPU and CUDA
    generators, as JSON-able values."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [name, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": _b64(torch.get_rng_state()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    torch.set_rng_state(_from_b64(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda = [_from_b64(s) for s in state["cuda"]]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


# ------------------------------------------------------------------------------- writing


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: str | os.PathLike) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_tree(path: Path) -> None:
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            _fsync_file(os.path.join(dirpath, name))
        _fsync_dir(Path(dirpath))


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True))


#: Entries of a DeepSpeed ZeRO-1/2 optimizer state that hold DeepSpeed objects and are not
#: needed to resume on the same number of ranks (the fp16 loss scaler, the slice table of
#: DeepSpeed's "universal" checkpoints).
_ZERO_OBJECT_ENTRIES = ("loss_scaler", "param_slice_mappings")


def plain_zero_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """A DeepSpeed ZeRO optimiser state with only tensors and plain Python values, so it
    loads with ``torch.load(weights_only=True)``; enums become their int values."""
    out = {}
    for key, value in state.items():
        if key in _ZERO_OBJECT_ENTRIES:
            continue
        if isinstance(value, enum.Enum):
            value = value.value
        out[key] = value
    return out


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def save_training_checkpoint(
    root: str | os.PathLike,
    step: int,
    *,
    model: AlphaFold,
    ema: ExponentialMovingAverage,
    optimizer: torch.optim.Optimizer,
    trainer_state: Mapping[str, Any],
    rank_state: Mapping[str, Any],
    ctx: DistributedContext,
    sharded_optimizer: bool = False,
    keep: int = 0,
) -> Path:
    """Write the checkpoint of ``step`` under ``root`` atomically; a collective call (every
    rank calls it).

    Args:
        root: the checkpoints folder.
        step: updates done; names the folder.
        model: the unwrapped model (identical on every rank).
        ema: its EMA weights.
        optimizer: the optimiser (with ``sharded_optimizer``, each rank's shard).
        trainer_state: JSON-able state written once by rank 0.
        rank_state: JSON-able state of this rank (RNG, data position).
        ctx: the process group.
        sharded_optimizer: every rank writes its own optimiser state (DeepSpeed ZeRO).
        keep: after writing, keep only the newest ``keep`` checkpoints (0: all).
    Returns:
        The final folder.
    """
    root = Path(root)
    final = root / step_dir_name(step)
    tmp_name = None
    if ctx.is_main:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp-step_*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp_name = f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
        (root / tmp_name).mkdir()
    tmp = root / broadcast_object(tmp_name, ctx)
    barrier(ctx)

    _write_json(tmp / f"rank_{ctx.rank}.json", dict(rank_state))
    if sharded_optimizer:
        torch.save(plain_zero_state(optimizer.state_dict()), tmp / f"optimizer_rank{ctx.rank}.pt")
    if not ctx.is_main:  # a rank flushes its own files (nodes may not share a page cache)
        for name in (f"rank_{ctx.rank}.json", f"optimizer_rank{ctx.rank}.pt"):
            if (tmp / name).exists():
                _fsync_file(tmp / name)
    if ctx.is_main:
        save_checkpoint(model, tmp / MODEL_DIR)
        with ema.swapped_into(model):
            save_checkpoint(model, tmp / EMA_DIR)
        if not sharded_optimizer:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        _write_json(tmp / TRAINER_STATE, {**trainer_state, "step": step,
                                          "world_size": ctx.world_size,
                                          "sharded_optimizer": sharded_optimizer})
    # Flush once every rank has written: walking the shared folder while another rank still
    # writes (and renames) its files in it would race.
    barrier(ctx)
    if ctx.is_main:
        _fsync_tree(tmp)
        if final.exists():  # the same step saved again after a resume
            trash = root / f".tmp-old-{final.name}-{uuid.uuid4().hex[:8]}"
            os.rename(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.rename(tmp, final)
        _fsync_dir(root)
        if keep > 0:
            for old in list_checkpoints(root)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
        logger.info("checkpoint %s written", final)
    barrier(ctx)
    return final


# ------------------------------------------------------------------------------- reading


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete checkpoint folders under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_DIR.match(path.name)
        if match and path.is_dir() and (path / TRAINER_STATE).is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint folder under ``root``, or None."""
    found = list_checkpoints(root)
    return found[-1] if found else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint file {path} is missing; the checkpoint is "
                                "incomplete - resume from an earlier one") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"checkpoint file {path} is corrupt ({err}); resume from an earlier "
                         "checkpoint (delete this folder)") from None


def load_trainer_state(directory: str | os.PathLike) -> dict[str, Any]:
    return _read_json(Path(directory) / TRAINER_STATE)


def load_rank_state(directory: str | os.PathLike, rank: int) -> dict[str, Any] | None:
    """This rank's saved state, or None when the checkpoint had fewer ranks."""
    path = Path(directory) / f"rank_{rank}.json"
    return _read_json(path) if path.is_file() else None


def load_optimizer_state(
    directory: str | os.PathLike, rank: int, sharded: bool
) -> dict[str, Any]:
    """The optimiser state dict (weights-only unpickling: tensors and plain values)."""
    name = f"optimizer_rank{rank}.pt" if sharded else "optimizer.pt"
    path = Path(directory) / name
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {directory} has no {name}; a sharded (DeepSpeed) "
                                "optimiser resumes only with the same number of ranks")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ValueError(f"optimizer state {path} cannot be read ({err}); the file is corrupt "
                         "- resume from an earlier checkpoint") from err
