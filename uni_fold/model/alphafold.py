"""The AlphaFold 2 model: embeddings, Evoformer, structure module, heads and recycling.

:class:`AlphaFold` runs Suppl. Alg. 2 "Inference" (Jumper et al. 2021) on AF2's processed
features: ``num_recycle + 1`` iterations of :meth:`AlphaFold.iteration`, each fed the
previous iteration's first MSA row, pair representation and atom positions (Alg. 32).

Weights: :meth:`AlphaFold.from_alphafold_params` builds a model from an official AF2
``params_model_*.npz`` (block counts read from the file), strictly, through the table of
:func:`alphafold_table`; :func:`save_checkpoint` / :meth:`AlphaFold.from_checkpoint` store
our own checkpoints as ``model.safetensors`` + ``config.json`` (no pickle).
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from data_pipeline import residue_constants as rc
from uni_fold.config import SHORTHANDS, Config, model_config
from uni_fold.model import confidence
from uni_fold.model.embedders import AF2_EVOFORMER_PATH
from uni_fold.model.embeddings_and_evoformer import (
    EmbeddingsAndEvoformer,
    embeddings_and_evoformer_rows,
)
from uni_fold.model.heads import (
    DistogramHead,
    ExperimentallyResolvedHead,
    MaskedMsaHead,
    PredictedAlignedErrorHead,
    PredictedLDDTHead,
    distogram_head_rows,
    experimentally_resolved_head_rows,
    masked_msa_head_rows,
    predicted_aligned_error_head_rows,
    predicted_lddt_head_rows,
)
from uni_fold.model.structure_module import StructureModule, structure_module_rows
from uni_fold.model.template import AF2_TEMPLATE_PAIR_STACK_SUFFIX, TemplateEmbedding
from uni_fold.model.weights import Table, load_af2_params, read_af2_npz

logger = logging.getLogger(__name__)

#: Processed features every iteration reads (AF2's names), each with the recycling axis.
FEATURES = (
    "aatype",
    "target_feat",
    "msa_feat",
    "msa_mask",
    "seq_mask",
    "residue_index",
    "extra_msa",
    "extra_msa_mask",
    "extra_has_deletion",
    "extra_deletion_value",
)
#: Also read when the config has templates.
TEMPLATE_FEATURES = TemplateEmbedding.FEATURES
CHECKPOINT_WEIGHTS = "model.safetensors"
CHECKPOINT_CONFIG = "config.json"
_CA = rc.atom_order["CA"]


def ca_distance_rms_change(
    prev_pos: torch.Tensor, new_pos: torch.Tensor, seq_mask: torch.Tensor
) -> torch.Tensor:
    """Early-stop criterion of AF2 v2.3 recycling: the RMS change of the CA-CA distance
    matrix between two iterations (Å), over pairs of unmasked residues.

    Shapes: ``prev_pos``, ``new_pos [N_res, 37, 3]``, ``seq_mask [N_res]`` -> scalar.
    """

    def dist(x: torch.Tensor) -> torch.Tensor:
        ca = x[..., _CA, :].float()
        return (ca[..., :, None, :] - ca[..., None, :, :]).square().sum(-1).sqrt()

    sq = (dist(prev_pos) - dist(new_pos)).square()
    mask = seq_mask.float()
    mask_2d = mask[..., :, None] * mask[..., None, :]
    return torch.sqrt((sq * mask_2d).sum() / mask_2d.sum() + 1e-8)


# ----------------------------------------------------------------------------------------
# The model with recycling (Alg. 2)


class AlphaFold(nn.Module):
    """Suppl. Alg. 2 "Inference" (Jumper et al. 2021): AlphaFold 2 with recycling.

    Submodules carry AF2's scope names: ``evoformer`` (:class:`EmbeddingsAndEvoformer`),
    ``structure_module``, and the heads ``distogram_head``, ``masked_msa_head``,
    ``predicted_lddt_head``, ``experimentally_resolved_head`` and, for ``_ptm`` configs,
    ``predicted_aligned_error_head``. As in AF2 a head whose loss weight is 0 is absent
    (the structure module is always built).

    ``forward(batch)`` takes AF2's processed features as tensors with the leading
    recycling axis, ``[num_recycle + 1, ...]`` (slice ``r`` feeds iteration ``r``; with
    ``resample_msa_in_recycling`` off, slice 0 feeds every iteration), and runs
    ``num_recycle + 1`` iterations. Earlier iterations run without gradients; in
    ``eval()`` mode with ``recycle_early_stop_tolerance > 0`` it stops once the CA
    distance matrix changes by less than the tolerance (RMS, Å). In training, a
    ``num_iter_recycling`` feature (AF2's sampled number of recycles) caps the count.

    Returns (from the last iteration; ``N = N_res``): ``final_atom_positions [N, 37, 3]``,
    ``final_atom_mask [N, 37]``, ``final_atom14_positions``, ``final_atom14_mask``,
    ``final_affines [N, 7]``, ``sm`` (per-layer structure-module outputs for the losses),
    ``plddt [N]`` (0-100), ``predicted_lddt_logits [N, 50]``, ``distogram_logits
    [N, N, 64]``, ``distogram_bin_edges``, ``masked_msa_logits [N_seq, N, 23]``,
    ``experimentally_resolved_logits [N, 37]``; with the PAE head also
    ``predicted_aligned_error [N, N]`` (Å), ``max_predicted_aligned_error``,
    ``aligned_confidence_probs``, ``predicted_aligned_error_logits`` and ``ptm``;
    ``representations`` (``single``, ``pair``, ``msa``, ``structure_module``); the recycled
    state ``prev_msa_first_row [N, c_m]``, ``prev_pair [N, N, c_z]``, ``prev_pos
    [N, 37, 3]`` (fp32, detached); ``num_recycles`` (recycles run, an int).
    """

    def __init__(self, config: Config):
        super().__init__()
        if not isinstance(config, Config):
            raise TypeError(
                f"AlphaFold expects a uni_fold.config.Config, got {type(config).__name__}; "
                "build one with uni_fold.config.model_config(preset)"
            )
        self.config = config
        e, h = config.model.embeddings_and_evoformer, config.model.heads
        self.evoformer = EmbeddingsAndEvoformer(e)
        self.structure_module = StructureModule(e.c_s, e.c_z, h.structure_module)
        self.distogram_head = DistogramHead(e.c_z, h.distogram) if h.distogram.weight else None
        self.masked_msa_head = MaskedMsaHead(e.c_m, h.masked_msa) if h.masked_msa.weight else None
        self.predicted_lddt_head = (
            PredictedLDDTHead(h.structure_module.num_channel, h.predicted_lddt)
            if h.predicted_lddt.weight
            else None
        )
        self.experimentally_resolved_head = (
            ExperimentallyResolvedHead(e.c_s) if h.experimentally_resolved.weight else None
        )
        self.predicted_aligned_error_head = (
            PredictedAlignedErrorHead(e.c_z, h.predicted_aligned_error)
            if h.predicted_aligned_error.weight
            else None
        )

    # -- one iteration -----------------------------------------------------------------

    def iteration(
        self, batch: Mapping[str, torch.Tensor], prev: Mapping[str, torch.Tensor]
    ) -> dict[str, Any]:
        """Suppl. Alg. 2 lines 3-22 on one recycling slice of the features (no recycling
        axis) and the recycled state ``prev``; returns the outputs listed on the class."""
        rep = self.evoformer(batch, prev)
        sm = self.structure_module(rep["single"], rep["pair"], batch["aatype"], batch["seq_mask"])
        out: dict[str, Any] = {k: v for k, v in sm.items() if k != "single"}
        rep["structure_module"] = sm["single"]
        out["representations"] = rep
        if self.distogram_head is not None:
            dgram = self.distogram_head(rep["pair"])
            out["distogram_logits"] = dgram["logits"]
            out["distogram_bin_edges"] = dgram["bin_edges"]
        if self.masked_msa_head is not None:
            out["masked_msa_logits"] = self.masked_msa_head(rep["msa"])["logits"]
        if self.experimentally_resolved_head is not None:
            out["experimentally_resolved_logits"] = self.experimentally_resolved_head(
                rep["single"]
            )["logits"]
        if self.predicted_lddt_head is not None:
            logits = self.predicted_lddt_head(sm["single"])["logits"]
            out["predicted_lddt_logits"] = logits
            out["plddt"] = confidence.compute_plddt(logits)
        if self.predicted_aligned_error_head is not None:
            pae = self.predicted_aligned_error_head(rep["pair"])
            cfg = self.config.model.heads.predicted_aligned_error
            out["predicted_aligned_error_logits"] = pae["logits"]
            out.update(
                confidence.compute_predicted_aligned_error(
                    pae["logits"], max_bin=cfg.max_error_bin, num_bins=cfg.num_bins
                )
            )
            out["ptm"] = confidence.predicted_tm_score(
                pae["logits"], pae["breaks"], residue_weights=batch["seq_mask"]
            )
        return out

    # -- recycling -----------------------------------------------------------------------

    def initial_prev(self, num_res: int, device: torch.device) -> dict[str, torch.Tensor]:
        """Zero recycled state for the first iteration (Alg. 2 line 2)."""
        e = self.config.model.embeddings_and_evoformer
        return {
            "prev_pos": torch.zeros(num_res, 37, 3, device=device),
            "prev_msa_first_row": torch.zeros(num_res, e.c_m, device=device),
            "prev_pair": torch.zeros(num_res, num_res, e.c_z, device=device),
        }

    def required_features(self) -> tuple[str, ...]:
        """The batch keys :meth:`forward` reads."""
        templates = self.config.model.embeddings_and_evoformer.template.enabled
        return FEATURES + (TEMPLATE_FEATURES if templates else ())

    def _prepare_batch(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        missing = [k for k in self.required_features() if k not in batch]
        if missing:
            raise KeyError(
                f"the batch lacks feature(s) {', '.join(missing)}; AlphaFold.forward takes "
                "AF2's processed features with the leading recycling axis (see "
                "uni_fold.model.alphafold.FEATURES)"
            )
        device = self.evoformer.single_activations.weight.device
        out = {}
        for k in self.required_features():
            v = batch[k]
            out[k] = torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v
            out[k] = out[k].to(device)
        aatype = out["aatype"]
        if aatype.ndim != 2 or aatype.is_floating_point():
            raise ValueError(
                f"batch['aatype'] has shape {tuple(aatype.shape)} and dtype {aatype.dtype}; "
                "expected integer [num_recycle + 1, N_res] (the leading recycling axis is "
                "required; add it with x[None] for a single iteration)"
            )
        num_slices = aatype.shape[0]
        for k, v in out.items():
            if v.ndim == 0 or v.shape[0] != num_slices:
                raise ValueError(
                    f"batch[{k!r}] has shape {tuple(v.shape)}; every feature needs the same "
                    f"leading recycling axis as aatype ({num_slices})"
                )
        return out

    def _num_recycles(self, batch: Mapping[str, Any], num_slices: int) -> int:
        cfg = self.config.model
        num_recycle = cfg.num_recycle
        if self.training and "num_iter_recycling" in batch:
            sampled = int(torch.as_tensor(np.asarray(batch["num_iter_recycling"])).flatten()[0])
            num_recycle = min(sampled, num_recycle)
        if cfg.resample_msa_in_recycling and num_slices < num_recycle + 1:
            raise ValueError(
                f"the batch has {num_slices} recycling slice(s) but the model runs "
                f"{num_recycle} recycle(s), which needs {num_recycle + 1}; process the features "
                "with the same num_recycle or lower model.config.model.num_recycle"
            )
        return num_recycle

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        feats = self._prepare_batch(batch)
        num_slices, num_res = feats["aatype"].shape
        num_recycle = self._num_recycles(batch, num_slices)
        resample = self.config.model.resample_msa_in_recycling
        tolerance = self.config.model.recycle_early_stop_tolerance
        prev = self.initial_prev(num_res, feats["aatype"].device)
        out: dict[str, Any] = {}
        recycles = 0
        for r in range(num_recycle + 1):
            last = r == num_recycle
            sliced = {k: v[r if resample else 0] for k, v in feats.items()}
            with torch.set_grad_enabled(torch.is_grad_enabled() and last):
                out = self.iteration(sliced, prev)
            new_prev = {
                "prev_pos": out["final_atom_positions"].detach().float(),
                "prev_msa_first_row": out["representations"]["msa_first_row"].detach().float(),
                "prev_pair": out["representations"]["pair"].detach().float(),
            }
            recycles = r
            if r > 0 and tolerance > 0 and not self.training:
                change = float(ca_distance_rms_change(
                    prev["prev_pos"], new_prev["prev_pos"], sliced["seq_mask"]
                ))
                logger.debug("recycle %d: CA distance RMS change %.4f A", r, change)
                if change < tolerance:
                    prev = new_prev
                    logger.info("recycling stopped early after %d recycle(s)", r)
                    break
            prev = new_prev
        out.update(prev)
        out["num_recycles"] = recycles
        return out

    # -- weights -------------------------------------------------------------------------

    @classmethod
    def _uninitialised(cls, config: Config) -> AlphaFold:
        """A model whose parameters are allocated but not initialised (they are about to be
        overwritten; random initialisation of 93M parameters takes seconds)."""
        with torch.device("meta"):
            model = cls(config)
        if any(True for _ in model.buffers()):  # buffers would need their initial values
            return cls(config)
        return model.to_empty(device="cpu")

    @classmethod
    def from_alphafold_params(
        cls,
        path: str | os.PathLike,
        preset: str,
        num_recycle: int | None = None,
        **overrides: Any,
    ) -> AlphaFold:
        """A model with preset ``preset`` (``model_1`` ... ``model_5_ptm``) holding the AF2
        parameters of the ``.npz`` at ``path``.

        Block counts (Evoformer, extra MSA, template pair stack) are read from the stacked
        axes of the file unless given in ``overrides``, which takes
        :func:`uni_fold.config.model_config` shorthands (``evoformer_num_block=2``, ...)
        and dotted config paths (``**{"model.heads.structure_module.num_layer": 4}``).
        Loading is strict (:func:`load_alphafold_params`). The model is returned in
        ``eval()`` mode (no dropout), like ``from_checkpoint``.
        """
        params = read_af2_npz(path)
        shorthands: dict[str, Any] = {}
        dotted: dict[str, Any] = {}
        for key, value in overrides.items():
            if key in SHORTHANDS:
                shorthands[key] = value
            elif "." in key:
                dotted[key] = value
            else:
                raise TypeError(
                    f"from_alphafold_params() got an unknown override {key!r}; use one of "
                    f"{sorted(SHORTHANDS)} or a dotted config path"
                )
        for key, value in infer_block_counts(params).items():
            shorthands.setdefault(key, value)
        config = model_config(preset, dotted, num_recycle=num_recycle, **shorthands)
        model = cls._uninitialised(config)
        load_alphafold_params(model, params)
        logger.info("built %s from AF2 parameters %s (%s)", preset, path, _block_summary(config))
        return model.eval()

    @classmethod
    def from_checkpoint(
        cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu"
    ) -> AlphaFold:
        """Load a checkpoint written by :func:`save_checkpoint` (no code is executed), in
        ``eval()`` mode; call ``.train()`` to fine-tune."""
        directory = Path(directory)
        config_path, weights_path = directory / CHECKPOINT_CONFIG, directory / CHECKPOINT_WEIGHTS
        for p in (config_path, weights_path):
            if not p.is_file():
                raise FileNotFoundError(
                    f"checkpoint {directory} has no {p.name}; a checkpoint directory holds "
                    f"{CHECKPOINT_CONFIG} and {CHECKPOINT_WEIGHTS} (see save_checkpoint)"
                )
        try:
            config = Config.from_dict(json.loads(config_path.read_text()))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(
                f"checkpoint config {config_path} is not a valid config: {err}"
            ) from err
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(weights_path), device=str(map_location))
        except (SafetensorError, OSError) as err:
            raise ValueError(
                f"checkpoint weights {weights_path} cannot be read ({err}); the file is "
                "corrupt or truncated: write it again with save_checkpoint"
            ) from err
        model = cls._uninitialised(config)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"checkpoint {weights_path} does not fit its config: missing "
                f"{sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
            )
        return model.to(map_location).eval()


# ----------------------------------------------------------------------------------------
# AF2 parameter files

#: Shorthand -> AF2 path prefix of the stacked arrays whose axis 0 counts the blocks.
_STACKS = {
    "evoformer_num_block": f"{AF2_EVOFORMER_PATH}/evoformer_iteration/",
    "extra_msa_stack_num_block": f"{AF2_EVOFORMER_PATH}/extra_msa_stack/",
    "template_pair_stack_num_block": (
        f"{AF2_EVOFORMER_PATH}/template_embedding/{AF2_TEMPLATE_PAIR_STACK_SUFFIX}/"
    ),
}


def infer_block_counts(params: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Block counts from the stacked axes of AF2 ``params``, as ``model_config``
    shorthands; a stack absent from the file is left out."""
    counts = {}
    for shorthand, prefix in _STACKS.items():
        for key in sorted(params):
            if key.startswith(prefix):
                counts[shorthand] = int(np.shape(params[key])[0])
                break
    return counts


def _block_summary(config: Config) -> str:
    e = config.model.embeddings_and_evoformer
    return (
        f"{e.evoformer_num_block} Evoformer, {e.extra_msa_stack_num_block} extra-MSA, "
        f"{e.template.template_pair_stack.num_block} template blocks"
    )


def alphafold_table(config: Config) -> Table:
    """The weight table of :class:`AlphaFold` for ``config``: every parameter of ours ->
    its array in an AF2 monomer parameter file (see :mod:`uni_fold.model.weights`)."""
    h = config.model.heads
    rows: Table = {
        **embeddings_and_evoformer_rows("evoformer", config.model.embeddings_and_evoformer),
        **structure_module_rows("structure_module", h.structure_module),
    }
    heads = (
        (h.distogram.weight, distogram_head_rows, "distogram_head"),
        (h.masked_msa.weight, masked_msa_head_rows, "masked_msa_head"),
        (h.predicted_lddt.weight, predicted_lddt_head_rows, "predicted_lddt_head"),
        (h.experimentally_resolved.weight, experimentally_resolved_head_rows,
         "experimentally_resolved_head"),
        (h.predicted_aligned_error.weight, predicted_aligned_error_head_rows,
         "predicted_aligned_error_head"),
    )
    for weight, fn, name in heads:
        if weight:
            rows.update(fn(name))
    return rows


def load_alphafold_params(
    model: AlphaFold, params: str | os.PathLike | Mapping[str, np.ndarray]
) -> AlphaFold:
    """Copy AF2 parameters (an ``.npz`` path or a flat ``path//name`` dict) into ``model``.

    Strict: every parameter of the model and every array of the file must be used and
    every shape must fit, checked before anything is copied; otherwise a
    :class:`~uni_fold.model.weights.WeightImportError` (a ``ValueError``) names the first
    missing, unexpected or misshapen keys.
    """
    if not isinstance(params, Mapping):
        params = read_af2_npz(params)
    load_af2_params(model, params, alphafold_table(model.config))
    return model


# ----------------------------------------------------------------------------------------
# Our checkpoints: safetensors + JSON config


def save_checkpoint(model: AlphaFold, directory: str | os.PathLike) -> Path:
    """Write ``model`` to ``directory`` as ``model.safetensors`` + ``config.json``.

    Each file is written under a temporary name and renamed, so an interrupted save leaves
    the previous checkpoint intact. Returns the directory.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": "uni-fold", "preset": model.config.name}
    for name, write in (
        (CHECKPOINT_WEIGHTS, lambda p: save_file(state, p, metadata=metadata)),
        (CHECKPOINT_CONFIG, lambda p: Path(p).write_text(model.config.to_json())),
    ):
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
        os.close(fd)
        try:
            write(tmp)
            os.replace(tmp, directory / name)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return directory
