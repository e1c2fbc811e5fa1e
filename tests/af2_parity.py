"""End-to-end parity harness: the AF2 reference (``alphafold-colabfold``, JAX on the CPU)
and our :class:`~uni_fold.model.alphafold.AlphaFold` on the same processed features and
the same random AF2-format parameters.

1. Raw features of a real protein from ``../shared/data`` (sequence, MSA from an a3m,
   templates from an hhsearch ``.hhr`` against ``structures/mmcif``) are made by the
   reference's own data pipeline (``alphafold.data``) and processed by its feature
   pipeline (``alphafold.model.features.np_example_to_features``), recycling axis included.
2. Parameters: the shapes of the reference's ``init`` (``jax.eval_shape``, no compile),
   filled with random values so that every array is non-constant (lecun-normal weights,
   layer-norm scales ``1 + 0.2 N(0, 1)``, biases and offsets ``0.2 N(0, 1)``), saved as an
   AF2 ``.npz`` and loaded by ``AlphaFold.from_alphafold_params``.
3. The reference runs one recycling iteration of ``AlphaFoldIteration`` per slice,
   carrying the recycled state in fp32 (its ``RunModel`` would cast it to fp16), in fp32
   with unfused triangle weights and ``zero_init`` on (AF2's released behaviour: undefined
   template torsions keep their raw value); the confidences come from the reference's
   ``alphafold.common.confidence``.

Used by ``tests/test_alphafold.py`` and ``scripts/parity_report.py``.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import haiku as hk  # noqa: E402
import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import reference_utils  # noqa: E402
import torch  # noqa: E402
from alphafold.common import confidence as af2_confidence  # noqa: E402
from alphafold.data import parsers, pipeline, templates  # noqa: E402
from alphafold.model import features as af2_features  # noqa: E402
from alphafold.model import modules as af2_modules  # noqa: E402
from shared import SHARED_DATA  # noqa: E402

MMCIF_DIR = SHARED_DATA / "structures" / "mmcif"
KALIGN = "kalign"

#: Real proteins with an MSA and hhsearch template hits whose mmCIFs are in shared data.
CASES: dict[str, tuple[str, str | None]] = {
    "openfold_test_query": (
        "msas/openfold_test_query/bfd_uniclust_hits.a3m",
        "msas/openfold_test_query/pdb70_hits.hhr",
    ),
    "6kwc_1": ("msas/6kwc_1/bfd_uniref_hits.a3m", "msas/6kwc_1/hhsearch_output.hhr"),
    "rosettafold_t000": ("msas/rosettafold_t000/t000_.msa0.a3m", "msas/rosettafold_t000/t000_.hhr"),
}


@dataclass
class ParitySetup:
    """What to compare: preset, block counts, protein, sizes and seed."""

    preset: str = "model_1_ptm"
    evoformer_num_block: int = 2
    extra_msa_stack_num_block: int = 1
    template_pair_stack_num_block: int = 1
    num_recycle: int = 1
    case: str = "openfold_test_query"
    max_msa_rows: int | None = 512
    max_msa_clusters: int | None = 64
    max_extra_msa: int | None = 256
    max_templates: int = 2
    seed: int = 0


@dataclass
class ParityResult:
    errors: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------
# Reference config, features, parameters


def reference_config(setup: ParitySetup) -> ml_collections.ConfigDict:
    """AF2's config for ``setup``: fp32, unfused weights, released ``zero_init`` numerics."""
    cfg = reference_utils.reference_config(setup.preset)
    cfg.model.global_config.zero_init = True
    cfg.model.num_recycle = setup.num_recycle
    cfg.data.common.num_recycle = setup.num_recycle
    if setup.max_msa_clusters is not None:
        cfg.data.eval.max_msa_clusters = setup.max_msa_clusters
    if setup.max_extra_msa is not None:
        cfg.data.common.max_extra_msa = setup.max_extra_msa
    cfg.data.eval.max_templates = setup.max_templates
    e = cfg.model.embeddings_and_evoformer
    e.evoformer_num_block = setup.evoformer_num_block
    e.extra_msa_stack_num_block = setup.extra_msa_stack_num_block
    e.template.template_pair_stack.num_block = setup.template_pair_stack_num_block
    return cfg


def raw_features(setup: ParitySetup) -> dict[str, np.ndarray]:
    """Sequence, MSA and template features of ``setup.case`` by the reference pipeline."""
    if setup.case not in CASES:
        raise ValueError(f"unknown parity case {setup.case!r}; choose one of {sorted(CASES)}")
    a3m_path, hhr_path = CASES[setup.case]
    msa = parsers.parse_a3m((SHARED_DATA / a3m_path).read_text())
    if setup.max_msa_rows is not None:
        n = setup.max_msa_rows
        msa = parsers.Msa(msa.sequences[:n], msa.deletion_matrix[:n], msa.descriptions[:n])
    sequence = msa.sequences[0]
    feats = {
        **pipeline.make_sequence_features(sequence, setup.case, len(sequence)),
        **pipeline.make_msa_features([msa]),
    }
    hits = []
    if hhr_path is not None:
        hits = parsers.parse_hhr((SHARED_DATA / hhr_path).read_text())
        hits = [h for h in hits if (MMCIF_DIR / f"{h.name[:4].lower()}.cif").is_file()]
    featurizer = templates.HhsearchHitFeaturizer(
        mmcif_dir=str(MMCIF_DIR), max_template_date="2100-01-01",
        max_hits=setup.max_templates, kalign_binary_path=KALIGN,
        release_dates_path=None, obsolete_pdbs_path=None,
    )
    result = featurizer.get_templates(sequence, hits)
    feats.update(result.features)
    return feats


def processed_features(
    raw: dict[str, np.ndarray], cfg: ml_collections.ConfigDict, seed: int
) -> dict[str, np.ndarray]:
    """The reference's processed features, with the recycling axis ``[num_recycle + 1]``."""
    return af2_features.np_example_to_features(raw, cfg, random_seed=seed)


class _Iteration(hk.Module):
    """One ``AlphaFoldIteration`` in the ``alphafold`` scope, as in AF2's parameter files."""

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(name="alphafold")
        self.config = config

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        iteration = af2_modules.AlphaFoldIteration_noE(self.config, self.config.global_config)
        return iteration(batch, is_training=False)


def _transformed(cfg: ml_collections.ConfigDict) -> hk.Transformed:
    return hk.transform(lambda batch: _Iteration(cfg.model)(batch))


def _first_slice(batch: dict[str, np.ndarray], cfg: ml_collections.ConfigDict) -> dict[str, Any]:
    b = {k: v[0] for k, v in batch.items()}
    n = b["aatype"].shape[0]
    e = cfg.model.embeddings_and_evoformer
    b["prev_pos"] = np.zeros((n, 37, 3), np.float32)
    b["prev_msa_first_row"] = np.zeros((n, e.msa_channel), np.float32)
    b["prev_pair"] = np.zeros((n, n, e.pair_channel), np.float32)
    return b


def _is_stacked(path: str) -> bool:
    parts = path.split("/")
    stacks = ("evoformer_iteration", "extra_msa_stack", "__layer_stack_no_state")
    return any(p in parts for p in stacks)


def _shape_batch(cfg: ml_collections.ConfigDict, n: int = 8) -> dict[str, np.ndarray]:
    """A minimal processed batch (one recycling slice) to trace the reference with."""
    f32, i32 = np.float32, np.int32
    batch = {
        "aatype": np.zeros(n, i32), "target_feat": np.zeros((n, 22), f32),
        "msa_feat": np.zeros((2, n, 49), f32), "msa_mask": np.ones((2, n), f32),
        "seq_mask": np.ones(n, f32), "residue_index": np.arange(n, dtype=i32),
        "extra_msa": np.zeros((2, n), i32), "extra_msa_mask": np.ones((2, n), f32),
        "extra_has_deletion": np.zeros((2, n), f32),
        "extra_deletion_value": np.zeros((2, n), f32),
        "atom14_atom_exists": np.ones((n, 14), f32), "atom37_atom_exists": np.ones((n, 37), f32),
        "residx_atom14_to_atom37": np.zeros((n, 14), i32),
        "residx_atom37_to_atom14": np.zeros((n, 37), i32),
    }
    if cfg.model.embeddings_and_evoformer.template.enabled:
        batch.update({
            "template_aatype": np.zeros((1, n), i32),
            "template_all_atom_positions": np.zeros((1, n, 37, 3), f32),
            "template_all_atom_masks": np.ones((1, n, 37), f32),
            "template_pseudo_beta": np.zeros((1, n, 3), f32),
            "template_pseudo_beta_mask": np.ones((1, n), f32),
            "template_mask": np.ones(1, f32),
        })
    return {k: v[None] for k, v in batch.items()}


def reference_param_shapes(cfg: ml_collections.ConfigDict) -> dict[str, tuple[int, ...]]:
    """``path//name -> shape`` of the reference's parameters for ``cfg`` (AF2's ``.npz``
    layout), from tracing its ``init`` (``jax.eval_shape``: nothing is compiled or run)."""
    batch = _shape_batch(cfg)
    shapes = jax.eval_shape(_transformed(cfg).init, jax.random.PRNGKey(0), _first_slice(batch, cfg))
    return {k: tuple(v.shape) for k, v in reference_utils.flatten_params(shapes).items()}


def random_params(cfg: ml_collections.ConfigDict, seed: int) -> dict[str, np.ndarray]:
    """Random AF2-format parameters (flat ``path//name``) with the reference's shapes."""
    rng = np.random.default_rng(seed)
    params = {}
    for key, shape in sorted(reference_param_shapes(cfg).items()):
        path, name = key.split("//")
        core = shape[1:] if _is_stacked(path) else shape
        noise = rng.standard_normal(shape)
        if name == "scale":
            value = 1.0 + 0.2 * noise
        elif len(core) <= 1:  # offsets, biases, per-head point weights
            value = 0.2 * noise
        else:
            per_head_in = name in ("query_w", "key_w", "value_w", "gating_w")
            fan_in = core[0] if per_head_in else int(np.prod(core[:-1]))
            value = noise / np.sqrt(fan_in)
        params[key] = value.astype(np.float32)
    return params


def save_npz(params: dict[str, np.ndarray], path: str | Path) -> Path:
    path = Path(path)
    np.savez(path, **params)
    return path


# ----------------------------------------------------------------------------------------
# Running both sides


def nest_params(params: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Flat ``path//name`` params -> haiku's nested ``{path: {name: array}}``."""
    nested: dict[str, dict[str, np.ndarray]] = {}
    for key, value in params.items():
        path, name = key.split("//")
        nested.setdefault(path, {})[name] = value
    return nested


def reference_recycling(
    cfg: ml_collections.ConfigDict, nested: dict[str, Any], batch: dict[str, np.ndarray],
    apply: Any = None, recycled_positions: list[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Raw reference outputs of the last iteration after ``num_recycle`` recycles; pass a
    jitted ``apply`` (``jax.jit(hk.transform(...).apply)``) to reuse its compilation, and
    a list to collect the positions each iteration hands to the next."""
    apply = apply if apply is not None else reference_apply(cfg)
    b = _first_slice(batch, cfg)
    prev = {k: b[k] for k in ("prev_pos", "prev_msa_first_row", "prev_pair")}
    ret: dict[str, Any] = {}
    for r in range(cfg.model.num_recycle + 1):
        sliced = {k: v[r] for k, v in batch.items()}
        ret = apply(nested, jax.random.PRNGKey(0), {**sliced, **prev})
        ret = jax.tree_util.tree_map(np.asarray, ret)
        prev = {
            "prev_pos": ret["structure_module"]["final_atom_positions"],
            "prev_msa_first_row": ret["representations"]["msa_first_row"],
            "prev_pair": ret["representations"]["pair"],
        }
        if recycled_positions is not None and r < cfg.model.num_recycle:
            recycled_positions.append(prev["prev_pos"])
    return ret


def reference_apply(cfg: ml_collections.ConfigDict) -> Any:
    """The jitted ``apply`` of one reference ``AlphaFoldIteration``."""
    return jax.jit(_transformed(cfg).apply)


def reference_forward(
    cfg: ml_collections.ConfigDict, params: dict[str, np.ndarray], batch: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The reference with recycling: one ``AlphaFoldIteration`` per slice, fp32 state, and
    the confidences of the reference's ``alphafold.common.confidence``."""
    recycled: list[np.ndarray] = []
    ret = reference_recycling(cfg, nest_params(params), batch, recycled_positions=recycled)
    seq_mask = batch["seq_mask"][0]
    pae = ret.get("predicted_aligned_error")
    pae_logits = pae["logits"] if pae is not None else None
    out = {
        "final_atom_positions": ret["structure_module"]["final_atom_positions"],
        "final_atom_mask": ret["structure_module"]["final_atom_mask"],
        "plddt": af2_confidence.compute_plddt(ret["predicted_lddt"]["logits"]),
        "distogram_logits": ret["distogram"]["logits"],
        "masked_msa_logits": ret["masked_msa"]["logits"],
        "experimentally_resolved_logits": ret["experimentally_resolved"]["logits"],
        "recycling_bin_margin_A": np.asarray(min(
            (recycling_bin_margin(batch["aatype"][0], pos) for pos in recycled),
            default=np.inf,
        )),
    }
    if pae_logits is not None:
        breaks = ret["predicted_aligned_error"]["breaks"]
        pae = af2_confidence.compute_predicted_aligned_error(logits=pae_logits, breaks=breaks)
        out["predicted_aligned_error"] = pae["predicted_aligned_error"]
        out["max_predicted_aligned_error"] = np.asarray(pae["max_predicted_aligned_error"])
        out["ptm"] = np.asarray(
            af2_confidence.predicted_tm_score(pae_logits, breaks, residue_weights=seq_mask)
        )
    return out


def to_torch_batch(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}


def ours_forward(model: torch.nn.Module, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    model.eval()
    with torch.no_grad():
        out = model(to_torch_batch(batch))
    keys = [
        "final_atom_positions", "final_atom_mask", "plddt", "distogram_logits",
        "masked_msa_logits", "experimentally_resolved_logits", "predicted_aligned_error",
        "max_predicted_aligned_error", "ptm",
    ]
    return {k: out[k].detach().cpu().numpy() for k in keys if k in out}


def compare(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, float]:
    """Errors: absolute (Å, pLDDT points, pTM) or relative to the reference's largest value
    (``*_rel``, for logits)."""
    errors: dict[str, float] = {}
    mask = ref["final_atom_mask"].astype(bool)
    diff = np.linalg.norm(ours["final_atom_positions"] - ref["final_atom_positions"], axis=-1)
    errors["final_atom_positions_max_A"] = float(diff[mask].max())
    mask_diff = np.abs(ours["final_atom_mask"] - ref["final_atom_mask"])
    errors["final_atom_mask_mismatch"] = float(mask_diff.max())
    errors["plddt_max_abs"] = float(np.abs(ours["plddt"] - ref["plddt"]).max())
    for name in ("distogram_logits", "masked_msa_logits", "experimentally_resolved_logits"):
        scale = float(np.abs(ref[name]).max())
        errors[f"{name}_max_rel"] = float(np.abs(ours[name] - ref[name]).max()) / scale
    if "ptm" in ref:
        errors["predicted_aligned_error_max_A"] = float(
            np.abs(ours["predicted_aligned_error"] - ref["predicted_aligned_error"]).max()
        )
        errors["max_predicted_aligned_error_abs"] = float(
            abs(ours["max_predicted_aligned_error"] - ref["max_predicted_aligned_error"])
        )
        errors["ptm_abs"] = float(abs(ours["ptm"] - ref["ptm"]))
    return errors


def recycling_bin_flips(aatype: np.ndarray, pos_a: np.ndarray, pos_b: np.ndarray) -> int:
    """Residue pairs whose pseudo-beta distance falls in different bins of the recycling
    distogram (Suppl. Alg. 32) for two sets of positions ``[N_res, 37, 3]``."""
    from uni_fold.model.embedders import pseudo_beta

    aatype_t = torch.as_tensor(aatype)
    lower = torch.linspace(3.25, 20.75, 15, dtype=torch.float64) ** 2
    d2 = []
    for pos in (pos_a, pos_b):
        x, _ = pseudo_beta(aatype_t, torch.as_tensor(np.asarray(pos), dtype=torch.float64))
        d2.append(((x[:, None] - x[None]) ** 2).sum(-1)[..., None])
    return int(((d2[0] > lower) != (d2[1] > lower)).any(-1).triu(1).sum())


def recycling_bin_margin(aatype: np.ndarray, positions: np.ndarray) -> float:
    """Smallest distance (Å) of a residue pair's pseudo-beta distance to a bin edge of
    the recycling distogram (Suppl. Alg. 32). Two fp32 implementations whose positions
    differ by less than this see the same recycling input."""
    from uni_fold.model.embedders import pseudo_beta

    x, _ = pseudo_beta(torch.tensor(aatype), torch.tensor(np.array(positions, np.float64)))
    d = ((x[:, None] - x[None]) ** 2).sum(-1).sqrt()
    edges = torch.linspace(3.25, 20.75, 15, dtype=torch.float64)
    i, j = torch.triu_indices(d.shape[0], d.shape[0], 1)
    return float((d[i, j][:, None] - edges).abs().min())


def per_iteration_errors(
    cfg: ml_collections.ConfigDict,
    params: dict[str, np.ndarray],
    batch: dict[str, np.ndarray],
    model: torch.nn.Module,
) -> list[dict[str, float]]:
    """Each recycling iteration of ours fed the reference's recycled state: position and
    distogram errors, and the recycling-distogram bin flips between the two models' free
    running positions (a flip is a discontinuity that round-off alone can cause)."""
    apply, nested = reference_apply(cfg), nest_params(params)
    b = _first_slice(batch, cfg)
    ref_prev = {k: b[k] for k in ("prev_pos", "prev_msa_first_row", "prev_pair")}
    our_prev = {k: torch.from_numpy(v) for k, v in ref_prev.items()}
    rows = []
    model.eval()
    for r in range(cfg.model.num_recycle + 1):
        sliced = {k: torch.from_numpy(np.ascontiguousarray(v[r])) for k, v in batch.items()}
        ret = apply(nested, jax.random.PRNGKey(0), {**{k: v[r] for k, v in batch.items()},
                                                     **ref_prev})
        ret = jax.tree_util.tree_map(np.asarray, ret)
        with torch.no_grad():
            forced = model.iteration(sliced, {k: torch.from_numpy(np.ascontiguousarray(v))
                                              for k, v in ref_prev.items()})
            free = model.iteration(sliced, our_prev)
        ref_pos = ret["structure_module"]["final_atom_positions"]
        dgram = ret["distogram"]["logits"]
        rows.append({
            "iteration": r,
            "positions_max_A": float(
                np.abs(forced["final_atom_positions"].numpy() - ref_pos).max()
            ),
            "distogram_logits_max_rel": float(
                np.abs(forced["distogram_logits"].numpy() - dgram).max() / np.abs(dgram).max()
            ),
            "free_running_positions_max_A": float(
                np.abs(free["final_atom_positions"].numpy() - ref_pos).max()
            ),
            "recycling_bin_flips": recycling_bin_flips(
                batch["aatype"][r], free["final_atom_positions"].numpy(), ref_pos
            ),
        })
        ref_prev = {
            "prev_pos": ref_pos,
            "prev_msa_first_row": ret["representations"]["msa_first_row"],
            "prev_pair": ret["representations"]["pair"],
        }
        our_prev = {
            "prev_pos": free["final_atom_positions"],
            "prev_msa_first_row": free["representations"]["msa_first_row"],
            "prev_pair": free["representations"]["pair"],
        }
    return rows


def run_parity(
    setup: ParitySetup, workdir: str | Path, per_iteration: bool = False
) -> ParityResult:
    """Build features and parameters, run both models, return the errors and timings
    (with ``per_iteration``, also :func:`per_iteration_errors` in ``info``)."""
    from uni_fold.model.alphafold import AlphaFold

    timings: dict[str, float] = {}
    t = time.perf_counter()
    cfg = reference_config(setup)
    batch = processed_features(raw_features(setup), cfg, setup.seed)
    timings["features_s"] = time.perf_counter() - t

    t = time.perf_counter()
    params = random_params(cfg, setup.seed)
    npz = save_npz(params, Path(workdir) / f"params_{setup.preset}.npz")
    timings["params_s"] = time.perf_counter() - t

    t = time.perf_counter()
    ref = reference_forward(cfg, params, batch)
    timings["reference_s"] = time.perf_counter() - t

    t = time.perf_counter()
    model = AlphaFold.from_alphafold_params(npz, setup.preset, num_recycle=setup.num_recycle)
    timings["load_s"] = time.perf_counter() - t
    t = time.perf_counter()
    ours = ours_forward(model, batch)
    timings["ours_s"] = time.perf_counter() - t
    info = {
        "num_res": int(batch["aatype"].shape[1]),
        "msa_shape": tuple(batch["msa_feat"].shape[1:3]),
        "extra_msa_shape": tuple(batch["extra_msa"].shape[1:]),
        "num_templates": int(batch["template_mask"][0].sum()) if "template_mask" in batch else 0,
        "num_params": len(params),
    }
    if per_iteration:
        t = time.perf_counter()
        info["per_iteration"] = per_iteration_errors(cfg, params, batch, model)
        timings["per_iteration_s"] = time.perf_counter() - t
    info["recycling_bin_margin_A"] = float(ref["recycling_bin_margin_A"])
    return ParityResult(compare(ours, ref), timings, info)


__all__ = [
    "CASES",
    "ParitySetup",
    "ParityResult",
    "compare",
    "ours_forward",
    "processed_features",
    "nest_params",
    "per_iteration_errors",
    "recycling_bin_flips",
    "recycling_bin_margin",
    "random_params",
    "reference_apply",
    "reference_param_shapes",
    "reference_recycling",
    "raw_features",
    "reference_config",
    "reference_forward",
    "run_parity",
    "save_npz",
]
