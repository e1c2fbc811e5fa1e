"""Primitives: AF2's initialisers, fp32 layer norm, attention backends, chunking, shared
dropout and the runtime config. Odd sizes throughout to catch shape bugs."""
from __future__ import annotations

import logging
import math

import pytest
import torch

from uni_fold.model import (
    Attention,
    GlobalAttention,
    LayerNorm,
    Linear,
    OuterProductMean,
    RuntimeConfig,
    SharedDropout,
    Transition,
    TriangleAttention,
    TriangleMultiplication,
    apply_runtime,
    attention_core,
    chunk_apply,
)
from uni_fold.model import runtime as runtime_mod
from uni_fold.model.primitives import TRUNCATED_NORMAL_STDDEV_FACTOR, softmax_fp32


def _randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            scale = p.shape[-1] ** -0.5 if p.ndim > 1 else 0.3
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return module


def _close(a: torch.Tensor, b: torch.Tensor, tol: float) -> None:
    scale = max(b.abs().max().item(), 1.0)
    err = (a - b).abs().max().item()
    assert err <= tol * scale, f"max error {err:.3g} > {tol} * {scale:.3g}"


# ----------------------------------------------------------------------------------------
# Linear initialisers


@pytest.mark.parametrize("init,scale", [("default", 1.0), ("relu", 2.0)])
def test_truncated_normal_inits(init, scale):
    torch.manual_seed(0)
    lin = Linear(301, 257, init=init)
    w = lin.weight.detach()
    target = math.sqrt(scale / 301)
    # AF2 divides the std by the truncated normal's std so the variance is scale / fan_in.
    assert abs(w.std().item() / target - 1) < 0.03
    bound = 2 * target / TRUNCATED_NORMAL_STDDEV_FACTOR
    assert w.abs().max().item() <= bound + 1e-7
    assert w.abs().max().item() > 0.95 * bound  # actually truncated there, not narrower
    assert torch.all(lin.bias == 0)


def test_glorot_normal_gating_final_inits():
    torch.manual_seed(0)
    g = Linear(129, 65, bias=False, init="glorot").weight.detach()
    limit = math.sqrt(6 / (129 + 65))
    assert g.abs().max().item() <= limit and g.abs().max().item() > 0.97 * limit
    n = Linear(401, 300, init="normal").weight.detach()
    assert abs(n.std().item() * math.sqrt(401) - 1) < 0.03
    gate = Linear(7, 5, init="gating")
    assert torch.all(gate.weight == 0) and torch.all(gate.bias == 1)
    final = Linear(7, 5, init="final")
    assert torch.all(final.weight == 0) and torch.all(final.bias == 0)


def test_attention_projections_use_af2_fans():
    """AF2's [c, H, d] query weights get Glorot fans c*H and c*d, not c and H*d."""
    torch.manual_seed(0)
    att = Attention(c_q=64, c_kv=64, c_hidden=16, num_heads=4)
    limit = math.sqrt(6 / (64 * 4 + 64 * 16))
    for lin in (att.linear_q, att.linear_k, att.linear_v):
        w = lin.weight.detach()
        assert w.shape == (64, 64)
        assert w.abs().max().item() <= limit and w.abs().max().item() > 0.95 * limit


def test_linear_rejects_bad_arguments():
    with pytest.raises(ValueError, match="init must be one of"):
        Linear(3, 4, init="he")
    with pytest.raises(ValueError, match="bias=True"):
        Linear(3, 4, bias=False, init="gating")


# ----------------------------------------------------------------------------------------
# LayerNorm and softmax precision


def test_layer_norm_matches_float64_and_keeps_dtype():
    torch.manual_seed(0)
    ln = _randomize(LayerNorm(37))
    x = torch.randn(3, 5, 37) * 4 + 2
    x64 = x.double()
    mu = x64.mean(-1, keepdim=True)
    var = ((x64 - mu) ** 2).mean(-1, keepdim=True)
    want = (x64 - mu) / torch.sqrt(var + 1e-5) * ln.weight.double() + ln.bias.double()
    _close(ln(x).double(), want, 1e-6)
    xb = x.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ln(xb)
    assert out.dtype == torch.bfloat16
    # fp32 statistics: the only error left is the final rounding to bf16.
    want_b = ln(xb.float()).bfloat16()
    assert torch.equal(out, want_b)


def test_softmax_fp32_under_autocast():
    x = torch.randn(4, 9).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = softmax_fp32(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.sum(-1), torch.ones(4))


# ----------------------------------------------------------------------------------------
# Attention core and backends


def _qkv_biases(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, 3, 4, 5, 8, generator=g)  # [B, N, H, Q, D]
    k = torch.randn(2, 3, 4, 6, 8, generator=g)
    v = torch.randn(2, 3, 4, 6, 7, generator=g)
    mask = (torch.rand(2, 3, 1, 1, 6, generator=g) > 0.3).float()
    mask[0, 0] = 0  # a fully masked row
    biases = [1e9 * (mask - 1), torch.randn(2, 1, 4, 5, 6, generator=g)]
    return q, k, v, biases


def test_attention_core_matches_explicit_formula():
    q, k, v, biases = _qkv_biases()
    logits = torch.einsum("...qd,...kd->...qk", q.double(), k.double()) / math.sqrt(8)
    logits = logits + biases[0].double() + biases[1].double()
    want = torch.einsum("...qk,...kd->...qd", torch.softmax(logits, -1), v.double())
    for backend in ("torch", "sdpa"):
        out = attention_core(q, k, v, biases, backend)
        _close(out[1:].double(), want[1:], 1e-5)
        _close(out[0, 1:].double(), want[0, 1:], 1e-5)
        # A fully masked row: in fp32 the -1e9 bias swamps the logits, so the weights are
        # uniform, as in AF2.
        _close(out[0, 0], v[0, 0].mean(-2, keepdim=True).expand_as(out[0, 0]), 1e-5)


def test_deepspeed_backend_falls_back_to_sdpa_with_a_log(caplog, monkeypatch):
    runtime_mod.deepspeed_evoformer_attention.cache_clear()
    monkeypatch.setitem(__import__("sys").modules, "deepspeed", None)  # not importable
    q, k, v, biases = _qkv_biases(1)
    with caplog.at_level(logging.WARNING, logger="uni_fold.model.runtime"):
        out = attention_core(q, k, v, biases, "deepspeed")
    runtime_mod.deepspeed_evoformer_attention.cache_clear()
    assert "falling back to 'sdpa'" in caplog.text
    torch.testing.assert_close(out, attention_core(q, k, v, biases, "sdpa"))


def test_attention_module_sdpa_equals_torch_and_chunked_equals_unchunked():
    torch.manual_seed(0)
    att = _randomize(Attention(c_q=19, c_kv=19, c_hidden=6, num_heads=3), seed=1)
    x = torch.randn(2, 7, 5, 19)  # [*, B, Q, c]
    mask = (torch.rand(2, 7, 1, 1, 5) > 0.3).float()
    biases = [1e9 * (mask - 1), torch.randn(2, 1, 3, 5, 5)]
    with torch.no_grad():
        ref = att(x, x, biases)
        for runtime in (RuntimeConfig(attention_backend="sdpa"), RuntimeConfig(chunk_size=2),
                        RuntimeConfig(chunk_size=3, attention_backend="sdpa")):
            apply_runtime(att, runtime)
            tol = 1e-6 if runtime.attention_backend == "torch" else 1e-5
            _close(att(x, x, biases), ref, tol)
    with pytest.raises(ValueError, match="rank"):
        att(x, x, [torch.zeros(5, 5)])


def test_global_attention_chunked_and_masked_mean():
    torch.manual_seed(0)
    att = _randomize(GlobalAttention(c_in=13, c_hidden=4, num_heads=3), seed=2)
    m = torch.randn(2, 5, 6, 13)  # [*, B=N_res, S=N_seq, c]
    mask = (torch.rand(2, 5, 6) > 0.3).float()
    mask[0, 1] = 0  # a column without any sequence
    with torch.no_grad():
        ref = att(m, mask)
        apply_runtime(att, RuntimeConfig(chunk_size=2))
        _close(att(m, mask), ref, 1e-6)
        # Masked-out sequences do not influence the output of the others.
        m2 = m.clone()
        m2[mask == 0] += 100.0
        out2 = att(m2, mask)
    keep = mask.bool()
    _close(out2[keep], ref[keep], 1e-5)
    with pytest.raises(ValueError, match="mask shape"):
        att(m, mask[..., :-1])


@pytest.mark.parametrize("chunk", [1, 2, 4])
def test_pair_and_msa_modules_chunked_equal_unchunked(chunk):
    torch.manual_seed(0)
    z = torch.randn(7, 7, 11)
    pmask = (torch.rand(7, 7) > 0.2).float()
    m = torch.randn(5, 7, 9)
    mmask = (torch.rand(5, 7) > 0.2).float()
    cases = [
        (TriangleMultiplication(11, 6, outgoing=True), (z, pmask)),
        (TriangleMultiplication(11, 6, outgoing=False), (z, pmask)),
        (TriangleAttention(11, 4, 3, starting=False), (z, pmask)),
        (OuterProductMean(9, 11, 5), (m, mmask)),
        (Transition(9, 2), (m, mmask)),
    ]
    with torch.no_grad():
        for i, (module, args) in enumerate(cases):
            _randomize(module, seed=i)
            ref = module(*args)
            apply_runtime(module, RuntimeConfig(chunk_size=chunk))
            _close(module(*args), ref, 1e-6)


def test_chunk_apply_broadcasts_and_checks_sizes():
    a = torch.randn(5, 3)
    b = torch.randn(1, 3)
    out = chunk_apply(lambda x, y: x + y, [a, b], [0, 0], 2, out_dim=0)
    torch.testing.assert_close(out, a + b)
    with pytest.raises(ValueError, match="disagree"):
        chunk_apply(lambda x, y: x + y, [a, torch.randn(4, 3)], [0, 0], 2, out_dim=0)


# ----------------------------------------------------------------------------------------
# Dropout and runtime config


@pytest.mark.parametrize("orientation,axis", [("per_row", -3), ("per_column", -2)])
def test_shared_dropout(orientation, axis):
    torch.manual_seed(0)
    drop = SharedDropout(0.25, orientation)
    x = torch.ones(2, 9, 11, 6)
    out = drop(x)
    assert set(out.unique().tolist()) <= {0.0, torch.tensor(1 / 0.75).item()}
    assert torch.equal(out, out.narrow(axis, 0, 1).expand_as(out))  # shared along axis
    other = -2 if axis == -3 else -3
    assert not torch.equal(out, out.narrow(other, 0, 1).expand_as(out))  # not along the other
    assert abs((out == 0).float().mean().item() - 0.25) < 0.1
    drop.eval()
    assert torch.equal(drop(x), x)
    with pytest.raises(ValueError, match="orientation"):
        SharedDropout(0.1, "rows")


def test_runtime_config_validation_and_apply():
    with pytest.raises(ValueError, match="chunk_size"):
        RuntimeConfig(chunk_size=0)
    with pytest.raises(ValueError, match="attention_backend"):
        RuntimeConfig(attention_backend="flash")
    with pytest.raises(ValueError, match="precision"):
        RuntimeConfig(precision="fp16")
    model = torch.nn.Sequential(TriangleMultiplication(8, 4), TriangleAttention(8, 4, 2))
    runtime = RuntimeConfig(chunk_size=3, attention_backend="sdpa")
    apply_runtime(model, runtime)
    aware = [m for m in model.modules() if isinstance(m, runtime_mod.RuntimeAware)]
    assert len(aware) == 2 and all(m.runtime is runtime for m in aware)
    assert TriangleMultiplication(8, 4).runtime == RuntimeConfig()  # others keep the default
    with pytest.raises(TypeError, match="RuntimeConfig"):
        apply_runtime(model, {"chunk_size": 3})
