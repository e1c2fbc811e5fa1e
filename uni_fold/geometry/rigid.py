"""Rigid-body transforms (rotation matrix + translation), the project's one geometry type.

A ``Rigid`` maps local coordinates to global ones: ``x_global = rot @ x_local + trans``.
Rotations are ``[*, 3, 3]`` matrices, translations ``[*, 3]``; ``*`` is the batch shape
(e.g. ``[N_res]`` for backbone frames, ``[N_res, 8]`` for the rigid groups of Suppl. Alg. 24).
Quaternions are ``(w, x, y, z)`` with the Hamilton product, as in AlphaFold 2's
``quat_affine``; the 7-vector "affine" layout is ``quat(4) + trans(3)``.

Every function here runs in fp32 with autocast switched off (see ``precision.py``), so frames
built inside a bf16 autocast region are still fp32. fp64 inputs stay fp64.

Free functions: ``quat_to_rot``, ``rot_to_quat``, ``quat_multiply``, ``quat_multiply_by_vec``,
``rot_matmul``, ``rot_vec_mul``, ``invert_rot_mat``. They use elementwise products and sums
rather than ``matmul``, so TF32 matmul settings on a GPU cannot lower their precision.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Union

import torch

from uni_fold.geometry.precision import fp32_no_autocast, to_fp32

logger = logging.getLogger(__name__)

Tensor = torch.Tensor
BatchIndex = Union[int, slice, Tensor, None, type(Ellipsis), tuple]  # noqa: UP007


def _check_last_dims(x: Tensor, dims: tuple, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < len(dims) or tuple(x.shape[-len(dims):]) != dims:
        want = "[*, " + ", ".join(str(d) for d in dims) + "]"
        raise ValueError(f"{name} must have shape {want}, got {list(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}; cast it "
                         "with .float()")


# ----------------------------------------------------------------------------------------
# Rotation matrices
# ----------------------------------------------------------------------------------------


@fp32_no_autocast
def rot_matmul(a: Tensor, b: Tensor) -> Tensor:
    """Matrix product ``a @ b`` of rotations ``[*, 3, 3]`` (batch dims broadcast)."""
    _check_last_dims(a, (3, 3), "a")
    _check_last_dims(b, (3, 3), "b")
    # out[i, k] = sum_j a[i, j] * b[j, k]
    return (a[..., :, :, None] * b[..., None, :, :]).sum(dim=-2)


@fp32_no_autocast
def rot_vec_mul(rot: Tensor, vec: Tensor) -> Tensor:
    """Rotate vectors: ``rot [*, 3, 3]`` times ``vec [*, 3]`` -> ``[*, 3]`` (broadcasting)."""
    _check_last_dims(rot, (3, 3), "rot")
    _check_last_dims(vec, (3,), "vec")
    return (rot * vec[..., None, :]).sum(dim=-1)


@fp32_no_autocast
def invert_rot_mat(rot: Tensor) -> Tensor:
    """Inverse of a rotation ``[*, 3, 3]``, i.e. its transpose."""
    _check_last_dims(rot, (3, 3), "rot")
    return rot.transpose(-1, -2)


# ----------------------------------------------------------------------------------------
# Quaternions (w, x, y, z)
# ----------------------------------------------------------------------------------------


@fp32_no_autocast
def quat_to_rot(quat: Tensor) -> Tensor:
    """Rotation matrix ``[*, 3, 3]`` of a unit quaternion ``[*, 4]`` (w, x, y, z).

    Uses the homogeneous form (diagonal ``w^2 + x^2 - y^2 - z^2`` etc.), as AF2 does; the
    quaternion must already be normalised.
    """
    _check_last_dims(quat, (4,), "quat")
    w, x, y, z = quat.unbind(dim=-1)
    ww, xx, yy, zz = w * w, x * x, y * y, z * z
    wx, wy, wz = w * x, w * y, w * z
    xy, xz, yz = x * y, x * z, y * z
    rows = [
        torch.stack([ww + xx - yy - zz, 2 * (xy - wz), 2 * (xz + wy)], dim=-1),
        torch.stack([2 * (xy + wz), ww - xx + yy - zz, 2 * (yz - wx)], dim=-1),
        torch.stack([2 * (xz - wy), 2 * (yz + wx), ww - xx - yy + zz], dim=-1),
    ]
    return torch.stack(rows, dim=-2)


@fp32_no_autocast
def rot_to_quat(rot: Tensor) -> Tensor:
    """Unit quaternion ``[*, 4]`` (w, x, y, z) with ``w >= 0`` for a rotation ``[*, 3, 3]``.

    Shepperd's method: for a rotation, ``4 q_i q`` can be read off the matrix for each pivot
    component ``i``; we divide by ``4 |q_i|`` for the largest ``|q_i|`` (always >= 1/2), so
    the result is accurate for every rotation, including those near 180 degrees.
    """
    _check_last_dims(rot, (3, 3), "rot")
    xx, xy, xz, yx, yy, yz, zx, zy, zz = rot.reshape(rot.shape[:-2] + (9,)).unbind(dim=-1)
    # 4 q_i^2 for i = w, x, y, z.
    four_sq = torch.stack(
        [1 + xx + yy + zz, 1 + xx - yy - zz, 1 - xx + yy - zz, 1 - xx - yy + zz], dim=-1
    )
    # Row i holds 4 q_i * (w, x, y, z).
    scaled = torch.stack(
        [
            torch.stack([four_sq[..., 0], zy - yz, xz - zx, yx - xy], dim=-1),
            torch.stack([zy - yz, four_sq[..., 1], xy + yx, xz + zx], dim=-1),
            torch.stack([xz - zx, xy + yx, four_sq[..., 2], yz + zy], dim=-1),
            torch.stack([yx - xy, xz + zx, yz + zy, four_sq[..., 3]], dim=-1),
        ],
        dim=-2,
    )
    # 4 |q_i|; the clamp only touches rows that are never selected (the pivot has
    # 4 q_i^2 >= 1) and keeps their gradients finite.
    denom = 2.0 * torch.sqrt(four_sq.clamp(min=0.1))
    candidates = scaled / denom[..., None]
    pivot = four_sq.argmax(dim=-1)
    index = pivot[..., None, None].expand(pivot.shape + (1, 4))
    quat = candidates.gather(dim=-2, index=index).squeeze(-2)
    quat = quat / torch.linalg.vector_norm(quat, dim=-1, keepdim=True)
    sign = torch.where(quat[..., :1] < 0, -1.0, 1.0).to(quat.dtype)
    return quat * sign


@fp32_no_autocast
def quat_multiply(quat1: Tensor, quat2: Tensor) -> Tensor:
    """Hamilton product ``quat1 * quat2`` of quaternions ``[*, 4]`` (batch dims broadcast)."""
    _check_last_dims(quat1, (4,), "quat1")
    _check_last_dims(quat2, (4,), "quat2")
    w1, x1, y1, z1 = quat1.unbind(dim=-1)
    w2, x2, y2, z2 = quat2.unbind(dim=-1)
    return torch.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        dim=-1,
    )


@fp32_no_autocast
def quat_multiply_by_vec(quat: Tensor, vec: Tensor) -> Tensor:
    """Product ``quat * (0, vec)`` of a quaternion ``[*, 4]`` and a pure quaternion ``[*, 3]``."""
    _check_last_dims(vec, (3,), "vec")
    pure = torch.cat([torch.zeros_like(vec[..., :1]), vec], dim=-1)
    return quat_multiply(quat, pure)


def _normalize_quat(quat: Tensor) -> Tensor:
    return quat / torch.linalg.vector_norm(quat, dim=-1, keepdim=True)


def _batch_dim(dim: int, ndim: int, name: str = "dim") -> int:
    """Resolve a (possibly negative) batch dimension against ``ndim`` batch dims."""
    if not -ndim <= dim < ndim:
        raise ValueError(f"{name}={dim} is out of range for a Rigid with {ndim} batch dims")
    return dim % ndim


# ----------------------------------------------------------------------------------------
# Rigid
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Rigid:
    """A batch of rigid transforms ``x -> rot @ x + trans``.

    Attributes:
        rot: rotation matrices ``[*, 3, 3]``.
        trans: translations ``[*, 3]``.

    Half-precision inputs are promoted to fp32 on construction. The value is immutable;
    every method returns a new ``Rigid``.
    """

    rot: Tensor
    trans: Tensor

    def __post_init__(self) -> None:
        _check_last_dims(self.rot, (3, 3), "Rigid.rot")
        _check_last_dims(self.trans, (3,), "Rigid.trans")
        if self.rot.shape[:-2] != self.trans.shape[:-1]:
            raise ValueError(
                f"Rigid.rot {list(self.rot.shape)} and Rigid.trans {list(self.trans.shape)} "
                "must share the batch shape; expand or broadcast them first"
            )
        if self.rot.device != self.trans.device:
            raise ValueError(f"Rigid.rot is on {self.rot.device} but Rigid.trans is on "
                             f"{self.trans.device}; move both to one device")
        rot, trans = to_fp32(self.rot), to_fp32(self.trans)
        if rot.dtype != trans.dtype:
            rot, trans = rot.double(), trans.double()
        object.__setattr__(self, "rot", rot)
        object.__setattr__(self, "trans", trans)

    # -- basic properties ------------------------------------------------------------

    @property
    def shape(self) -> torch.Size:
        """Batch shape ``*``."""
        return self.trans.shape[:-1]

    @property
    def device(self) -> torch.device:
        return self.trans.device

    @property
    def dtype(self) -> torch.dtype:
        return self.trans.dtype

    @property
    def requires_grad(self) -> bool:
        return self.rot.requires_grad or self.trans.requires_grad

    def __repr__(self) -> str:
        return f"Rigid(shape={list(self.shape)}, dtype={self.dtype}, device={self.device})"

    # -- constructors ----------------------------------------------------------------

    @staticmethod
    def identity(
        batch_shape: Sequence[int] | torch.Size | int,
        device: torch.device | str | None = None,
        requires_grad: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> Rigid:
        """Identity transforms of batch shape ``batch_shape``."""
        if isinstance(batch_shape, int):
            batch_shape = (batch_shape,)
        batch_shape = tuple(batch_shape)
        rot = torch.eye(3, dtype=dtype, device=device).expand(batch_shape + (3, 3)).clone()
        trans = torch.zeros(batch_shape + (3,), dtype=dtype, device=device)
        rot.requires_grad_(requires_grad)
        trans.requires_grad_(requires_grad)
        return Rigid(rot, trans)

    @staticmethod
    @fp32_no_autocast
    def from_tensor_4x4(m: Tensor) -> Rigid:
        """From homogeneous matrices ``[*, 4, 4]`` (rotation top-left, translation in column 3)."""
        _check_last_dims(m, (4, 4), "m")
        return Rigid(m[..., :3, :3], m[..., :3, 3])

    @staticmethod
    @fp32_no_autocast
    def from_quaternion(quat: Tensor, trans: Tensor, normalize: bool = True) -> Rigid:
        """From quaternions ``[*, 4]`` (w, x, y, z) and translations ``[*, 3]``.

        With ``normalize=False`` the quaternion must already have unit norm.
        """
        _check_last_dims(quat, (4,), "quat")
        if normalize:
            quat = _normalize_quat(quat)
        return Rigid(quat_to_rot(quat), trans)

    @staticmethod
    @fp32_no_autocast
    def from_tensor_7(t: Tensor, normalize_quat: bool = True) -> Rigid:
        """From AF2's 7-vector affine layout ``[*, 7]`` = quaternion (4) + translation (3)."""
        _check_last_dims(t, (7,), "t")
        return Rigid.from_quaternion(t[..., :4], t[..., 4:], normalize=normalize_quat)

    @staticmethod
    @fp32_no_autocast
    def from_3_points(
        p_neg_x_axis: Tensor, origin: Tensor, p_xy_plane: Tensor, eps: float = 1e-8
    ) -> Rigid:
        """Suppl. Alg. 21 (Jumper et al. 2021): frame from three points by Gram-Schmidt.

        The frame is centred on ``origin``; its x axis points from ``p_neg_x_axis`` to
        ``origin`` and ``p_xy_plane`` lies in its xy plane (positive y). For backbone frames:
        ``(N, CA, C)``. ``eps`` is added under the square root of each norm, as in AF2.

        Args:
            p_neg_x_axis, origin, p_xy_plane: points ``[*, 3]`` (batch dims broadcast).
        Returns:
            ``Rigid`` of the broadcast batch shape.
        """
        for name, p in (("p_neg_x_axis", p_neg_x_axis), ("origin", origin),
                        ("p_xy_plane", p_xy_plane)):
            _check_last_dims(p, (3,), name)
        v0 = origin - p_neg_x_axis
        v1 = p_xy_plane - origin
        e0 = v0 / torch.sqrt((v0 * v0).sum(dim=-1, keepdim=True) + eps)
        v1 = v1 - (v1 * e0).sum(dim=-1, keepdim=True) * e0
        e1 = v1 / torch.sqrt((v1 * v1).sum(dim=-1, keepdim=True) + eps)
        e2 = torch.linalg.cross(e0, e1, dim=-1)
        rot = torch.stack([e0, e1, e2], dim=-1)  # basis vectors are the columns
        trans = origin.expand(rot.shape[:-1])
        return Rigid(rot, trans)

    # -- conversions -----------------------------------------------------------------

    @fp32_no_autocast
    def to_tensor_4x4(self) -> Tensor:
        """Homogeneous matrices ``[*, 4, 4]``."""
        top = torch.cat([self.rot, self.trans[..., None]], dim=-1)
        bottom = torch.zeros_like(top[..., :1, :])
        bottom[..., 0, 3] = 1.0
        return torch.cat([top, bottom], dim=-2)

    @fp32_no_autocast
    def to_quaternion(self) -> Tensor:
        """Unit quaternions ``[*, 4]`` (w, x, y, z), sign chosen so that ``w >= 0``."""
        return rot_to_quat(self.rot)

    @fp32_no_autocast
    def to_tensor_7(self) -> Tensor:
        """AF2's 7-vector affine layout ``[*, 7]``: quaternion (``w >= 0``) + translation."""
        return torch.cat([self.to_quaternion(), self.trans], dim=-1)

    # -- algebra ---------------------------------------------------------------------

    @fp32_no_autocast
    def compose(self, other: Rigid) -> Rigid:
        """``self ∘ other``: apply ``other`` first, then ``self`` (batch dims broadcast)."""
        if not isinstance(other, Rigid):
            raise TypeError(f"compose expects a Rigid, got {type(other).__name__}")
        rot = rot_matmul(self.rot, other.rot)
        trans = rot_vec_mul(self.rot, other.trans) + self.trans
        return Rigid(rot, trans)

    @fp32_no_autocast
    def invert(self) -> Rigid:
        """Inverse transform ``x -> rot^T (x - trans)``."""
        rot_inv = invert_rot_mat(self.rot)
        return Rigid(rot_inv, -rot_vec_mul(rot_inv, self.trans))

    @fp32_no_autocast
    def apply(self, points: Tensor) -> Tensor:
        """``rot @ p + trans`` for points ``[*, 3]`` (batch dims broadcast with the frame's).

        To map ``[N_res, N_pts, 3]`` points with ``[N_res]`` frames use
        ``frames[..., None].apply(points)``.
        """
        _check_last_dims(points, (3,), "points")
        return rot_vec_mul(self.rot, points) + self.trans

    @fp32_no_autocast
    def invert_apply(self, points: Tensor) -> Tensor:
        """``rot^T (p - trans)``: global points ``[*, 3]`` into local coordinates."""
        _check_last_dims(points, (3,), "points")
        return rot_vec_mul(invert_rot_mat(self.rot), points - self.trans)

    @fp32_no_autocast
    def compose_q_update_vec(self, update: Tensor) -> Rigid:
        """Suppl. Alg. 23 (Jumper et al. 2021) lines 2-3: apply a backbone update.

        ``update [*, 6]`` = ``(b, c, d, t_x, t_y, t_z)``: the rotation update is the quaternion
        ``(1, b, c, d)`` normalised, the translation update ``t`` is in the local frame. The
        update acts first: ``T_new = T ∘ T_update`` (AF2's ``QuatAffine.pre_compose``).
        """
        _check_last_dims(update, (6,), "update")
        q_update = torch.cat([torch.ones_like(update[..., :1]), update[..., :3]], dim=-1)
        rot_update = quat_to_rot(_normalize_quat(q_update))
        rot = rot_matmul(self.rot, rot_update)
        trans = self.trans + rot_vec_mul(self.rot, update[..., 3:])
        return Rigid(rot, trans)

    def stop_rot_gradient(self) -> Rigid:
        """Same transform with the rotation detached (AF2 stops rotation gradients between
        structure-module layers); translation gradients still flow."""
        return Rigid(self.rot.detach(), self.trans)

    @fp32_no_autocast
    def scale_translation(self, factor: float | Tensor) -> Rigid:
        """Same rotation, translation multiplied by ``factor`` (float or broadcastable tensor)."""
        return Rigid(self.rot, self.trans * factor)

    # -- tensor-like manipulation over batch dims ------------------------------------

    def __getitem__(self, index: BatchIndex) -> Rigid:
        """Index over the batch dims only, e.g. ``frames[:, 0]`` or ``frames[mask]``."""
        idx = index if isinstance(index, tuple) else (index,)
        full = slice(None)
        return Rigid(self.rot[idx + (full, full)], self.trans[idx + (full,)])

    def unsqueeze(self, dim: int) -> Rigid:
        """Insert a batch dim of size 1 at ``dim`` (negative counts from the batch end)."""
        ndim = len(self.shape)
        if not -(ndim + 1) <= dim <= ndim:
            raise ValueError(f"unsqueeze dim={dim} is out of range for batch shape "
                             f"{list(self.shape)}")
        dim = dim % (ndim + 1)
        return Rigid(self.rot.unsqueeze(dim), self.trans.unsqueeze(dim))

    def reshape(self, *shape: int | Sequence[int]) -> Rigid:
        """Reshape the batch dims to ``shape`` (``-1`` allowed)."""
        new = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
        return Rigid(self.rot.reshape(new + (3, 3)), self.trans.reshape(new + (3,)))

    def view(self, *shape: int | Sequence[int]) -> Rigid:
        """Like ``reshape`` but with ``Tensor.view`` (no copy; needs compatible strides)."""
        new = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
        return Rigid(self.rot.view(new + (3, 3)), self.trans.view(new + (3,)))

    def expand(self, *shape: int | Sequence[int]) -> Rigid:
        """Broadcast the batch dims to ``shape``."""
        new = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
        return Rigid(self.rot.expand(new + (3, 3)), self.trans.expand(new + (3,)))

    @staticmethod
    def cat(rigids: Sequence[Rigid], dim: int) -> Rigid:
        """Concatenate along batch dim ``dim``."""
        if len(rigids) == 0:
            raise ValueError("Rigid.cat needs at least one Rigid")
        d = _batch_dim(dim, len(rigids[0].shape))
        return Rigid(torch.cat([r.rot for r in rigids], dim=d),
                     torch.cat([r.trans for r in rigids], dim=d))

    @staticmethod
    def stack(rigids: Sequence[Rigid], dim: int) -> Rigid:
        """Stack along a new batch dim ``dim``."""
        if len(rigids) == 0:
            raise ValueError("Rigid.stack needs at least one Rigid")
        ndim = len(rigids[0].shape)
        if not -(ndim + 1) <= dim <= ndim:
            raise ValueError(f"stack dim={dim} is out of range for {ndim} batch dims")
        d = dim % (ndim + 1)
        return Rigid(torch.stack([r.rot for r in rigids], dim=d),
                     torch.stack([r.trans for r in rigids], dim=d))

    def map_tensor_fn(self, fn: Callable[[Tensor], Tensor]) -> Rigid:
        """Apply ``fn`` to each of the 12 components (shape ``[*]``) separately.

        ``fn`` maps a batch-shaped tensor to a new batch shape, e.g.
        ``lambda x: (x * mask).sum(-1)``; it must not touch the component layout.
        """
        rot_c = self.rot.reshape(self.shape + (9,)).unbind(dim=-1)
        trans_c = self.trans.unbind(dim=-1)
        rot = torch.stack([fn(c) for c in rot_c], dim=-1)
        trans = torch.stack([fn(c) for c in trans_c], dim=-1)
        return Rigid(rot.reshape(rot.shape[:-1] + (3, 3)), trans)

    def to(self, *args, **kwargs) -> Rigid:
        """Move/cast like ``Tensor.to``; only fp32 and fp64 dtypes are allowed."""
        rot, trans = self.rot.to(*args, **kwargs), self.trans.to(*args, **kwargs)
        if rot.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"Rigid keeps geometry in fp32 or fp64, not {rot.dtype}; cast "
                             "the results (e.g. rigid.apply(x).to(dtype)) instead")
        return Rigid(rot, trans)

    def cuda(self, device: int | torch.device | None = None) -> Rigid:
        return Rigid(self.rot.cuda(device), self.trans.cuda(device))

    def cpu(self) -> Rigid:
        return Rigid(self.rot.cpu(), self.trans.cpu())

    def detach(self) -> Rigid:
        return Rigid(self.rot.detach(), self.trans.detach())

    def clone(self) -> Rigid:
        return Rigid(self.rot.clone(), self.trans.clone())
