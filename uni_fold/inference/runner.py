"""Running the network on one target: load models once, choose a chunk size, retry after
running out of memory, and turn raw features into ranked :class:`ModelPrediction`\\ s.

:class:`ModelRunner` holds one or more loaded :class:`~uni_fold.model.alphafold.AlphaFold`
models on one device. For each target and model it processes the raw features with the
model's own data config (:func:`uni_fold.data.process_features`, seeded as AF2 seeds each
model), runs the network in ``eval()`` mode without gradients and keeps the outputs as
numpy arrays.

Memory: the chunk size (``RuntimeConfig.chunk_size``) is chosen per target from the
sequence length, the MSA depth and the free memory of the device
(:func:`choose_chunk_size`); an out-of-memory error is retried with half the chunk size
down to :data:`MIN_CHUNK_SIZE` before :class:`PredictionOutOfMemoryError` says what to do.
"""
from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uni_fold.config import Config, apply_overrides
from uni_fold.data import msa_cluster_size, process_features
from uni_fold.inference.results import ModelPrediction
from uni_fold.model.alphafold import AlphaFold
from uni_fold.model.runtime import RuntimeConfig, apply_runtime

logger = logging.getLogger(__name__)

#: The chunk sizes tried, largest first (None: unchunked).
CHUNK_SIZES: tuple[int | None, ...] = (None, 512, 256, 128, 64, 32, 16, 8, 4)
MIN_CHUNK_SIZE = 4
#: Share of the free memory the estimate may use (the rest: allocator slack, fragments).
MEMORY_HEADROOM = 0.8
_F32 = 4


class PredictionOutOfMemoryError(RuntimeError):
    """The network ran out of memory even at the smallest chunk size."""


# ----------------------------------------------------------------------------------------
# Devices and memory


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``"auto"``/None: the first CUDA GPU if there is one, else the CPU.

    Raises:
        ValueError: an unknown device string, or a CUDA device on a machine without CUDA.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but PyTorch sees no CUDA GPU here; "
                         "use --device cpu (or install a CUDA build of PyTorch)")
    return dev


def free_memory(device: torch.device) -> int:
    """Bytes the process can still allocate on ``device``: CUDA's free memory, or the
    host's available memory (``MemAvailable``) for the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 16 << 30  # unknown: assume a 16 GiB machine


def estimate_memory(config: Config, num_res: int, chunk_size: int | None,
                    precision: str = "fp32") -> int:
    """Rough peak bytes of one forward pass (inference, no gradients).

    Base: the pair representation and about ten pair-sized temporaries (triangle
    multiplication projections and gates, layer norms, residuals), the MSA and extra-MSA
    stacks with their temporaries, and the weights. Chunked part: the largest attention
    logits of one chunk (triangle attention ``[c, H, N, N]``, MSA row attention
    ``[c, H, N, N]``, MSA column attention ``[c, H, S, S]``), three copies (logits, bias,
    softmax). ``chunk_size=None`` is a chunk of every row.
    """
    e = config.model.embeddings_and_evoformer
    evo = e.evoformer
    num_seq = msa_cluster_size(config.data) + (
        config.data.max_templates if e.template.enabled else 0)
    num_extra = config.data.max_extra_msa
    width = _F32 if precision == "fp32" else 2
    n2 = num_res * num_res
    base = (10 * n2 * e.c_z + 8 * num_seq * num_res * e.c_m + 6 * num_extra * num_res * e.c_e)
    base = base * width + 500 * (1 << 20)  # weights and buffers
    heads_pair = evo.triangle_attention_starting_node.num_head
    heads_msa = evo.msa_row_attention_with_pair_bias.num_head
    rows = lambda n: n if chunk_size is None else min(chunk_size, n)  # noqa: E731
    chunked = max(
        rows(num_res) * heads_pair * n2,  # triangle attention
        rows(num_seq) * heads_msa * n2,  # MSA row attention with pair bias
        rows(num_res) * heads_msa * num_seq * num_seq,  # MSA column attention
        rows(num_extra) * heads_msa * n2,  # extra-MSA row attention
    )
    return int(base + 3 * _F32 * chunked)


def choose_chunk_size(config: Config, num_res: int, available: int,
                      precision: str = "fp32") -> int | None:
    """The largest chunk size of :data:`CHUNK_SIZES` whose :func:`estimate_memory` fits in
    :data:`MEMORY_HEADROOM` of ``available`` bytes (None: unchunked); the smallest when
    none fits (a warning is logged)."""
    budget = MEMORY_HEADROOM * available
    for chunk in CHUNK_SIZES:
        if chunk is not None and chunk >= num_res and chunk != CHUNK_SIZES[-1]:
            continue  # same as unchunked for this length
        if estimate_memory(config, num_res, chunk, precision) <= budget:
            return chunk
    logger.warning("%d residues may not fit in %.1f GiB even at chunk size %d", num_res,
                   available / (1 << 30), CHUNK_SIZES[-1])
    return CHUNK_SIZES[-1]


def smaller_chunk_size(chunk_size: int | None, num_res: int) -> int | None:
    """The next chunk size to try after running out of memory at ``chunk_size``, or None
    when ``chunk_size`` is already :data:`MIN_CHUNK_SIZE` (nothing left to try)."""
    if chunk_size is None:
        start = 1 << max(int(num_res - 1).bit_length() - 1, 0)  # largest power of 2 < N
        return max(MIN_CHUNK_SIZE, min(256, start))
    if chunk_size <= MIN_CHUNK_SIZE:
        return None
    return max(MIN_CHUNK_SIZE, chunk_size // 2)


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation failure (CUDA or host)."""
    if isinstance(err, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
        or "failed to allocate" in text)


def _release_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_with_oom_retry(model: AlphaFold, batch: Mapping[str, torch.Tensor],
                       runtime: RuntimeConfig, num_res: int) -> tuple[dict[str, Any], int | None]:
    """``model(batch)`` under ``torch.no_grad()`` with ``runtime``; after an
    out-of-memory error, again with a smaller chunk (:func:`smaller_chunk_size`).

    Returns:
        ``(outputs, chunk size that worked)``.

    Raises:
        PredictionOutOfMemoryError: still out of memory at :data:`MIN_CHUNK_SIZE`.
    """
    device = next(model.parameters()).device
    chunk = runtime.chunk_size
    while True:
        apply_runtime(model, runtime.replace(chunk_size=chunk))
        failure = None
        try:
            with torch.no_grad():
                return model(batch), chunk
        except Exception as err:  # noqa: BLE001 - only OOM is retried, the rest re-raised
            if not is_out_of_memory(err):
                raise
            failure = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        _release_memory(device)  # outside the except block: the traceback is gone
        next_chunk = smaller_chunk_size(chunk, num_res)
        if next_chunk is None:
            raise PredictionOutOfMemoryError(
                f"out of memory on {device} for {num_res} residues even at chunk size {chunk} "
                f"({failure}); use a device with more memory, --precision bf16, fewer MSA "
                "rows (--max-msa), or a shorter sequence"
            )
        logger.warning("out of memory on %s at chunk size %s (%s); retrying with chunk size %d",
                       device, chunk, failure, next_chunk)
        chunk = next_chunk


# ----------------------------------------------------------------------------------------
# Loading


def load_network(model_name: str, params: str | os.PathLike) -> AlphaFold:
    """One network: an AF2 parameter file (``.npz``, ``model_name`` is its preset, e.g.
    ``model_1_ptm``) or a Uni-Fold checkpoint directory (``model.safetensors`` +
    ``config.json``).

    Raises:
        FileNotFoundError: ``params`` does not exist.
        ValueError: the file does not fit the preset (names the keys).
    """
    path = Path(params)
    if path.is_dir():
        return AlphaFold.from_checkpoint(path)
    if not path.is_file():
        raise FileNotFoundError(f"parameters {path} do not exist")
    return AlphaFold.from_alphafold_params(path, model_name)


def configure(config: Config, *, num_recycle: int | None = None,
              recycle_early_stop_tolerance: float | None = None,
              max_msa: tuple[int, int] | None = None) -> None:
    """Set run-time choices on a loaded model's config (in place): recycles, the early-stop
    tolerance (Å), and ``(max_msa_clusters, max_extra_msa)`` as ColabFold's ``--max-msa``
    (for template models the template rows count among the clusters, as in AF2)."""
    overrides: dict[str, Any] = {}
    if num_recycle is not None:
        if num_recycle < 0:
            raise ValueError(f"num_recycle must be >= 0, got {num_recycle}")
        overrides["model.num_recycle"] = int(num_recycle)
    if recycle_early_stop_tolerance is not None:
        overrides["model.recycle_early_stop_tolerance"] = float(recycle_early_stop_tolerance)
    if max_msa is not None:
        clusters, extra = max_msa
        if clusters < 1 or extra < 1:
            raise ValueError(f"max_msa must be two positive numbers, got {max_msa}")
        overrides["data.max_msa_clusters"] = int(clusters)
        overrides["data.max_extra_msa"] = int(extra)
    apply_overrides(config, overrides)


# ----------------------------------------------------------------------------------------
# Running


def model_seed(index: int, num_predictions: int, seed: int) -> int:
    """AF2's per-prediction seed: ``index + seed * num_predictions`` (``index`` counts the
    predictions of a target, model by model, seed by seed)."""
    return index + seed * num_predictions


class ModelRunner:
    """Loaded networks on one device, and how they run.

    Args:
        models: prediction model name -> network (e.g. ``{"model_1_ptm": AlphaFold}``).
        device: where to run (None: GPU if any, else CPU); the networks are moved there.
        precision: ``"fp32"`` or ``"bf16"`` (autocast around the trunk).
        chunk_size: ``"auto"`` (per target, from length and free memory), None
            (unchunked) or a number.
        attention_backend: None for ``"sdpa"`` on GPU and ``"torch"`` on CPU.
    """

    def __init__(self, models: Mapping[str, AlphaFold], *,
                 device: str | torch.device | None = None, precision: str = "fp32",
                 chunk_size: int | str | None = "auto", attention_backend: str | None = None):
        if not models:
            raise ValueError("ModelRunner needs at least one model")
        if chunk_size != "auto" and chunk_size is not None and (
                isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(
                f"chunk_size must be 'auto', None or a positive int, got {chunk_size!r}")
        self.device = resolve_device(device)
        backend = attention_backend or ("sdpa" if self.device.type == "cuda" else "torch")
        self.runtime = RuntimeConfig(attention_backend=backend, precision=precision)
        if precision == "bf16" and self.device.type == "cpu":
            logger.warning("bf16 on the CPU is slow (no bf16 matrix units on most CPUs); "
                           "it is meant for GPUs - use fp32 here")
        self.chunk_size = chunk_size
        self.models: dict[str, AlphaFold] = {}
        for name, net in models.items():
            self.models[name] = net.to(self.device).eval()
        logger.info("models %s on %s (%s, attention %s, chunk size %s)",
                    ", ".join(self.models), self.device, precision, backend, chunk_size)

    @property
    def model_names(self) -> list[str]:
        return list(self.models)

    def chunk_size_for(self, config: Config, num_res: int) -> int | None:
        """The chunk size to start with for a target of ``num_res`` residues."""
        if self.chunk_size != "auto":
            return self.chunk_size  # type: ignore[return-value]
        return choose_chunk_size(config, num_res, free_memory(self.device),
                                 self.runtime.precision)

    def predict(
        self,
        raw_features: Mapping[str, np.ndarray],
        *,
        num_seeds: int = 1,
        seed: int = 0,
        on_prediction: Callable[[ModelPrediction], None] | None = None,
    ) -> list[ModelPrediction]:
        """Every model, ``num_seeds`` times each, on one target's raw features.

        Prediction names are the model names, or ``<model>_pred_<k>`` with several seeds
        (AF2's multimer naming). ``on_prediction`` is called after each (progress bars).
        """
        if num_seeds < 1:
            raise ValueError(f"num_seeds must be >= 1, got {num_seeds}")
        num_res = int(np.asarray(raw_features["aatype"]).shape[0])
        jobs = [(name, k) for name in self.models for k in range(num_seeds)]
        results = []
        for index, (name, k) in enumerate(jobs):
            pred_name = name if num_seeds == 1 else f"{name}_pred_{k}"
            result = self._run_one(self.models[name], name, pred_name,
                                   model_seed(index, len(jobs), seed), raw_features, num_res)
            results.append(result)
            if on_prediction is not None:
                on_prediction(result)
        return results

    def _run_one(self, net: AlphaFold, model_name: str, pred_name: str, seed: int,
                 raw: Mapping[str, np.ndarray], num_res: int) -> ModelPrediction:
        timings: dict[str, float] = {}
        start = time.perf_counter()
        batch = process_features(raw, net.config, "predict", seed=seed)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        timings["process_features"] = time.perf_counter() - start
        chunk = self.chunk_size_for(net.config, num_res)
        start = time.perf_counter()
        out, chunk = run_with_oom_retry(net, batch, self.runtime.replace(chunk_size=chunk),
                                        num_res)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        timings["predict"] = time.perf_counter() - start
        del batch

        def array(key: str) -> np.ndarray | None:
            value = out.get(key)
            return None if value is None else value.detach().float().cpu().numpy()

        pae, ptm, max_pae = array("predicted_aligned_error"), array("ptm"), \
            array("max_predicted_aligned_error")
        result = ModelPrediction(
            name=pred_name, model_name=model_name, seed=seed,
            atom_positions=array("final_atom_positions")[:num_res],
            atom_mask=array("final_atom_mask")[:num_res],
            plddt=array("plddt")[:num_res],
            pae=None if pae is None else pae[:num_res, :num_res],
            max_pae=None if max_pae is None else float(max_pae),
            ptm=None if ptm is None else float(ptm),
            num_recycles=int(out.get("num_recycles", 0)),
            chunk_size=chunk,
            timings=timings,
        )
        logger.info(
            "%s: features %.2f s, network %.2f s (%d recycles, chunk %s): mean pLDDT %.2f%s",
            pred_name, timings["process_features"], timings["predict"], result.num_recycles,
            chunk, result.mean_plddt, "" if result.ptm is None else f", pTM {result.ptm:.4f}")
        return result


def load_runner(model_names: Sequence[str], params: Mapping[str, str | os.PathLike], *,
                device: str | torch.device | None = None, precision: str = "fp32",
                chunk_size: int | str | None = "auto", attention_backend: str | None = None,
                num_recycle: int | None = None,
                recycle_early_stop_tolerance: float | None = None,
                max_msa: tuple[int, int] | None = None) -> ModelRunner:
    """Load ``model_names`` from ``params`` (name -> file or checkpoint directory),
    configure them (:func:`configure`) and put them on one device."""
    models = {}
    for name in model_names:
        start = time.perf_counter()
        net = load_network(name, params[name])
        configure(net.config, num_recycle=num_recycle,
                  recycle_early_stop_tolerance=recycle_early_stop_tolerance, max_msa=max_msa)
        models[name] = net
        logger.info("loaded %s from %s in %.2f s", name, params[name], time.perf_counter() - start)
    return ModelRunner(models, device=device, precision=precision, chunk_size=chunk_size,
                       attention_backend=attention_backend)
