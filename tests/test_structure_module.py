"""Structure module (Suppl. Alg. 20-24): parity with the AF2 reference and properties.

Parity tests run the reference's haiku modules (``alphafold.model.folding``) with random,
non-constant parameters (``tests/reference_utils.py``), load the same parameters into our
modules through the weight tables, and compare every output in fp32.
"""
from __future__ import annotations

import copy

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from alphafold.common import residue_constants as af2_rc
from alphafold.model import all_atom_multimer as af2_am
from alphafold.model import folding, quat_affine
from reference_utils import reference_config, run_haiku

from uni_fold.config import StructureModuleConfig
from uni_fold.geometry.rigid import Rigid
from uni_fold.model.ipa import InvariantPointAttention, invariant_point_attention_rows
from uni_fold.model.structure_module import (
    FoldIteration,
    StructureModule,
    fold_iteration_rows,
    identity_affine,
    structure_module_rows,
)
from uni_fold.model.weights import load_af2_params

AF2_ROOT = "alphafold/alphafold_iteration"
REL_TOL = 1e-5  # max |ours - ref| <= REL_TOL * max(max |ref|, 1)
ATOM_TOL = 1e-4  # Å


def _rooted(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Reference params keyed as in AF2's npz files (under alphafold/alphafold_iteration)."""
    return {f"{AF2_ROOT}/{k}": v for k, v in params.items()}


def _assert_close(name: str, ours: torch.Tensor, ref: np.ndarray, atol: float | None = None):
    ours_np = ours.detach().double().numpy()
    ref = np.asarray(ref, dtype=np.float64)
    assert ours_np.shape == ref.shape, f"{name}: shape {ours_np.shape} != reference {ref.shape}"
    err = float(np.max(np.abs(ours_np - ref)))
    tol = atol if atol is not None else REL_TOL * max(float(np.max(np.abs(ref))), 1.0)
    assert err <= tol, f"{name}: max abs error {err:.3e} > {tol:.3e}"
    return err


def _assert_angles_close(ours: torch.Tensor, ref: np.ndarray, ref_unnormalized: np.ndarray):
    """Normalised (sin, cos) pairs: the unnormalised pairs agree to ``REL_TOL`` of their
    scale, and normalising divides that error by the pair's norm, so each pair gets the
    tolerance ``REL_TOL * scale / |pair|`` (never below ``REL_TOL``)."""
    ref_unnormalized = np.asarray(ref_unnormalized, dtype=np.float64)
    scale = max(float(np.max(np.abs(ref_unnormalized))), 1.0)
    norm = np.linalg.norm(ref_unnormalized, axis=-1, keepdims=True)
    tol = np.maximum(REL_TOL * scale / norm, REL_TOL)
    err = np.abs(ours.detach().double().numpy() - np.asarray(ref, dtype=np.float64))
    assert err.shape == tol.shape[:-1] + (2,)
    worst = np.unravel_index(np.argmax(err / tol), err.shape)
    assert np.all(err <= tol), (
        f"angles_sin_cos: error {err[worst]:.3e} > {tol[worst[:-1]][0]:.3e} at {worst}"
    )


def _random_affine(rs: np.random.RandomState, n: int, trans_scale: float) -> np.ndarray:
    """``[n, 7]``: random unit quaternions and translations (AF2's scaled units)."""
    quat = rs.randn(n, 4)
    quat /= np.linalg.norm(quat, axis=-1, keepdims=True)
    return np.concatenate([quat, trans_scale * rs.randn(n, 3)], -1).astype(np.float32)


def _af2_batch(aatype, seq_mask):
    """The per-residue lookups AF2's structure module reads from the batch, built from
    the reference's own tables."""
    return {
        "aatype": aatype,
        "seq_mask": seq_mask,
        "atom14_atom_exists": jnp.asarray(af2_rc.restype_atom14_mask)[aatype],
        "residx_atom37_to_atom14": jnp.asarray(af2_am.RESTYPE_ATOM37_TO_ATOM14)[aatype],
        "atom37_atom_exists": jnp.asarray(af2_rc.restype_atom37_mask)[aatype],
    }


def _ref_sm_config(**changes):
    cfg = reference_config()
    sc = copy.deepcopy(cfg.model.heads.structure_module)
    for key, value in changes.items():
        if key.startswith("sidechain_"):
            sc.sidechain[key[len("sidechain_"):]] = value
        else:
            sc[key] = value
    return sc, cfg.model.global_config


def _our_sm_config(**changes) -> StructureModuleConfig:
    cfg = StructureModuleConfig()
    for key, value in changes.items():
        if key.startswith("sidechain_"):
            setattr(cfg.sidechain, key[len("sidechain_"):], value)
        else:
            setattr(cfg, key, value)
    return cfg


def _frames_flat(ref_rigids) -> np.ndarray:
    """AF2 r3.Rigids -> ``[..., 4, 4]`` homogeneous matrices."""
    r, t = ref_rigids.rot, ref_rigids.trans
    rot = np.stack([np.stack([r.xx, r.xy, r.xz], -1), np.stack([r.yx, r.yy, r.yz], -1),
                    np.stack([r.zx, r.zy, r.zz], -1)], -2)
    top = np.concatenate([rot, np.stack([t.x, t.y, t.z], -1)[..., None]], -1)
    bottom = np.zeros(top.shape[:-2] + (1, 4))
    bottom[..., 0, 3] = 1.0
    return np.concatenate([top, bottom], -2)


def _vecs(ref_vecs) -> np.ndarray:
    return np.stack([ref_vecs.x, ref_vecs.y, ref_vecs.z], -1)


def _mask(rs: np.random.RandomState, n: int) -> np.ndarray:
    mask = (rs.rand(n) > 0.25).astype(np.float32)
    mask[0], mask[-1] = 1.0, 0.0  # at least one residue in and one out
    return mask


# ----------------------------------------------------------------------------------------
# Invariant point attention


IPA_SIZES = dict(num_channel=40, num_head=3, num_scalar_qk=5, num_scalar_v=7,
                 num_point_qk=3, num_point_v=5)


def test_ipa_matches_reference():
    n, c_z = 9, 17
    rs = np.random.RandomState(1)
    s = rs.randn(n, IPA_SIZES["num_channel"]).astype(np.float32)
    z = rs.randn(n, n, c_z).astype(np.float32)
    mask = _mask(rs, n)
    affine = _random_affine(rs, n, 2.0)
    sc, gc = _ref_sm_config(**IPA_SIZES)

    def build(s, z, mask, affine):
        frames = quat_affine.QuatAffine.from_tensor(affine)
        return folding.InvariantPointAttention(sc, gc)(s, z, mask[:, None], frames)

    ref, params = run_haiku(build, s, z, mask, affine, seed=1)
    ipa = InvariantPointAttention(IPA_SIZES["num_channel"], c_z, *[
        IPA_SIZES[k] for k in ("num_head", "num_scalar_qk", "num_scalar_v", "num_point_qk",
                               "num_point_v")])
    load_af2_params(ipa, params, invariant_point_attention_rows("", "invariant_point_attention"))
    frames = Rigid.from_tensor_7(torch.tensor(affine))
    with torch.no_grad():
        out = ipa(torch.tensor(s), torch.tensor(z), frames, torch.tensor(mask))
    _assert_close("ipa", out, ref)


def test_ipa_is_invariant_to_a_global_rigid_motion():
    n = 6
    torch.manual_seed(0)
    ipa = InvariantPointAttention(16, 8, 2, 4, 4, 3, 2)
    with torch.no_grad():  # make the output depend on everything
        ipa.output_projection.weight.normal_()
    s, z = torch.randn(n, 16), torch.randn(n, n, 8)
    frames = Rigid.from_tensor_7(torch.randn(n, 7))
    motion = Rigid.from_tensor_7(torch.randn(7))
    mask = torch.ones(n)
    with torch.no_grad():
        out = ipa(s, z, frames, mask)
        moved = ipa(s, z, motion.compose(frames), mask)
    torch.testing.assert_close(moved, out, atol=1e-4, rtol=1e-4)


def test_ipa_rejects_bad_shapes():
    ipa = InvariantPointAttention(16, 8, 2, 4, 4, 3, 2)
    frames = Rigid.identity(5)
    with pytest.raises(ValueError, match="z has shape"):
        ipa(torch.randn(5, 16), torch.randn(5, 4, 8), frames, torch.ones(5))
    with pytest.raises(ValueError, match="mask"):
        ipa(torch.randn(5, 16), torch.randn(5, 5, 8), frames, torch.ones(4))


# ----------------------------------------------------------------------------------------
# One fold iteration (real widths)


def test_fold_iteration_matches_reference():
    n = 7
    rs = np.random.RandomState(2)
    sc, gc = _ref_sm_config()
    cfg = _our_sm_config()
    act = rs.randn(n, cfg.num_channel).astype(np.float32)
    initial_act = rs.randn(n, 384).astype(np.float32)
    z = rs.randn(n, n, 128).astype(np.float32)
    mask = _mask(rs, n)
    affine = _random_affine(rs, n, 1.5)
    aatype = rs.randint(0, 21, n).astype(np.int32)

    def build(act, initial_act, z, mask, affine, aatype):
        module = folding.FoldIteration(sc, gc, name="fold_iteration")
        return module(
            {"act": act, "affine": affine}, sequence_mask=mask[:, None], update_affine=True,
            is_training=False, initial_act=initial_act, static_feat_2d=z, aatype=aatype,
        )

    (ref_next, ref_out), params = run_haiku(build, act, initial_act, z, mask, affine, aatype,
                                            seed=2)
    module = FoldIteration(384, 128, cfg).eval()
    load_af2_params(module, _rooted(params),
                    fold_iteration_rows("", f"{AF2_ROOT}/fold_iteration", cfg))
    with torch.no_grad():
        new_act, new_affine, sidechain = module(
            torch.tensor(act), torch.tensor(initial_act), torch.tensor(z),
            torch.tensor(affine), torch.tensor(mask), torch.tensor(aatype).long())
    _assert_close("act", new_act, ref_next["act"])
    _assert_close("affine", new_affine, ref_out["affine"])
    sc_ref = ref_out["sc"]
    _assert_close("unnormalized_angles", sidechain["unnormalized_angles_sin_cos"],
                  sc_ref["unnormalized_angles_sin_cos"])
    _assert_angles_close(sidechain["angles_sin_cos"], sc_ref["angles_sin_cos"],
                         sc_ref["unnormalized_angles_sin_cos"])
    _assert_close("frames", sidechain["frames"].to_tensor_4x4(), _frames_flat(sc_ref["frames"]),
                  atol=ATOM_TOL)
    _assert_close("atom_pos", sidechain["atom_pos"], _vecs(sc_ref["atom_pos"]), atol=ATOM_TOL)


# ----------------------------------------------------------------------------------------
# The whole structure module: AF2's widths with 2 layers, and odd widths (c_s != num_channel)
# with 3 layers; 23 residues covering all 21 residue types, some masked.

SM_CASES = {
    "af2_widths": dict(c_s=384, c_z=128, sizes=dict(num_layer=2)),
    "odd_widths": dict(c_s=40, c_z=17, sizes=dict(
        num_layer=3, num_channel=24, num_head=3, num_scalar_qk=5, num_scalar_v=3,
        num_point_qk=3, num_point_v=5, sidechain_num_channel=12,
        sidechain_num_residual_block=3)),
}
N_RES = 23


@pytest.fixture(scope="module", params=sorted(SM_CASES))
def structure_module_case(request):
    case = SM_CASES[request.param]
    n, c_s, c_z, sizes = N_RES, case["c_s"], case["c_z"], case["sizes"]
    rs = np.random.RandomState(3)
    single = rs.randn(n, c_s).astype(np.float32)
    pair = rs.randn(n, n, c_z).astype(np.float32)
    aatype = np.concatenate([np.arange(21), rs.randint(0, 21, n - 21)]).astype(np.int32)
    mask = _mask(rs, n)
    sc, gc = _ref_sm_config(**sizes)

    def build(single, pair, aatype, mask):
        module = folding.StructureModule(sc, gc, compute_loss=True)
        return module({"single": single, "pair": pair}, _af2_batch(aatype, mask),
                      is_training=False)

    ref, params = run_haiku(build, single, pair, aatype, mask, seed=3)
    cfg = _our_sm_config(**sizes)
    module = StructureModule(c_s, c_z, cfg).eval()
    load_af2_params(module, _rooted(params), structure_module_rows("", cfg))
    inputs = (torch.tensor(single), torch.tensor(pair), torch.tensor(aatype).long(),
              torch.tensor(mask))
    with torch.no_grad():
        out = module(*inputs)
    return module, inputs, out, ref


def test_structure_module_matches_reference(structure_module_case):
    module, _, out, ref = structure_module_case
    sm, sc_ref = out["sm"], ref["sidechains"]
    assert sm["affine"].shape == (module.num_layer, N_RES, 7)
    _assert_close("final_atom_positions", out["final_atom_positions"],
                  ref["final_atom_positions"], atol=ATOM_TOL)
    _assert_close("final_atom14_positions", out["final_atom14_positions"],
                  ref["final_atom14_positions"], atol=ATOM_TOL)
    _assert_close("final_atom_mask", out["final_atom_mask"], ref["final_atom_mask"], atol=0)
    _assert_close("final_atom14_mask", out["final_atom14_mask"], ref["final_atom14_mask"], atol=0)
    _assert_close("final_affines", out["final_affines"], ref["final_affines"])
    _assert_close("sm.affine (traj)", sm["affine"], ref["traj"])
    _assert_close("single", out["single"], ref["representations"]["structure_module"])
    _assert_close("sm.unnormalized_angles_sin_cos", sm["unnormalized_angles_sin_cos"],
                  sc_ref["unnormalized_angles_sin_cos"])
    _assert_angles_close(sm["angles_sin_cos"], sc_ref["angles_sin_cos"],
                         sc_ref["unnormalized_angles_sin_cos"])
    _assert_close("sm.atom_pos", sm["atom_pos"], _vecs(sc_ref["atom_pos"]), atol=ATOM_TOL)
    _assert_close("sm.frames", sm["frames"], _frames_flat(sc_ref["frames"]), atol=ATOM_TOL)
    assert sm["sidechains"]["atom_pos"] is sm["atom_pos"]


def test_structure_module_outputs_are_fp32_under_bf16_autocast(structure_module_case):
    module, inputs, out, _ = structure_module_case
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = module(*inputs)
    for key in ("final_atom_positions", "final_atom14_positions", "final_affines"):
        assert low[key].dtype == torch.float32, key
    for key in ("affine", "angles_sin_cos", "unnormalized_angles_sin_cos", "atom_pos", "frames"):
        assert low["sm"][key].dtype == torch.float32, key
    pos, ref_pos = low["final_atom_positions"], out["final_atom_positions"]
    assert torch.isfinite(pos).all()
    # bf16 activations perturb the frames, but the fold stays the same one.
    scale = ref_pos.abs().max()
    assert (pos - ref_pos).abs().max() < 0.1 * scale


def test_rotation_gradient_is_stopped_between_layers():
    cfg = _our_sm_config(num_layer=2, num_channel=16, num_head=2, num_scalar_qk=4,
                         num_scalar_v=4, num_point_qk=2, num_point_v=2,
                         sidechain_num_channel=8)
    torch.manual_seed(0)
    module = StructureModule(12, 6, cfg)
    for p in module.parameters():  # no zero-initialised layers: everything moves
        torch.nn.init.normal_(p, std=0.3)
    seen = []
    module.fold_iteration.register_forward_pre_hook(lambda mod, args: seen.append(args[3]))
    n = 5
    module(torch.randn(n, 12), torch.randn(n, n, 6), torch.arange(n), torch.ones(n))
    params = [p for p in module.parameters()]
    second = seen[1]  # the frames entering layer 2
    grad_quat = torch.autograd.grad(second[..., :4].sum(), params, allow_unused=True,
                                    retain_graph=True)
    grad_trans = torch.autograd.grad(second[..., 4:].sum(), params, allow_unused=True)
    assert all(g is None or not g.any() for g in grad_quat)
    assert any(g is not None and g.abs().sum() > 0 for g in grad_trans)


def test_final_init_gives_identity_updates():
    """With AF2's zero ("final") init every residual branch adds exactly zero: IPA and the
    transition leave the activations' residual path alone and the frames stay at the
    identity through all layers."""
    cfg = _our_sm_config(num_layer=3, num_channel=24, num_head=3, sidechain_num_channel=12)
    torch.manual_seed(0)
    module = StructureModule(20, 10, cfg).eval()
    n = 7
    s, z = torch.randn(n, 20), torch.randn(n, n, 10)
    act = torch.randn(n, 24)
    frames = Rigid.from_tensor_7(torch.randn(n, 7))
    fold = module.fold_iteration
    with torch.no_grad():
        assert not fold.invariant_point_attention(act, z, frames, torch.ones(n)).any()
        assert not fold.transition[-1](torch.relu(fold.transition[-2](act))).any()
        assert not fold.affine_update(act).any()
        for block in fold.rigid_sidechain.resblock2:
            assert not block(torch.randn(n, 12)).any()
        out = module(s, z, torch.arange(n), torch.ones(n))
    identity = identity_affine((n,), torch.device("cpu"))
    for layer in range(cfg.num_layer):
        assert torch.equal(out["sm"]["affine"][layer], identity)


def test_structure_module_batched_equals_unbatched(structure_module_case):
    module, (s, z, aatype, mask), out, _ = structure_module_case
    with torch.no_grad():
        batched = module(torch.stack([s, s.flip(0)]), torch.stack([z, z.flip(0, 1)]),
                         torch.stack([aatype, aatype.flip(0)]), torch.stack([mask, mask.flip(0)]))
    torch.testing.assert_close(batched["final_atom_positions"][0], out["final_atom_positions"],
                               atol=1e-4, rtol=1e-5)
    assert batched["sm"]["affine"].shape == (module.num_layer, 2, N_RES, 7)


def test_structure_module_rejects_bad_inputs(structure_module_case):
    module, (s, z, aatype, mask), _, _ = structure_module_case
    with pytest.raises(ValueError, match="aatype"):
        module(s, z, torch.nn.functional.one_hot(aatype, 21), mask)
    with pytest.raises(ValueError, match="pair representation"):
        module(s, z[:, :-1], aatype, mask)
    with pytest.raises(ValueError, match="c_s"):
        module(s[:, :-1], z, aatype, mask)
