"""Tests for uni_fold.geometry.rigid: algebraic properties (hypothesis), precision under
autocast, batch manipulation, and parity with AlphaFold 2's r3 / quat_affine run live."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from uni_fold.geometry import (
    Rigid,
    fp32_no_autocast,
    invert_rot_mat,
    quat_multiply,
    quat_multiply_by_vec,
    quat_to_rot,
    rot_matmul,
    rot_to_quat,
    rot_vec_mul,
)

# Derandomized so CI is reproducible: the same 50 examples per property on every run.
PROPS = settings(max_examples=50, deadline=None, derandomize=True)
TRANS_SCALE = 30.0  # Angstrom-like magnitudes
ATOL = 2e-5 * TRANS_SCALE  # fp32 round-off on coordinates of that size

# ------------------------------------------------------------------------------------
# strategies
# ------------------------------------------------------------------------------------

batch_shapes = hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3)
unit_floats = st.floats(-1.0, 1.0, allow_nan=False, width=32)
coord_floats = st.floats(-TRANS_SCALE, TRANS_SCALE, allow_nan=False, width=32)


@st.composite
def quats(draw, shape):
    q = draw(hnp.arrays(np.float32, tuple(shape) + (4,), elements=unit_floats))
    assume(np.all(np.linalg.norm(q, axis=-1) > 0.2))
    return torch.from_numpy(q)


@st.composite
def points(draw, shape):
    return torch.from_numpy(draw(hnp.arrays(np.float32, tuple(shape) + (3,),
                                            elements=coord_floats)))


@st.composite
def rigids(draw, shape):
    return Rigid.from_quaternion(draw(quats(shape)), draw(points(shape)))


def assert_rigid_close(a: Rigid, b: Rigid, atol: float = ATOL) -> None:
    torch.testing.assert_close(a.rot, b.rot, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.trans, b.trans, atol=atol, rtol=0)


# ------------------------------------------------------------------------------------
# algebra (hypothesis)
# ------------------------------------------------------------------------------------


@PROPS
@given(data=st.data(), shape=batch_shapes)
def test_compose_is_associative(data, shape):
    a, b, c = (data.draw(rigids(shape)) for _ in range(3))
    assert_rigid_close(a.compose(b).compose(c), a.compose(b.compose(c)), atol=3 * ATOL)


@PROPS
@given(data=st.data(), shape=batch_shapes)
def test_compose_with_inverse_is_identity(data, shape):
    r = data.draw(rigids(shape))
    ident = Rigid.identity(shape)
    assert_rigid_close(r.compose(r.invert()), ident)
    assert_rigid_close(r.invert().compose(r), ident)


@PROPS
@given(data=st.data(), shape=batch_shapes)
def test_invert_apply_undoes_apply(data, shape):
    r, p = data.draw(rigids(shape)), data.draw(points(shape))
    torch.testing.assert_close(r.invert_apply(r.apply(p)), p, atol=ATOL, rtol=0)
    torch.testing.assert_close(r.invert().apply(p), r.invert_apply(p), atol=ATOL, rtol=0)


@PROPS
@given(data=st.data(), shape=batch_shapes)
def test_apply_of_composition(data, shape):
    a, b, p = data.draw(rigids(shape)), data.draw(rigids(shape)), data.draw(points(shape))
    torch.testing.assert_close(a.compose(b).apply(p), a.apply(b.apply(p)), atol=2 * ATOL, rtol=0)


@PROPS
@given(data=st.data(), shape=batch_shapes)
def test_quaternion_rot_quaternion_round_trip(data, shape):
    q = data.draw(quats(shape))
    q = q / q.norm(dim=-1, keepdim=True)
    back = rot_to_quat(quat_to_rot(q))
    assert torch.all(back[..., 0] >= 0)
    # q and -q are the same rotation: compare with the sign that matches best.
    err = torch.minimum((back - q).abs().amax(-1), (back + q).abs().amax(-1))
    assert err.max().item() < 1e-5, err.max().item()


@PROPS
@given(data=st.data(), shape=batch_shapes)
def test_rotations_are_orthonormal_with_det_one(data, shape):
    a, b = data.draw(rigids(shape)), data.draw(rigids(shape))
    update = data.draw(hnp.arrays(np.float32, tuple(shape) + (6,), elements=unit_floats))
    x0, x1, x2 = data.draw(points(shape)), data.draw(points(shape)), data.draw(points(shape))
    # Gram-Schmidt on nearly collinear points cancels most digits in fp32: require an angle
    # of at least ~6 degrees between the two edges (sin > 0.1), not just a non-zero area.
    u, v = x0 - x1, x2 - x1
    sin = torch.linalg.cross(u, v).norm(dim=-1) / (u.norm(dim=-1) * v.norm(dim=-1) + 1e-12)
    assume(torch.all(sin > 0.1))
    candidates = [a.rot, a.compose(b).rot, a.invert().rot,
                  a.compose_q_update_vec(torch.from_numpy(update)).rot,
                  Rigid.from_3_points(x0, x1, x2).rot]
    eye = torch.eye(3).expand(tuple(shape) + (3, 3))
    for rot in candidates:
        torch.testing.assert_close(rot @ rot.transpose(-1, -2), eye, atol=1e-5, rtol=0)
        torch.testing.assert_close(torch.linalg.det(rot), torch.ones(shape), atol=1e-5, rtol=0)


@PROPS
@given(data=st.data(), shape=batch_shapes)
def test_4x4_and_7_vector_round_trips(data, shape):
    r = data.draw(rigids(shape))
    m = r.to_tensor_4x4()
    assert m.shape == tuple(shape) + (4, 4)
    last_row = torch.tensor([0.0, 0, 0, 1]).expand(m[..., 3, :].shape)
    torch.testing.assert_close(m[..., 3, :], last_row)
    assert_rigid_close(Rigid.from_tensor_4x4(m), r, atol=0)
    t7 = r.to_tensor_7()
    assert t7.shape == tuple(shape) + (7,)
    assert_rigid_close(Rigid.from_tensor_7(t7), r)
    torch.testing.assert_close(Rigid.from_tensor_7(t7).to_tensor_7(), t7, atol=1e-5, rtol=0)


@PROPS
@given(data=st.data(), shape=batch_shapes)
def test_from_3_points_puts_points_on_frame_axes(data, shape):
    x_neg, origin, x_xy = (data.draw(points(shape)) for _ in range(3))
    assume(torch.all((origin - x_neg).norm(dim=-1) > 1.0))
    # keep the three points well away from collinear
    sin_angle = torch.linalg.cross(origin - x_neg, x_xy - origin).norm(dim=-1) / (
        (origin - x_neg).norm(dim=-1) * (x_xy - origin).norm(dim=-1) + 1e-12)
    assume(torch.all(sin_angle > 0.1))
    frame = Rigid.from_3_points(x_neg, origin, x_xy)
    torch.testing.assert_close(frame.trans, origin)
    local = frame.invert_apply(torch.stack([x_neg, origin, x_xy], dim=-2).movedim(-2, 0))
    atol = 1e-3  # local coordinates of points ~50 A apart, with fp32 round-off
    torch.testing.assert_close(local[1], torch.zeros_like(origin), atol=atol, rtol=0)
    assert torch.all(local[0][..., 0] < 0)  # on the negative x axis
    torch.testing.assert_close(local[0][..., 1:], torch.zeros_like(local[0][..., 1:]),
                               atol=atol, rtol=0)
    torch.testing.assert_close(local[0][..., 0], -(origin - x_neg).norm(dim=-1), atol=atol,
                               rtol=0)
    torch.testing.assert_close(local[2][..., 2], torch.zeros(shape), atol=atol, rtol=0)
    assert torch.all(local[2][..., 1] > 0)  # positive side of the xy plane


@PROPS
@given(data=st.data(), shape=batch_shapes)
def test_stop_rot_gradient_blocks_rotation_only(data, shape):
    q = data.draw(quats(shape))
    rot = quat_to_rot(q / q.norm(dim=-1, keepdim=True)).requires_grad_(True)  # a leaf
    t = data.draw(points(shape)).requires_grad_(True)
    p = data.draw(points(shape))
    assume(torch.all(p.norm(dim=-1) > 1.0))
    r = Rigid(rot, t)
    rot_grad, t_grad = torch.autograd.grad(r.stop_rot_gradient().apply(p).sum(), [rot, t],
                                           allow_unused=True)
    assert rot_grad is None
    torch.testing.assert_close(t_grad, torch.ones_like(t))
    # without the stop: d/dR_ij sum_k (R p + t)_k = p_j
    rot_grad, t_grad = torch.autograd.grad(r.apply(p).sum(), [rot, t])
    torch.testing.assert_close(rot_grad, p[..., None, :].expand(rot.shape))
    torch.testing.assert_close(t_grad, torch.ones_like(t))


@PROPS
@given(data=st.data(), shape=batch_shapes)
def test_compose_q_update_vec_is_composition_with_update_frame(data, shape):
    r = data.draw(rigids(shape))
    upd = torch.from_numpy(data.draw(hnp.arrays(np.float32, tuple(shape) + (6,),
                                                elements=unit_floats)))
    q_upd = torch.cat([torch.ones(tuple(shape) + (1,)), upd[..., :3]], dim=-1)
    expected = r.compose(Rigid.from_quaternion(q_upd, upd[..., 3:]))
    assert_rigid_close(r.compose_q_update_vec(upd), expected)
    assert_rigid_close(r.compose_q_update_vec(torch.zeros(tuple(shape) + (6,))), r, atol=0)


@PROPS
@given(data=st.data(), shape=batch_shapes)
def test_quat_multiply_matches_rotation_product(data, shape):
    q1, q2 = data.draw(quats(shape)), data.draw(quats(shape))
    q1, q2 = q1 / q1.norm(dim=-1, keepdim=True), q2 / q2.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(quat_to_rot(quat_multiply(q1, q2)),
                               rot_matmul(quat_to_rot(q1), quat_to_rot(q2)), atol=1e-5, rtol=0)
    v = q2[..., 1:]
    torch.testing.assert_close(quat_multiply_by_vec(q1, v),
                               quat_multiply(q1, torch.cat([torch.zeros_like(v[..., :1]), v], -1)))


# ------------------------------------------------------------------------------------
# deterministic edge cases
# ------------------------------------------------------------------------------------


def test_rot_to_quat_near_half_turns_and_gradients_finite():
    # rotations by ~180 degrees about each axis and a generic one: w ~ 0
    q = torch.tensor([[0.0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1e-4, 0.6, -0.8, 0],
                      [1.0, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]])
    q = q / q.norm(dim=-1, keepdim=True)
    rot = quat_to_rot(q).requires_grad_(True)
    back = rot_to_quat(rot)
    err = torch.minimum((back - q).abs().amax(-1), (back + q).abs().amax(-1))
    assert err.max() < 1e-6
    (grad,) = torch.autograd.grad(back.sum(), rot)
    assert torch.isfinite(grad).all()


def test_broadcasting_frames_over_points():
    torch.manual_seed(0)
    frames = Rigid.from_quaternion(torch.randn(5, 4), torch.randn(5, 3))
    pts = torch.randn(5, 7, 3)
    out = frames[..., None].apply(pts)
    for i in range(5):
        for j in range(7):
            torch.testing.assert_close(out[i, j], frames[i].rot @ pts[i, j] + frames[i].trans)
    # all-pairs: frame i applied to every point j, [N, N, 3]
    pair = frames[:, None].invert_apply(frames.trans[None, :, :])
    torch.testing.assert_close(pair[2, 3], frames[2].invert_apply(frames.trans[3]))
    torch.testing.assert_close(torch.diagonal(pair, dim1=0, dim2=1).T, torch.zeros(5, 3),
                               atol=1e-6, rtol=0)


def test_batch_manipulation():
    torch.manual_seed(1)
    r = Rigid.from_quaternion(torch.randn(2, 3, 4), torch.randn(2, 3, 3))
    assert r.shape == (2, 3) and r.dtype == torch.float32 and r.device.type == "cpu"
    assert r[1].shape == (3,) and r[..., 0].shape == (2,) and r[:, None].shape == (2, 1, 3)
    torch.testing.assert_close(r[1, 2].trans, r.trans[1, 2])
    torch.testing.assert_close(r[r.trans[..., 0] > 0].rot, r.rot[r.trans[..., 0] > 0])
    assert r.unsqueeze(-1).shape == (2, 3, 1) and r.unsqueeze(0).shape == (1, 2, 3)
    assert r.reshape(-1).shape == (6,) and r.view(3, 2).shape == (3, 2)
    assert r.reshape((6, 1)).shape == (6, 1) and r[:, :1].expand(2, 4).shape == (2, 4)
    assert Rigid.cat([r, r[:, :1]], dim=-1).shape == (2, 4)
    assert Rigid.cat([r, r], dim=0).shape == (4, 3)
    assert Rigid.stack([r, r], dim=-1).shape == (2, 3, 2)
    summed = r.map_tensor_fn(lambda x: x.sum(dim=-1))
    assert summed.shape == (2,)
    torch.testing.assert_close(summed.rot, r.rot.sum(dim=1))
    torch.testing.assert_close(summed.trans, r.trans.sum(dim=1))
    d = r.to(torch.float64)
    assert d.dtype == torch.float64 and r.detach().clone().shape == r.shape
    assert r.scale_translation(0.1).trans.allclose(r.trans * 0.1)
    ident = Rigid.identity((2, 3), requires_grad=True)
    assert ident.requires_grad and ident.shape == (2, 3)
    torch.testing.assert_close(ident.apply(r.trans), r.trans)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="rot"):
        Rigid(torch.zeros(4, 3, 4), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="batch shape"):
        Rigid(torch.zeros(4, 3, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="quat"):
        Rigid.from_quaternion(torch.zeros(4, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="floating"):
        Rigid(torch.zeros(3, 3, dtype=torch.long), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="points"):
        Rigid.identity(2).apply(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="update"):
        Rigid.identity(2).compose_q_update_vec(torch.zeros(2, 7))
    with pytest.raises(ValueError, match="fp32"):
        Rigid.identity(2).to(torch.bfloat16)
    with pytest.raises(ValueError, match="out of range"):
        Rigid.identity(2).unsqueeze(3)


# ------------------------------------------------------------------------------------
# precision
# ------------------------------------------------------------------------------------


def _all_outputs(quat, trans, pts, upd, x0, x1, x2):
    r = Rigid.from_quaternion(quat, trans)
    s = Rigid.from_3_points(x0, x1, x2)
    return [
        r.rot, r.trans, r.apply(pts), r.invert_apply(pts), r.compose(s).rot,
        r.compose(s).trans, r.invert().trans, r.compose_q_update_vec(upd).rot,
        r.compose_q_update_vec(upd).trans, r.to_quaternion(), r.to_tensor_7(),
        r.to_tensor_4x4(), s.rot, rot_matmul(r.rot, s.rot), rot_vec_mul(s.rot, pts),
        quat_multiply(quat, quat), invert_rot_mat(s.rot),
    ]


@pytest.mark.parametrize("input_dtype", [torch.float32, torch.bfloat16])
def test_bf16_autocast_computes_in_fp32(input_dtype):
    g = torch.Generator().manual_seed(3)
    args = [torch.randn(4, 4, generator=g), 10 * torch.randn(4, 3, generator=g),
            10 * torch.randn(4, 3, generator=g), torch.randn(4, 6, generator=g)]
    args += [10 * torch.randn(4, 3, generator=g) for _ in range(3)]
    args = [a.to(input_dtype) for a in args]
    reference = _all_outputs(*[a.float() for a in args])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = _all_outputs(*args)
    for ref, out in zip(reference, under_autocast):
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, ref, atol=0, rtol=0)


def test_fp32_no_autocast_decorator():
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = torch.matmul(a, b)  # autocast lowers matmul to bf16 ...
        guarded = fp32_no_autocast(torch.matmul)(a.bfloat16(), b)  # ... the guard does not
        as_kwargs = fp32_no_autocast(lambda x, y: {"o": x["m"] @ y})(x={"m": a}, y=b)
    assert plain.dtype == torch.bfloat16
    assert guarded.dtype == torch.float32 and as_kwargs["o"].dtype == torch.float32
    torch.testing.assert_close(guarded, a.bfloat16().float() @ b, atol=0, rtol=0)
    torch.testing.assert_close(as_kwargs["o"], a @ b, atol=0, rtol=0)


def test_fp64_is_kept_and_gradcheck_passes():
    g = torch.Generator().manual_seed(4)
    quat = torch.randn(3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    trans = torch.randn(3, 3, dtype=torch.float64, generator=g, requires_grad=True)
    upd = torch.randn(3, 6, dtype=torch.float64, generator=g, requires_grad=True)
    pts = torch.randn(3, 3, dtype=torch.float64, generator=g)

    def fn(q, t, u):
        r = Rigid.from_quaternion(q, t).compose_q_update_vec(u)
        return r.invert_apply(pts), r.to_quaternion()

    assert fn(quat, trans, upd)[0].dtype == torch.float64
    assert torch.autograd.gradcheck(fn, (quat, trans, upd))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_under_bf16_autocast():
    g = torch.Generator().manual_seed(5)
    args = [torch.randn(6, 4, generator=g), 10 * torch.randn(6, 3, generator=g),
            10 * torch.randn(6, 3, generator=g), torch.randn(6, 6, generator=g)]
    args += [10 * torch.randn(6, 3, generator=g) for _ in range(3)]
    reference = _all_outputs(*args)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        on_gpu = _all_outputs(*[a.cuda() for a in args])
    for ref, out in zip(reference, on_gpu):
        assert out.dtype == torch.float32 and out.is_cuda
        torch.testing.assert_close(out.cpu(), ref, atol=1e-4, rtol=1e-5)


# ------------------------------------------------------------------------------------
# parity with the AlphaFold 2 reference (JAX on the CPU), run live
# ------------------------------------------------------------------------------------

PARITY_SHAPES = [(), (5,), (2, 3)]


@pytest.fixture(scope="module")
def ref():
    jnp = pytest.importorskip("jax.numpy")
    from alphafold.model import quat_affine, r3

    return jnp, r3, quat_affine


def assert_parity(ours, theirs, name: str) -> float:
    """Compare to 1e-5 relative (the absolute floor is 1e-5 of the array's scale)."""
    ours = ours.detach().cpu().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours)
    theirs = np.asarray(theirs)
    assert ours.shape == theirs.shape, (name, ours.shape, theirs.shape)
    scale = max(1.0, float(np.abs(theirs).max(initial=0.0)))
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5 * scale, err_msg=name)
    return float(np.abs(ours - theirs).max(initial=0.0))


def _random_inputs(shape, seed):
    rng = np.random.default_rng(seed)
    return {
        "quat": rng.normal(size=shape + (4,)).astype(np.float32),
        "quat2": rng.normal(size=shape + (4,)).astype(np.float32),
        "trans": (10 * rng.normal(size=shape + (3,))).astype(np.float32),
        "trans2": (10 * rng.normal(size=shape + (3,))).astype(np.float32),
        "points": (10 * rng.normal(size=shape + (3,))).astype(np.float32),
        "multi_points": (10 * rng.normal(size=shape + (7, 3))).astype(np.float32),
        "update": (0.5 * rng.normal(size=shape + (6,))).astype(np.float32),
        "three": (10 * rng.normal(size=(3,) + shape + (3,))).astype(np.float32),
    }


def _ref_rigids(jnp, r3, rot, trans):
    return r3.Rigids(r3.rots_from_tensor3x3(jnp.asarray(rot)),
                     r3.vecs_from_tensor(jnp.asarray(trans)))


def _rots_to_np(r3_rots):
    return np.stack([np.asarray(c) for c in r3_rots], axis=-1).reshape(
        np.asarray(r3_rots.xx).shape + (3, 3))


@pytest.mark.parametrize("shape", PARITY_SHAPES)
def test_parity_with_r3(ref, shape):
    jnp, r3, _ = ref
    x = _random_inputs(shape, seed=len(shape))
    t = {k: torch.from_numpy(v) for k, v in x.items()}
    a = Rigid.from_quaternion(t["quat"], t["trans"])
    b = Rigid.from_quaternion(t["quat2"], t["trans2"])
    ra = _ref_rigids(jnp, r3, a.rot.numpy(), a.trans.numpy())
    rb = _ref_rigids(jnp, r3, b.rot.numpy(), b.trans.numpy())

    # Suppl. Alg. 21
    p0, p1, p2 = (r3.vecs_from_tensor(jnp.asarray(v)) for v in x["three"])
    ref_frame = r3.rigids_from_3_points(p0, p1, p2)
    frame = Rigid.from_3_points(*t["three"])
    assert_parity(frame.rot, _rots_to_np(ref_frame.rot), "from_3_points rot")
    assert_parity(frame.trans, r3.vecs_to_tensor(ref_frame.trans), "from_3_points trans")

    ab, rab = a.compose(b), r3.rigids_mul_rigids(ra, rb)
    assert_parity(ab.rot, _rots_to_np(rab.rot), "compose rot")
    assert_parity(ab.trans, r3.vecs_to_tensor(rab.trans), "compose trans")

    inv, rinv = a.invert(), r3.invert_rigids(ra)
    assert_parity(inv.rot, _rots_to_np(rinv.rot), "invert rot")
    assert_parity(inv.trans, r3.vecs_to_tensor(rinv.trans), "invert trans")

    ref_pts = r3.rigids_mul_vecs(ra, r3.vecs_from_tensor(jnp.asarray(x["points"])))
    assert_parity(a.apply(t["points"]), r3.vecs_to_tensor(ref_pts), "apply")

    m = a.to_tensor_4x4()
    r4 = r3.rigids_from_tensor4x4(jnp.asarray(m.numpy()))
    assert_parity(m[..., :3, :3], _rots_to_np(r4.rot), "from_tensor_4x4 rot")
    ours4 = Rigid.from_tensor_4x4(m)
    assert_parity(ours4.rot, _rots_to_np(r4.rot), "from_tensor_4x4 rot")
    assert_parity(ours4.trans, r3.vecs_to_tensor(r4.trans), "from_tensor_4x4 trans")

    # r3 <-> quat_affine: a QuatAffine built from our frame's rotation matrix
    qa = r3.rigids_to_quataffine(ra)
    ref_local = qa.invert_point([jnp.asarray(x["points"][..., i]) for i in range(3)])
    assert_parity(a.invert_apply(t["points"]), np.stack(ref_local, -1), "invert_apply")


@pytest.mark.parametrize("shape", PARITY_SHAPES)
def test_parity_with_quat_affine(ref, shape):
    jnp, _, quat_affine = ref
    x = _random_inputs(shape, seed=10 + len(shape))
    t = {k: torch.from_numpy(v) for k, v in x.items()}
    qa = quat_affine.QuatAffine(jnp.asarray(x["quat"]), jnp.asarray(x["trans"]),
                                unstack_inputs=True)
    r = Rigid.from_quaternion(t["quat"], t["trans"])
    ref_rot = quat_affine.rot_list_to_tensor(qa.rotation)
    assert_parity(r.rot, ref_rot, "from_quaternion rot")
    assert_parity(r.trans, quat_affine.vec_list_to_tensor(qa.translation), "trans")

    # free quaternion functions
    q_unit = t["quat"] / t["quat"].norm(dim=-1, keepdim=True)
    ref_rot_unit = quat_affine.quat_to_rot(jnp.asarray(q_unit.numpy()))
    assert_parity(quat_to_rot(q_unit), quat_affine.rot_list_to_tensor(ref_rot_unit),
                  "quat_to_rot")
    assert_parity(quat_multiply(t["quat"], t["quat2"]),
                  quat_affine.quat_multiply(jnp.asarray(x["quat"]), jnp.asarray(x["quat2"])),
                  "quat_multiply")
    assert_parity(quat_multiply_by_vec(t["quat"], t["points"]),
                  quat_affine.quat_multiply_by_vec(jnp.asarray(x["quat"]),
                                                   jnp.asarray(x["points"])),
                  "quat_multiply_by_vec")
    ref_q = np.asarray(quat_affine.rot_to_quat(ref_rot, unstack_inputs=True))
    ref_q = ref_q * np.where(ref_q[..., :1] < 0, -1.0, 1.0)  # AF2's eigh leaves the sign free
    assert_parity(rot_to_quat(r.rot), ref_q, "rot_to_quat")

    # 7-vector layout; AF2 keeps the normalised input quaternion, we return w >= 0
    ref_t7 = np.array(qa.to_tensor(), dtype=np.float32)
    ref_t7[..., :4] *= np.where(ref_t7[..., :1] < 0, -1, 1).astype(np.float32)
    assert_parity(r.to_tensor_7(), ref_t7, "to_tensor_7")
    qa7 = quat_affine.QuatAffine.from_tensor(jnp.asarray(ref_t7))
    ours7 = Rigid.from_tensor_7(torch.from_numpy(ref_t7), normalize_quat=False)
    assert_parity(ours7.rot, quat_affine.rot_list_to_tensor(qa7.rotation), "from_tensor_7")

    # points: single and with an extra points dim, as the structure module uses them
    pts = [jnp.asarray(x["points"][..., i]) for i in range(3)]
    assert_parity(r.apply(t["points"]), np.stack(qa.apply_to_point(pts), -1), "apply_to_point")
    assert_parity(r.invert_apply(t["points"]), np.stack(qa.invert_point(pts), -1),
                  "invert_point")
    mpts = [jnp.asarray(x["multi_points"][..., i]) for i in range(3)]
    assert_parity(r[..., None].apply(t["multi_points"]),
                  np.stack(qa.apply_to_point(mpts, extra_dims=1), -1), "apply extra_dims=1")
    assert_parity(r[..., None].invert_apply(t["multi_points"]),
                  np.stack(qa.invert_point(mpts, extra_dims=1), -1), "invert extra_dims=1")

    # Suppl. Alg. 23 backbone update, chained as over the 8 structure-module layers
    rng = np.random.default_rng(20 + len(shape))
    ours_chain, ref_chain = r, qa
    for _ in range(8):
        upd = (0.3 * rng.normal(size=shape + (6,))).astype(np.float32)
        ours_chain = ours_chain.compose_q_update_vec(torch.from_numpy(upd))
        ref_chain = ref_chain.pre_compose(jnp.asarray(upd))
        assert_parity(ours_chain.rot, quat_affine.rot_list_to_tensor(ref_chain.rotation),
                      "pre_compose rot")
        assert_parity(ours_chain.trans, quat_affine.vec_list_to_tensor(ref_chain.translation),
                      "pre_compose trans")
    scaled = ref_chain.scale_translation(0.1)
    assert_parity(ours_chain.scale_translation(0.1).trans,
                  quat_affine.vec_list_to_tensor(scaled.translation), "scale_translation")
