"""Evoformer modules against the AlphaFold 2 reference, run live.

Each test builds the reference haiku module with AF2's real widths (c_m=256, c_z=128,
c_e=64), odd sizes (N_seq=5, N_extra=6, N_res=7) and masks with zeros (a padded last
residue and random MSA gaps), initialises it with haiku and random constants
(``reference_utils``), loads the same parameters into our module through our
``uni_fold.model.weights`` tables, and requires max |ours - ref| <= 1e-5 * max(|ref|, 1).
The rest checks the strict loader, chunking and backends on the loaded 2-block stack,
identity at init, AF2's shared dropout and bf16 autocast of a block.
"""
from __future__ import annotations

import functools

import haiku as hk
import numpy as np
import pytest
import torch
from alphafold.model import layer_stack, modules
from reference_utils import reference_config, run_haiku
from torch.utils._python_dispatch import TorchDispatchMode

from uni_fold.model import (
    EvoformerBlock,
    EvoformerStack,
    MSAColumnAttention,
    MSAColumnGlobalAttention,
    MSARowAttentionWithPairBias,
    OuterProductMean,
    RuntimeConfig,
    SharedDropout,
    Transition,
    TriangleAttention,
    TriangleMultiplication,
    apply_runtime,
)
from uni_fold.model import weights as W

N_SEQ, N_EXTRA, N_RES = 5, 6, 7
C_M, C_Z, C_E = 256, 128, 64
TOL = 1e-5

CFG = reference_config("model_1_ptm")
EVO = CFG.model.embeddings_and_evoformer.evoformer
GC = CFG.model.global_config
GC.subbatch_size = None  # the reference unchunked (same maths, fewer XLA loops to compile)
EVOFORMER_PATH = "alphafold/alphafold_iteration/evoformer/evoformer_iteration"


def _inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1234)
    seq_mask = np.ones(N_RES, np.float32)
    seq_mask[-1] = 0.0  # a padded residue
    msa_mask = (rng.random((N_SEQ, N_RES)) > 0.25).astype(np.float32) * seq_mask
    extra_mask = (rng.random((N_EXTRA, N_RES)) > 0.25).astype(np.float32) * seq_mask
    return {
        "msa": rng.standard_normal((N_SEQ, N_RES, C_M)).astype(np.float32),
        "extra": rng.standard_normal((N_EXTRA, N_RES, C_E)).astype(np.float32),
        "pair": rng.standard_normal((N_RES, N_RES, C_Z)).astype(np.float32),
        "msa_mask": msa_mask,
        "extra_mask": extra_mask,
        "pair_mask": seq_mask[:, None] * seq_mask[None, :],
    }


X = _inputs()
T = {k: torch.from_numpy(v) for k, v in X.items()}


def assert_parity(ours: torch.Tensor, ref: np.ndarray, tol: float = TOL) -> float:
    ours_np = ours.detach().numpy()
    assert ours_np.shape == ref.shape, (ours_np.shape, ref.shape)
    scale = max(float(np.abs(ref).max()), 1.0)
    err = float(np.abs(ours_np - ref).max())
    assert err <= tol * scale, f"max |ours - ref| = {err:.3g} > {tol} * {scale:.3g}"
    return err


def _loaded(module: torch.nn.Module, params: dict, table: W.Table) -> torch.nn.Module:
    W.load_af2_params(module, params, table)
    return module.eval()


# ----------------------------------------------------------------------------------------
# Reference runs (cached: some are reused by several tests)


@functools.cache
def ref_row_attention():
    def build(m, mask, z):
        return modules.MSARowAttentionWithPairBias(EVO.msa_row_attention_with_pair_bias, GC)(
            m, mask, z
        )

    return run_haiku(build, X["msa"], X["msa_mask"], X["pair"], seed=1)


@functools.cache
def ref_triangle_multiplication(outgoing: bool, fused: bool = False):
    name = "triangle_multiplication_" + ("outgoing" if outgoing else "incoming")
    config = EVO[name].copy_and_resolve_references()
    config.fuse_projection_weights = fused

    def build(z, mask):
        return modules.TriangleMultiplication(config, GC, name=name)(z, mask)

    return run_haiku(build, X["pair"], X["pair_mask"], seed=6 if outgoing else 7)


@functools.cache
def ref_two_block_stack():
    """Two stacked EvoformerIterations under AF2's real parameter path."""

    def build(m, z, msa_mask, pair_mask):
        with hk.name_scope("alphafold"), hk.name_scope("alphafold_iteration"):
            with hk.name_scope("evoformer"):
                block = modules.EvoformerIteration(EVO, GC, is_extra_msa=False)

                def one_block(act):
                    masks = {"msa": msa_mask, "pair": pair_mask}
                    return block(act, masks, is_training=False)

                return layer_stack.layer_stack(2)(one_block)({"msa": m, "pair": z})

    return run_haiku(build, X["msa"], X["pair"], X["msa_mask"], X["pair_mask"], seed=12)


def _stack_from_ref() -> tuple[EvoformerStack, dict]:
    out, params = ref_two_block_stack()
    stack = EvoformerStack(2, C_M, C_Z)
    table = W.evoformer_stack_rows("", EVOFORMER_PATH, num_blocks=2)
    return _loaded(stack, params, table), out


# ----------------------------------------------------------------------------------------
# Module parity


def test_msa_row_attention_with_pair_bias():
    ref, params = ref_row_attention()
    ours = _loaded(
        MSARowAttentionWithPairBias(C_M, C_Z, c_hidden=32, num_heads=8),
        params,
        W.msa_row_attention_rows("", "msa_row_attention_with_pair_bias"),
    )
    assert_parity(ours(T["msa"], T["pair"], T["msa_mask"]), ref)


def test_msa_column_attention():
    def build(m, mask):
        return modules.MSAColumnAttention(EVO.msa_column_attention, GC)(m, mask)

    ref, params = run_haiku(build, X["msa"], X["msa_mask"], seed=2)
    ours = _loaded(
        MSAColumnAttention(C_M, c_hidden=32, num_heads=8),
        params,
        W.msa_column_attention_rows("", "msa_column_attention"),
    )
    assert_parity(ours(T["msa"], T["msa_mask"]), ref)


def test_msa_column_global_attention():
    def build(m, mask):
        return modules.MSAColumnGlobalAttention(EVO.msa_column_attention, GC)(m, mask)

    ref, params = run_haiku(build, X["extra"], X["extra_mask"], seed=3)
    ours = _loaded(
        MSAColumnGlobalAttention(C_E, c_hidden=8, num_heads=8),
        params,
        W.msa_column_global_attention_rows("", "msa_column_global_attention"),
    )
    assert_parity(ours(T["extra"], T["extra_mask"]), ref)


def test_msa_transition():
    def build(m, mask):
        return modules.Transition(EVO.msa_transition, GC, name="msa_transition")(m, mask)

    ref, params = run_haiku(build, X["msa"], X["msa_mask"], seed=4)
    ours = _loaded(Transition(C_M, n=4), params, W.transition_rows("", "msa_transition"))
    assert_parity(ours(T["msa"], T["msa_mask"]), ref)


def test_outer_product_mean():
    def build(m, mask):
        return modules.OuterProductMean(EVO.outer_product_mean, GC, num_output_channel=C_Z)(m, mask)

    ref, params = run_haiku(build, X["msa"], X["msa_mask"], seed=5)
    ours = _loaded(
        OuterProductMean(C_M, C_Z, c_hidden=32),
        params,
        W.outer_product_mean_rows("", "outer_product_mean"),
    )
    assert_parity(ours(T["msa"], T["msa_mask"]), ref)


@pytest.mark.parametrize("outgoing", [True, False], ids=["outgoing", "incoming"])
def test_triangle_multiplication(outgoing):
    ref, params = ref_triangle_multiplication(outgoing)
    name = "triangle_multiplication_" + ("outgoing" if outgoing else "incoming")
    ours = _loaded(
        TriangleMultiplication(C_Z, c_hidden=128, outgoing=outgoing),
        params,
        W.triangle_multiplication_rows("", name),
    )
    assert_parity(ours(T["pair"], T["pair_mask"]), ref)


def test_triangle_multiplication_fused_multimer_layout():
    """AF-Multimer v3's fused projection/gate weights load into the same module."""
    ref, params = ref_triangle_multiplication(True, fused=True)
    assert "triangle_multiplication_outgoing/projection//weights" in params
    ours = _loaded(
        TriangleMultiplication(C_Z, c_hidden=128, outgoing=True),
        params,
        W.triangle_multiplication_rows("", "triangle_multiplication_outgoing", fused=True),
    )
    assert_parity(ours(T["pair"], T["pair_mask"]), ref)


@pytest.mark.parametrize("starting", [True, False], ids=["starting_node", "ending_node"])
def test_triangle_attention(starting):
    name = "triangle_attention_" + ("starting_node" if starting else "ending_node")

    def build(z, mask):
        return modules.TriangleAttention(EVO[name], GC, name=name)(z, mask)

    ref, params = run_haiku(build, X["pair"], X["pair_mask"], seed=8 if starting else 9)
    ours = _loaded(
        TriangleAttention(C_Z, c_hidden=32, num_heads=4, starting=starting),
        params,
        W.triangle_attention_rows("", name),
    )
    assert_parity(ours(T["pair"], T["pair_mask"]), ref)


@pytest.mark.parametrize("is_extra_msa", [False, True], ids=["main", "extra_msa"])
def test_evoformer_iteration(is_extra_msa):
    msa, mask = ("extra", "extra_mask") if is_extra_msa else ("msa", "msa_mask")
    name = "extra_msa_stack" if is_extra_msa else "evoformer_iteration"

    def build(m, z, msa_mask, pair_mask):
        block = modules.EvoformerIteration(EVO, GC, is_extra_msa=is_extra_msa, name=name)
        return block({"msa": m, "pair": z}, {"msa": msa_mask, "pair": pair_mask}, is_training=False)

    ref, params = run_haiku(build, X[msa], X["pair"], X[mask], X["pair_mask"], seed=10)
    c_m = C_E if is_extra_msa else C_M
    block = EvoformerBlock(c_m, C_Z, c_hidden_msa_att=c_m // 8, is_extra_msa=is_extra_msa)
    _loaded(block, params, W.evoformer_block_rows("", name, is_extra_msa=is_extra_msa))
    m, z = block(T[msa], T["pair"], T[mask], T["pair_mask"])
    assert_parity(m, ref["msa"])
    assert_parity(z, ref["pair"])


def test_two_block_stack_real_param_paths():
    stack, ref = _stack_from_ref()
    m, z = stack(T["msa"], T["pair"], T["msa_mask"], T["pair_mask"])
    assert_parity(m, ref["msa"])
    assert_parity(z, ref["pair"])


# ----------------------------------------------------------------------------------------
# Runtime knobs on the loaded stack


def test_stack_chunked_equals_unchunked_and_sdpa_equals_torch():
    stack, _ = _stack_from_ref()
    args = (T["msa"], T["pair"], T["msa_mask"], T["pair_mask"])
    with torch.no_grad():
        m0, z0 = stack(*args)
        for chunk in (1, 3):
            apply_runtime(stack, RuntimeConfig(chunk_size=chunk))
            m1, z1 = stack(*args)
            for a, b in ((m1, m0), (z1, z0)):
                scale = max(b.abs().max().item(), 1.0)
                assert (a - b).abs().max().item() <= 1e-6 * scale, f"chunk_size={chunk}"
        apply_runtime(stack, RuntimeConfig(attention_backend="sdpa"))
        m2, z2 = stack(*args)
    assert_parity(m2, m0.numpy())
    assert_parity(z2, z0.numpy())


# ----------------------------------------------------------------------------------------
# Strict loader


def _tri_out():
    _, params = ref_triangle_multiplication(True)
    table = W.triangle_multiplication_rows("", "triangle_multiplication_outgoing")
    return TriangleMultiplication(C_Z, 128, outgoing=True), dict(params), table


def test_loader_rejects_missing_key_and_copies_nothing():
    module, params, table = _tri_out()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    del params["triangle_multiplication_outgoing/left_gate//bias"]
    with pytest.raises(ValueError, match="missing.*multiplication_outgoing/left_gate//bias"):
        W.load_af2_params(module, params, table)
    for k, v in module.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed by a failed load"


def test_loader_rejects_unexpected_key():
    module, params, table = _tri_out()
    params["triangle_multiplication_outgoing/extra_layer//weights"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match="unexpected.*multiplication_outgoing/extra_layer"):
        W.load_af2_params(module, params, table)


def test_loader_rejects_wrong_shape():
    module, params, table = _tri_out()
    key = "triangle_multiplication_outgoing/output_projection//weights"
    params[key] = np.zeros((128, 64), np.float32)
    with pytest.raises(ValueError, match=r"shape mismatch.*output_projection\.weight"):
        W.load_af2_params(module, params, table)


def test_loader_rejects_uncovered_model_parameter():
    module, params, table = _tri_out()
    del table["gating_linear.bias"]
    with pytest.raises(ValueError, match=r"not in the table: gating_linear\.bias"):
        W.load_af2_params(module, params, table)


def test_read_af2_npz_round_trip_and_corrupt_file(tmp_path):
    module, params, table = _tri_out()
    path = tmp_path / "params_test.npz"
    np.savez(path, **params)
    W.load_af2_params(module, W.read_af2_npz(path), table)
    torch.testing.assert_close(
        module.gating_linear.bias.detach(),
        torch.from_numpy(params["triangle_multiplication_outgoing/gating_linear//bias"]),
    )
    bad = tmp_path / "params_bad.npz"
    bad.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="params_bad.npz.*download it again"):
        W.read_af2_npz(bad)


@pytest.mark.parametrize("num_blocks", [1, 3])
def test_loader_stacks_any_number_of_blocks(num_blocks):
    _, params, block_table = _tri_out()
    stacked = {k: np.stack([v + i for i in range(num_blocks)]) for k, v in params.items()}
    model = torch.nn.Module()
    model.blocks = torch.nn.ModuleList(TriangleMultiplication(C_Z, 128) for _ in range(num_blocks))
    table = W.stack_rows(block_table, num_blocks)
    W.load_af2_params(model, stacked, table)
    last = model.blocks[num_blocks - 1].center_layer_norm.weight.detach().numpy()
    key = "triangle_multiplication_outgoing/center_layer_norm//scale"
    assert np.array_equal(last, stacked[key][-1])
    # A file with another number of blocks than the model is rejected by name.
    more = {k: np.concatenate([v, v[:1]]) for k, v in stacked.items()}
    with pytest.raises(ValueError, match=f"stacks {num_blocks + 1} block"):
        W.load_af2_params(model, more, table)


# ----------------------------------------------------------------------------------------
# Init, dropout, precision, checkpointing (no reference needed)


def _randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random values for every parameter (the default init zeroes the residual updates)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if p.ndim > 1:
                p.copy_(noise / p.shape[-1] ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.1 * noise)
    return module


@pytest.mark.parametrize("is_extra_msa", [False, True], ids=["main", "extra_msa"])
def test_blocks_are_identity_at_init(is_extra_msa):
    """'final'-initialised last layers make every residual update exactly zero."""
    torch.manual_seed(0)
    c_m = C_E if is_extra_msa else C_M
    stack = EvoformerStack(2, c_m, C_Z, c_hidden_msa_att=c_m // 8, is_extra_msa=is_extra_msa)
    msa, mask = ("extra", "extra_mask") if is_extra_msa else ("msa", "msa_mask")
    m, z = stack(T[msa], T["pair"], T[mask], T["pair_mask"])
    assert torch.equal(m, T[msa]) and torch.equal(z, T["pair"])


class _Recorder(TorchDispatchMode):
    """Records the input dtypes of softmax, layer norm and matmul-like aten ops."""

    def __init__(self):
        super().__init__()
        self.seen: dict[str, set] = {"softmax": set(), "layer_norm": set(), "matmul": set()}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__
        kind = (
            "softmax" if "softmax" in name and "backward" not in name
            else "layer_norm" if "layer_norm" in name
            else "matmul" if name.split(".")[0] in ("mm", "bmm", "addmm")
            else None
        )
        if kind is not None and isinstance(args[0], torch.Tensor):
            self.seen[kind].add(args[0].dtype)
        return func(*args, **(kwargs or {}))


def test_bf16_autocast_runs_with_fp32_softmax_and_layer_norm_stats():
    torch.manual_seed(0)
    stack = _randomize(EvoformerStack(1, 32, 16, c_hidden_msa_att=8, c_hidden_opm=8,
                                      c_hidden_mul=16, c_hidden_pair_att=8), seed=1).eval()
    m = torch.randn(3, 5, 32)
    z = torch.randn(5, 5, 16)
    with torch.no_grad():
        m32, z32 = stack(m, z)
        apply_runtime(stack, RuntimeConfig(precision="bf16"))
        with _Recorder() as rec:
            m16, z16 = stack(m, z)
    assert rec.seen["matmul"] & {torch.bfloat16}, "autocast did not run the matmuls in bf16"
    assert rec.seen["softmax"] == {torch.float32}, rec.seen
    assert rec.seen["layer_norm"] == {torch.float32}, rec.seen
    for low, high in ((m16, m32), (z16, z32)):
        assert torch.isfinite(low).all()
        rel = ((low.float() - high).abs().max() / high.abs().max()).item()
        assert rel < 0.05, f"bf16 result too far from fp32: {rel:.3g}"


def test_dropout_is_shared_along_rows_and_columns_in_training():
    torch.manual_seed(0)
    block = _randomize(EvoformerBlock(32, 16, c_hidden_msa_att=8, c_hidden_opm=8,
                                      c_hidden_mul=16, c_hidden_pair_att=8), seed=2)
    assert block.msa_dropout_rowwise.rate == 0.15 and block.pair_dropout_rowwise.rate == 0.25
    calls: list[tuple[str, torch.Tensor, torch.Tensor]] = []

    def hook(mod, inputs, output):
        calls.append((mod.orientation, inputs[0], output))

    for mod in block.modules():
        if isinstance(mod, SharedDropout):
            mod.register_forward_hook(hook)
    m, z = torch.randn(6, 7, 32), torch.randn(7, 7, 16)
    block.train()
    block(m, z)
    # AF2 order: row attention (rows), 3 x pair per-row, ending node per-column.
    assert [c[0] for c in calls] == ["per_row"] * 4 + ["per_column"]
    for orientation, inp, out in calls:
        keep = (out != 0).float()
        axis = -3 if orientation == "per_row" else -2
        assert torch.equal(keep, keep.narrow(axis, 0, 1).expand_as(keep)), orientation
        assert 0 < keep.mean().item() < 1
        kept = keep.bool()
        rate = 0.15 if inp.shape[-1] == 32 else 0.25  # MSA (c_m=32) or pair (c_z=16)
        torch.testing.assert_close(out[kept], inp[kept] / (1 - rate))
    block.eval()
    a, b = block(m, z), block(m, z)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_checkpointed_stack_gives_the_same_gradients():
    torch.manual_seed(0)
    stack = _randomize(EvoformerStack(2, 32, 16, c_hidden_msa_att=8, c_hidden_opm=8,
                                      c_hidden_mul=16, c_hidden_pair_att=8), seed=3).train()
    m, z = torch.randn(4, 5, 32), torch.randn(5, 5, 16)

    def grads(checkpoint: bool):
        apply_runtime(stack, RuntimeConfig(checkpoint_blocks=checkpoint))
        stack.zero_grad()
        torch.manual_seed(42)  # same dropout masks in both runs
        mo, zo = stack(m, z)
        (mo.square().mean() + zo.square().mean()).backward()
        return [p.grad.clone() for p in stack.parameters()]

    plain, ckpt = grads(False), grads(True)
    for a, b in zip(plain, ckpt, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_bad_shapes_are_named():
    block = EvoformerBlock(32, 16, c_hidden_msa_att=8)
    m, z = torch.randn(3, 5, 32), torch.randn(5, 5, 16)
    with pytest.raises(ValueError, match="msa_mask"):
        block(m, z, torch.ones(3, 4), torch.ones(5, 5))
    with pytest.raises(ValueError, match="pair"):
        block(m, torch.randn(4, 4, 16))


def test_leading_batch_axes_match_single_examples():
    torch.manual_seed(0)
    stack = _randomize(EvoformerStack(1, 32, 16, c_hidden_msa_att=8, c_hidden_opm=8,
                                      c_hidden_mul=16, c_hidden_pair_att=8), seed=4).eval()
    m, z = torch.randn(2, 3, 5, 32), torch.randn(2, 5, 5, 16)
    msa_mask = (torch.rand(2, 3, 5) > 0.3).float()
    pair_mask = torch.ones(2, 5, 5)
    pair_mask[1, -1, :] = pair_mask[1, :, -1] = 0
    with torch.no_grad():
        mb, zb = stack(m, z, msa_mask, pair_mask)
        for i in range(2):
            mi, zi = stack(m[i], z[i], msa_mask[i], pair_mask[i])
            torch.testing.assert_close(mb[i], mi, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(zb[i], zi, rtol=1e-5, atol=1e-5)
