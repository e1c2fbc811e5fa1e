"""Run pieces of the AlphaFold 2 reference (``alphafold-colabfold``, JAX/haiku on the CPU)
with random parameters, for parity tests.

Typical use::

    cfg = reference_config()
    evo = cfg.model.embeddings_and_evoformer.evoformer
    gc = cfg.model.global_config

    def build(msa, mask):
        return modules.MSAColumnAttention(evo.msa_column_attention, gc)(msa, mask)

    out, params = run_haiku(build, msa, mask)   # params: {"<path>//<name>": np.ndarray}

The reference is configured for exact fp32 comparison: no bfloat16, no Pallas kernels,
unfused triangle-multiplication weights (AF2's official monomer layout), random (not zero)
initialisation of the final layers, and no dropout. After haiku's init, every parameter
that is still constant (layer-norm scales and offsets, biases, gate weights) is redrawn
at random, so that every parameter changes the outputs and a wrongly mapped one is seen.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Small test programs: XLA's cheapest compile settings save seconds per reference run and
# do not change fp32 results. (Read when JAX's CPU backend starts, i.e. first use.)
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    ).strip()

import haiku as hk  # noqa: E402
import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from alphafold.model import config as af2_config  # noqa: E402

# Scale of the random values given to parameters that haiku initialises to a constant.
REDRAW_SCALE_WEIGHTS = 0.05
REDRAW_SCALE_VECTORS = 0.2


def _set_everywhere(cfg: ml_collections.ConfigDict, key: str, value: Any) -> int:
    """Set ``key`` to ``value`` in every nested ConfigDict that has it; count them."""
    count = 0
    for name in list(cfg.keys()):
        item = cfg[name]
        if isinstance(item, ml_collections.ConfigDict):
            count += _set_everywhere(item, key, value)
        elif name == key:
            cfg[name] = value
            count += 1
    return count


def reference_config(name: str = "model_1_ptm") -> ml_collections.ConfigDict:
    """AF2's model config ``name`` set up for fp32 parity tests (see module docstring)."""
    cfg = af2_config.model_config(name)
    gc = cfg.model.global_config
    gc.bfloat16 = False
    gc.bfloat16_output = False
    gc.use_pallas = False
    gc.zero_init = False
    gc.deterministic = True
    gc.eval_dropout = False
    gc.use_remat = False
    _set_everywhere(cfg.model, "fuse_projection_weights", False)
    return cfg


def flatten_params(params: hk.Params) -> dict[str, Any]:
    """Haiku params -> flat ``{"<module path>//<param name>": array}``, as in AF2's npz.

    Arrays become numpy arrays; anything else (e.g. ``jax.ShapeDtypeStruct`` from
    ``jax.eval_shape``) is kept as it is."""
    return {
        f"{path}//{name}": np.asarray(value) if hasattr(value, "__array__") else value
        for path, group in params.items()
        for name, value in group.items()
    }


def _is_constant(array: np.ndarray) -> bool:
    return array.size > 0 and bool(np.all(array == array.reshape(-1)[0]))


def randomize_constant_params(params: hk.Params, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Redraw every parameter array whose entries are all equal: ``c + s * N(0, 1)`` with
    ``s = 0.05`` for weight arrays and ``0.2`` for vectors (scales, offsets, biases)."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, np.ndarray]] = {}
    for path in sorted(params):
        out[path] = {}
        for name in sorted(params[path]):
            value = np.asarray(params[path][name])
            if _is_constant(value):
                is_weight = name in ("weights", "gating_w") or name.endswith("_w")
                scale = REDRAW_SCALE_WEIGHTS if is_weight else REDRAW_SCALE_VECTORS
                value = value + scale * rng.standard_normal(value.shape).astype(value.dtype)
            out[path][name] = value
    return out


def run_haiku(
    build: Callable[..., Any],
    *inputs: np.ndarray,
    seed: int = 0,
) -> tuple[Any, dict[str, np.ndarray]]:
    """Initialise ``build`` (a function creating and calling haiku modules) on ``inputs``
    with haiku's initialisers, redraw its constant parameters, apply it, and return
    ``(outputs as numpy, flat params in AF2's npz naming)``.

    Init and apply are jitted: on the CPU two XLA compiles cost less than haiku's
    op-by-op dispatch. ``build`` must not need dropout randomness (the config is
    deterministic); a fixed key is passed anyway.
    """
    transformed = hk.transform(build)
    key = jax.random.PRNGKey(seed)
    params = randomize_constant_params(jax.jit(transformed.init)(key, *inputs), seed)
    outputs = jax.jit(transformed.apply)(params, key, *inputs)
    outputs = jax.tree_util.tree_map(np.asarray, outputs)
    return outputs, flatten_params(params)
