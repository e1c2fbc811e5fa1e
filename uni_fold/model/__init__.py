"""The AlphaFold 2 network in PyTorch.

Primitives (``Linear`` with AF2's initialisers, fp32-statistics ``LayerNorm``, gated
attention), the Evoformer, the runtime knobs (:mod:`uni_fold.model.runtime`) and the AF2
parameter import tables (:mod:`uni_fold.model.weights`), and the whole network:
:class:`AlphaFold` (``AlphaFold.from_alphafold_params(path, preset)``,
``AlphaFold.from_checkpoint(dir)``, :func:`save_checkpoint`).
"""
from uni_fold.model.alphafold import AlphaFold, load_alphafold_params, save_checkpoint
from uni_fold.model.evoformer import EvoformerBlock, EvoformerStack
from uni_fold.model.msa import (
    MSAColumnAttention,
    MSAColumnGlobalAttention,
    MSARowAttentionWithPairBias,
)
from uni_fold.model.primitives import (
    Attention,
    GlobalAttention,
    LayerNorm,
    Linear,
    SharedDropout,
    attention_core,
    chunk_apply,
)
from uni_fold.model.runtime import RuntimeConfig, apply_runtime
from uni_fold.model.transition import OuterProductMean, Transition
from uni_fold.model.triangle import TriangleAttention, TriangleMultiplication
from uni_fold.model.weights import load_af2_params

__all__ = [
    "AlphaFold",
    "Attention",
    "EvoformerBlock",
    "EvoformerStack",
    "GlobalAttention",
    "LayerNorm",
    "Linear",
    "MSAColumnAttention",
    "MSAColumnGlobalAttention",
    "MSARowAttentionWithPairBias",
    "OuterProductMean",
    "RuntimeConfig",
    "SharedDropout",
    "Transition",
    "TriangleAttention",
    "TriangleMultiplication",
    "apply_runtime",
    "attention_core",
    "chunk_apply",
    "load_af2_params",
    "load_alphafold_params",
    "save_checkpoint",
]
