"""Geometry shared by the model, the losses and the data transforms (always fp32)."""
from uni_fold.geometry.precision import autocast_disabled, fp32_no_autocast, to_fp32
from uni_fold.geometry.rigid import (
    Rigid,
    invert_rot_mat,
    quat_multiply,
    quat_multiply_by_vec,
    quat_to_rot,
    rot_matmul,
    rot_to_quat,
    rot_vec_mul,
)

__all__ = [
    "Rigid",
    "autocast_disabled",
    "fp32_no_autocast",
    "invert_rot_mat",
    "quat_multiply",
    "quat_multiply_by_vec",
    "quat_to_rot",
    "rot_matmul",
    "rot_to_quat",
    "rot_vec_mul",
    "to_fp32",
]
