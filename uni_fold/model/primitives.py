"""Building blocks of the network: ``Linear`` with AF2's initialisers, an fp32-statistics
``LayerNorm``, shared dropout, chunked application, and gated multi-head attention
(standard and global) with interchangeable attention backends.

Parameter layout is torch's: a ``Linear`` weight is ``[out, in]``. AF2 keeps per-head
weights as ``[c_in, num_heads, c_hidden]``; here they are flattened head-major to
``[num_heads * c_hidden, c_in]`` (``uni_fold.model.weights`` does the conversion).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from uni_fold.model.runtime import (
    RuntimeAware,
    deepspeed_evoformer_attention,
    fp32_region,
    log_once,
)

logger = logging.getLogger(__name__)

# Standard deviation of a unit normal truncated to [-2, 2]; AF2 divides by it so that the
# truncated distribution keeps the intended variance (scipy.stats.truncnorm.std(-2, 2)).
TRUNCATED_NORMAL_STDDEV_FACTOR = 0.87962566103423978

# Additive bias for masked attention keys, as in AF2 (1e9 * (mask - 1)).
MASK_INF = 1e9

LinearInit = Literal["default", "relu", "glorot", "gating", "final", "normal"]
LINEAR_INITS: tuple[str, ...] = ("default", "relu", "glorot", "gating", "final", "normal")


# ----------------------------------------------------------------------------------------
# Initialisers


def lecun_truncated_normal_(weight: torch.Tensor, fan_in: int, scale: float = 1.0) -> None:
    """Truncated normal (at +-2 sigma) with variance ``scale / fan_in`` after truncation."""
    std = math.sqrt(scale / fan_in) / TRUNCATED_NORMAL_STDDEV_FACTOR
    with torch.no_grad():
        nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)


def glorot_uniform_(weight: torch.Tensor, fan_in: int, fan_out: int) -> None:
    """Uniform on [-l, l] with ``l = sqrt(6 / (fan_in + fan_out))`` (Glorot / Xavier).

    The fans are explicit because AF2 computes them from its multi-dimensional weight
    shapes (e.g. ``[c_in, num_heads, c_hidden]`` gives ``fan_in = c_in * num_heads``,
    ``fan_out = c_in * c_hidden``), which differ from the flattened torch shape.
    """
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        nn.init.uniform_(weight, -limit, limit)


class Linear(nn.Linear):
    """``y = x W^T + b`` with AF2's named initialisers.

    ``init`` is one of:

    * ``"default"``: truncated normal, variance ``1 / in_dim`` (AF2 ``'linear'``);
    * ``"relu"``: truncated normal, variance ``2 / in_dim`` (He; before a ReLU);
    * ``"glorot"``: Glorot uniform (attention query/key/value projections);
    * ``"gating"``: weight 0, bias 1, so ``sigmoid`` gates start at ~0.73 everywhere;
    * ``"final"``: weight 0, bias 0, so a residual update starts at exactly zero
      (AF2's ``zero_init`` for the last layer of every residual branch);
    * ``"normal"``: plain normal with std ``1 / sqrt(in_dim)`` (pair-bias projections).

    Biases start at 0 unless ``init="gating"``.

    Shapes: ``x [*, in_dim] -> [*, out_dim]``.
    """

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, init: LinearInit = "default"):
        if init not in LINEAR_INITS:
            raise ValueError(f"Linear init must be one of {LINEAR_INITS}, got {init!r}")
        if init == "gating" and not bias:
            raise ValueError("Linear init='gating' needs bias=True (the gate bias starts at 1)")
        if in_dim < 1 or out_dim < 1:
            raise ValueError(
                f"Linear needs positive widths, got in_dim={in_dim}, out_dim={out_dim}"
            )
        self.init = init
        super().__init__(in_dim, out_dim, bias=bias)

    def reset_parameters(self) -> None:  # called by nn.Linear.__init__
        init = getattr(self, "init", "default")
        if init == "default":
            lecun_truncated_normal_(self.weight, self.in_features, scale=1.0)
        elif init == "relu":
            lecun_truncated_normal_(self.weight, self.in_features, scale=2.0)
        elif init == "glorot":
            glorot_uniform_(self.weight, self.in_features, self.out_features)
        elif init == "normal":
            with torch.no_grad():
                nn.init.normal_(self.weight, std=1.0 / math.sqrt(self.in_features))
        else:  # "gating" / "final"
            with torch.no_grad():
                self.weight.zero_()
        if self.bias is not None:
            with torch.no_grad():
                self.bias.fill_(1.0 if init == "gating" else 0.0)


class LayerNorm(nn.Module):
    """Layer normalisation over the last axis, statistics always in fp32.

    The input is upcast to fp32 (autocast switched off), normalised, scaled and shifted
    with fp32 parameters, and cast back to the input dtype. ``eps=1e-5`` as in AF2.

    Shapes: ``x [*, c] -> [*, c]``.
    """

    def __init__(self, c: int, eps: float = 1e-5):
        super().__init__()
        self.c = c
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.c:
            raise ValueError(
                f"LayerNorm expects last axis {self.c}, got input shape {tuple(x.shape)}"
            )
        with fp32_region(x.device.type):
            out = F.layer_norm(
                x.float(), (self.c,), self.weight.float(), self.bias.float(), self.eps
            )
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.c}, eps={self.eps}"


def softmax_fp32(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax computed in fp32 (autocast off), returned in fp32."""
    with fp32_region(x.device.type):
        return torch.softmax(x.float(), dim=dim)


def mask_bias(mask: torch.Tensor, inf: float = MASK_INF) -> torch.Tensor:
    """Additive attention bias ``inf * (mask - 1)``: 0 where ``mask`` is 1, ``-inf`` where 0."""
    return inf * (mask.float() - 1.0)


# ----------------------------------------------------------------------------------------
# Dropout shared along one axis


class SharedDropout(nn.Module):
    """Dropout whose mask is shared along rows or columns (Suppl. Alg. 6 ``Dropout*wise``).

    ``"per_row"`` draws one mask per column position and shares it over all rows (axis -3
    of ``[*, N_rows, N_cols, c]`` is broadcast; AF2's ``DropoutRowwise``); ``"per_column"``
    shares it over all columns (axis -2; ``DropoutColumnwise``). Active only in training
    mode; kept entries are scaled by ``1 / (1 - rate)``.

    Shapes: ``x [*, N_rows, N_cols, c] -> same``.
    """

    def __init__(self, rate: float, orientation: Literal["per_row", "per_column"]):
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
        if orientation not in ("per_row", "per_column"):
            raise ValueError(f"orientation must be 'per_row' or 'per_column', got {orientation!r}")
        self.rate = rate
        self.orientation = orientation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        shape = list(x.shape)
        shape[-3 if self.orientation == "per_row" else -2] = 1
        keep = 1.0 - self.rate
        mask = torch.bernoulli(torch.full(shape, keep, device=x.device, dtype=x.dtype))
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate}, orientation={self.orientation}"


# ----------------------------------------------------------------------------------------
# Chunking


def chunk_apply(
    fn: Callable[..., torch.Tensor],
    args: Sequence[torch.Tensor | None],
    dims: Sequence[int | None],
    chunk_size: int | None,
    out_dim: int,
) -> torch.Tensor:
    """``fn(*args)`` computed in slices of ``chunk_size`` along one axis, then concatenated.

    ``dims[i]`` is the axis of ``args[i]`` to slice (``None``: pass the argument whole; an
    argument of size 1 on its axis is broadcast and passed whole too). All sliced
    arguments must have the same size ``n`` on their axis. The outputs are concatenated
    along ``out_dim``. With ``chunk_size`` ``None`` or ``>= n`` this is just ``fn(*args)``.
    """
    if len(args) != len(dims):
        raise ValueError(f"chunk_apply: {len(args)} args but {len(dims)} dims")
    sizes = {
        a.shape[d]
        for a, d in zip(args, dims, strict=True)
        if a is not None and d is not None and a.shape[d] != 1
    }
    if len(sizes) > 1:
        raise ValueError(f"chunk_apply: sliced arguments disagree on the chunked size: {sizes}")
    n = sizes.pop() if sizes else 1
    if chunk_size is None or chunk_size >= n:
        return fn(*args)
    outputs = []
    for start in range(0, n, chunk_size):
        piece = []
        for a, d in zip(args, dims, strict=True):
            if a is None or d is None or a.shape[d] == 1:
                piece.append(a)
            else:
                piece.append(a.narrow(d, start, min(chunk_size, n - start)))
        outputs.append(fn(*piece))
    return torch.cat(outputs, dim=out_dim)


# ----------------------------------------------------------------------------------------
# Attention core


def _sum_biases(biases: Sequence[torch.Tensor]) -> torch.Tensor | None:
    total = None
    for b in biases:
        total = b.float() if total is None else total + b.float()
    return total


def _attention_torch(q, k, v, biases):  # noqa: ANN001, ANN202
    scale = q.shape[-1] ** -0.5
    logits = torch.matmul(q * scale, k.transpose(-1, -2))
    logits = logits.float()
    for b in biases:
        logits = logits + b.float()
    weights = softmax_fp32(logits, dim=-1)
    return torch.matmul(weights.to(v.dtype), v)


def _attention_sdpa(q, k, v, biases):  # noqa: ANN001, ANN202
    *batch, h, n_q, d = q.shape
    n_k = k.shape[-2]
    bias = _sum_biases(biases)
    q4 = q.reshape(-1, h, n_q, d)
    k4 = k.reshape(-1, h, n_k, d)
    v4 = v.reshape(-1, h, n_k, v.shape[-1])
    mask = None
    if bias is not None:
        mask = bias.to(q4.dtype).expand(*batch, h, n_q, n_k).reshape(-1, h, n_q, n_k)
    out = F.scaled_dot_product_attention(q4, k4, v4, attn_mask=mask, scale=d**-0.5)
    return out.reshape(*batch, h, n_q, v.shape[-1])


def _deepspeed_usable(q: torch.Tensor, biases: Sequence[torch.Tensor]) -> bool:
    """DS4Sci wants CUDA half inputs ``[B, N, H, L, D]`` and biases ``[B,N,1,1,L]``,
    ``[B,1,H,L,L]``."""
    if not (q.is_cuda and q.dtype in (torch.bfloat16, torch.float16) and q.ndim == 5):
        return False
    b, n, h, length, _ = q.shape
    if len(biases) > 2:
        return False
    wanted = [(b, n, 1, 1, length), (b, 1, h, length, length)]
    return all(tuple(bias.shape) == wanted[i] for i, bias in enumerate(biases))


def attention_core(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    biases: Sequence[torch.Tensor] = (),
    backend: str = "torch",
) -> torch.Tensor:
    """Scaled dot-product attention ``softmax(q k^T / sqrt(d) + sum(biases)) v``.

    Args:
      q: ``[*, H, Q, D]`` queries (not yet scaled).
      k: ``[*, H, K, D]`` keys.
      v: ``[*, H, K, D_v]`` values.
      biases: additive logit biases, each broadcastable to ``[*, H, Q, K]``.
      backend: ``"torch"`` (fp32 softmax), ``"sdpa"`` or ``"deepspeed"`` (see
        :class:`~uni_fold.model.runtime.RuntimeConfig`).

    Returns:
      ``[*, H, Q, D_v]`` in the dtype of ``v``.
    """
    if backend == "torch":
        return _attention_torch(q, k, v, biases)
    if backend == "deepspeed":
        kernel = deepspeed_evoformer_attention()
        if kernel is not None and q.ndim == 4:  # unbatched: give the kernel its B axis
            out = attention_core(q[None], k[None], v[None], [b[None] for b in biases], backend)
            return out[0]
        if kernel is not None and _deepspeed_usable(q, biases):
            # The kernel's layout is [B, N, L, H, D] and it scales by 1/sqrt(D) itself.
            q_, k_, v_ = (x.transpose(-2, -3).contiguous() for x in (q, k, v))
            out = kernel(q_, k_, v_, [b.to(q.dtype).contiguous() for b in biases])
            return out.transpose(-2, -3)
        if kernel is not None:
            log_once(
                "DS4Sci EvoformerAttention needs CUDA bf16/fp16 [B, N, H, L, D] inputs with "
                "mask/pair biases; using 'sdpa' for other calls"
            )
        return _attention_sdpa(q, k, v, biases)
    if backend == "sdpa":
        return _attention_sdpa(q, k, v, biases)
    raise ValueError(f"unknown attention backend {backend!r}; use 'torch', 'sdpa' or 'deepspeed'")


class Attention(nn.Module, RuntimeAware):
    """Gated multi-head attention, AF2's ``Attention`` (Suppl. Alg. 7 lines 2-7, Alg. 8,
    13, 14).

    ``o = W_o [sigmoid(W_g x_q) * softmax(q k^T / sqrt(c_hidden) + biases) v] + b_o``

    Shapes: ``q_x [*, B, Q, c_q]``, ``kv_x [*, B, K, c_kv]``, each bias broadcastable to
    ``[*, B, H, Q, K]`` (same rank) -> ``[*, B, Q, c_out]``. With ``runtime.chunk_size``
    the computation is split along ``B``.
    """

    def __init__(
        self,
        c_q: int,
        c_kv: int,
        c_hidden: int,
        num_heads: int,
        c_out: int | None = None,
        gating: bool = True,
    ):
        super().__init__()
        self.c_hidden = c_hidden
        self.num_heads = num_heads
        self.gating = gating
        hd = num_heads * c_hidden
        c_out = c_q if c_out is None else c_out
        self.linear_q = Linear(c_q, hd, bias=False, init="glorot")
        self.linear_k = Linear(c_kv, hd, bias=False, init="glorot")
        self.linear_v = Linear(c_kv, hd, bias=False, init="glorot")
        # AF2's weights are [c, H, d]; its Glorot fans are computed from that shape.
        for lin, c in ((self.linear_q, c_q), (self.linear_k, c_kv), (self.linear_v, c_kv)):
            glorot_uniform_(lin.weight, fan_in=c * num_heads, fan_out=c * c_hidden)
        self.linear_g = Linear(c_q, hd, init="gating") if gating else None
        self.linear_o = Linear(hd, c_out, init="final")

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[*, L, H * d] -> [*, H, L, d]``."""
        return x.unflatten(-1, (self.num_heads, -1)).transpose(-2, -3)

    def _forward(
        self, q_x: torch.Tensor, kv_x: torch.Tensor, *biases: torch.Tensor
    ) -> torch.Tensor:
        q_bhqd = self._heads(self.linear_q(q_x))
        k_bhkd = self._heads(self.linear_k(kv_x))
        v_bhkd = self._heads(self.linear_v(kv_x))
        o_bhqd = attention_core(q_bhqd, k_bhkd, v_bhkd, biases, self.runtime.attention_backend)
        o_bqhd = o_bhqd.transpose(-2, -3)
        if self.linear_g is not None:
            g_bqhd = torch.sigmoid(self.linear_g(q_x)).unflatten(-1, (self.num_heads, -1))
            o_bqhd = o_bqhd * g_bqhd
        return self.linear_o(o_bqhd.flatten(-2))

    def forward(
        self,
        q_x: torch.Tensor,
        kv_x: torch.Tensor,
        biases: Sequence[torch.Tensor] = (),
    ) -> torch.Tensor:
        for b in biases:
            if b.ndim != q_x.ndim + 1:
                raise ValueError(
                    f"attention bias of shape {tuple(b.shape)} must have rank {q_x.ndim + 1} "
                    f"([*, B, H, Q, K] for queries {tuple(q_x.shape)})"
                )
        args = [q_x, kv_x, *biases]
        dims = [-3, -3] + [-4] * len(biases)
        return chunk_apply(self._forward, args, dims, self.runtime.chunk_size, out_dim=-3)


class GlobalAttention(nn.Module, RuntimeAware):
    """Global gated attention, AF2's ``GlobalAttention`` (Suppl. Alg. 19 lines 2-7).

    One query per head from the masked mean of the inputs; keys and values have a single
    head shared by all query heads; the output is gated per position.

    Shapes: ``m [*, B, S, c_in]``, ``mask [*, B, S]`` -> ``[*, B, S, c_in]``. With
    ``runtime.chunk_size`` the computation is split along ``B``.
    """

    def __init__(
        self,
        c_in: int,
        c_hidden: int,
        num_heads: int,
        gating: bool = True,
        eps: float = 1e-10,
        inf: float = MASK_INF,
    ):
        super().__init__()
        self.c_hidden = c_hidden
        self.num_heads = num_heads
        self.gating = gating
        self.eps = eps
        self.inf = inf
        hd = num_heads * c_hidden
        self.linear_q = Linear(c_in, hd, bias=False, init="glorot")
        glorot_uniform_(self.linear_q.weight, fan_in=c_in * num_heads, fan_out=c_in * c_hidden)
        self.linear_k = Linear(c_in, c_hidden, bias=False, init="glorot")
        self.linear_v = Linear(c_in, c_hidden, bias=False, init="glorot")
        self.linear_g = Linear(c_in, hd, init="gating") if gating else None
        self.linear_o = Linear(hd, c_in, init="final")

    def _forward(self, m: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.to(m.dtype)
        # Masked mean over S: [*, B, c]
        q_avg = (m * mask[..., None]).sum(-2) / (mask.sum(-1)[..., None] + self.eps)
        q_bhd = self.linear_q(q_avg).unflatten(-1, (self.num_heads, -1)) * self.c_hidden**-0.5
        k_bsd = self.linear_k(m)
        v_bsd = self.linear_v(m)
        logits_bhs = torch.matmul(q_bhd, k_bsd.transpose(-1, -2)).float()
        logits_bhs = logits_bhs + mask_bias(mask, self.inf)[..., None, :]
        weights_bhs = softmax_fp32(logits_bhs, dim=-1).to(v_bsd.dtype)
        o_bhd = torch.matmul(weights_bhs, v_bsd)
        if self.linear_g is None:
            out_bc = self.linear_o(o_bhd.flatten(-2))
            return out_bc[..., None, :].expand(*m.shape[:-1], out_bc.shape[-1])
        g_bshd = torch.sigmoid(self.linear_g(m)).unflatten(-1, (self.num_heads, -1))
        o_bshd = o_bhd[..., None, :, :] * g_bshd
        return self.linear_o(o_bshd.flatten(-2))

    def forward(self, m: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if mask.shape != m.shape[:-1]:
            raise ValueError(
                f"GlobalAttention mask shape {tuple(mask.shape)} must equal the input shape "
                f"without channels {tuple(m.shape[:-1])}"
            )
        return chunk_apply(self._forward, [m, mask], [-3, -2], self.runtime.chunk_size, out_dim=-3)


def num_parameters(module: nn.Module) -> int:
    """Total number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())
