"""Inputs for the loss parity tests, built with the AF2 reference only, and the reference's
losses run live.

* :func:`load_chain` reads a real structure from ../shared/data (first model, one chain);
* :func:`reference_ground_truth` derives AF2's ground-truth features from it with the
  reference's own functions (``all_atom``, ``data_transforms`` on the NumPy backend,
  ``quat_affine``), so our losses and the reference's see identical numpy inputs;
* :func:`perturbed_prediction` makes a plausible structure-module output: true backbone
  frames turned and shifted by noise that shrinks over the layers (some residues far
  beyond the FAPE clamp), noisy torsions, and side chains built from them by the
  reference's Alg. 24;
* ``reference_*`` run the reference's loss code (haiku modules inside ``hk.transform``).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Cheapest XLA compile settings (small programs; fp32 results unchanged), as reference_utils.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    ).strip()

import haiku as hk  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from alphafold.model import all_atom as af_all_atom  # noqa: E402
from alphafold.model import config as af_config  # noqa: E402
from alphafold.model import folding, modules, quat_affine, r3  # noqa: E402
from alphafold.model.tf import data_transforms as af_dt  # noqa: E402

from data_pipeline import protein  # noqa: E402
from tests.shared import SHARED_DATA  # noqa: E402

STRUCTURES = SHARED_DATA / "structures"


@functools.cache
def _read(path: Path, chain: str | None) -> protein.Protein:
    return protein.from_file(path, chain)


def load_chain(name: str, chain: str | None = None, drop_residues: tuple[int, ...] = ()
               ) -> dict[str, np.ndarray]:
    """``aatype [N]`` int32, ``all_atom_positions [N, 37, 3]`` float32, ``all_atom_mask
    [N, 37]`` float32 and ``residue_index [N]`` of one chain of ``structures/*/<name>.*``;
    ``drop_residues`` are removed (a chain break)."""
    path = next(STRUCTURES.glob(f"*/{name}.*"))
    prot = _read(path, chain)
    keep = np.setdiff1d(np.arange(len(prot.aatype)), np.asarray(drop_residues, dtype=int))
    return {
        "aatype": prot.aatype[keep].astype(np.int32),
        "all_atom_positions": prot.atom_positions[keep].astype(np.float32),
        "all_atom_mask": prot.atom_mask[keep].astype(np.float32),
        "residue_index": prot.residue_index[keep].astype(np.int32),
    }


def _np(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


# Reference functions, jit-compiled once per shape (op-by-op dispatch is slower on the CPU).
_ref_atom37_to_frames = jax.jit(af_all_atom.atom37_to_frames)
_ref_torsion_angles = jax.jit(af_all_atom.atom37_to_torsion_angles)


@jax.jit
def _ref_build_side_chains(aatype, traj, sin_cos):
    """Alg. 24 by the reference: flat12 group frames ``[N, 8, 12]`` and atom14 ``[N, 14, 3]``."""
    backbone = r3.rigids_from_quataffine(quat_affine.QuatAffine.from_tensor(traj))
    frames = af_all_atom.torsion_angles_to_frames(aatype, backbone, sin_cos)
    atoms = af_all_atom.frames_and_literature_positions_to_atom14_pos(aatype, frames)
    return r3.rigids_to_tensor_flat12(frames), r3.vecs_to_tensor(atoms)


def reference_ground_truth(aatype: np.ndarray, pos: np.ndarray, mask: np.ndarray
                           ) -> dict[str, np.ndarray]:
    """AF2's ground-truth features of one chain, by the reference's functions."""
    feats = {k: np.asarray(v) for k, v in af_dt.make_atom14_masks({"aatype": aatype}).items()
             if k != "aatype"}
    exists = np.asarray(af_all_atom.atom37_to_atom14(mask, feats))
    atom14 = np.asarray(af_all_atom.atom37_to_atom14(pos, feats)) * exists[..., None]
    renaming = af_all_atom.RENAMING_MATRICES[aatype]  # [N, 14, 14]
    feats["atom14_gt_positions"] = atom14
    feats["atom14_gt_exists"] = exists
    feats["atom14_alt_gt_positions"] = np.sum(atom14[:, :, None, :] * renaming[..., None], 1)
    feats["atom14_alt_gt_exists"] = np.sum(exists[:, :, None] * renaming, 1)
    feats["atom14_atom_is_ambiguous"] = 1.0 - np.diagonal(renaming, axis1=-2, axis2=-1)

    frames = _np(_ref_atom37_to_frames(aatype, pos, mask))
    feats.update(frames)
    backbone = r3.rigids_from_tensor_flat12(frames["rigidgroups_gt_frames"][:, 0])
    rot = [[backbone.rot.xx, backbone.rot.xy, backbone.rot.xz],
           [backbone.rot.yx, backbone.rot.yy, backbone.rot.yz],
           [backbone.rot.zx, backbone.rot.zy, backbone.rot.zz]]
    quat = np.asarray(quat_affine.rot_to_quat(rot))
    feats["backbone_affine_tensor"] = np.concatenate(
        [quat, np.stack(list(backbone.trans), -1)], -1).astype(np.float32)
    feats["backbone_affine_mask"] = frames["rigidgroups_gt_exists"][:, 0]

    tors = _np(_ref_torsion_angles(aatype[None], pos[None], mask[None]))
    sin_cos = tors["torsion_angles_sin_cos"][0, :, 3:]
    feats["chi_angles"] = np.arctan2(sin_cos[..., 0], sin_cos[..., 1]).astype(np.float32)
    feats["chi_mask"] = tors["torsion_angles_mask"][0, :, 3:].astype(np.float32)
    feats["torsion_angles_sin_cos"] = tors["torsion_angles_sin_cos"][0]
    beta, beta_mask = af_dt.pseudo_beta_fn(aatype, pos, mask)
    feats["pseudo_beta"] = np.asarray(beta, np.float32)
    feats["pseudo_beta_mask"] = np.asarray(beta_mask, np.float32)
    feats["aatype"] = aatype
    feats["all_atom_positions"] = pos
    feats["all_atom_mask"] = mask
    feats["seq_mask"] = np.ones(len(aatype), np.float32)
    return {k: np.array(v, dtype=np.float32 if v.dtype == np.float64 else v.dtype)
            for k, v in feats.items()}


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w1, x1, y1, z1 = np.moveaxis(a, -1, 0)
    w2, x2, y2, z2 = np.moveaxis(b, -1, 0)
    return np.stack([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
                     w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
                     w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2], -1)


def flat12_to_4x4(flat: np.ndarray) -> np.ndarray:
    out = np.zeros(flat.shape[:-1] + (4, 4), np.float32)
    out[..., :3, :3] = flat[..., :9].reshape(flat.shape[:-1] + (3, 3))
    out[..., :3, 3] = flat[..., 9:]
    out[..., 3, 3] = 1.0
    return out


def perturbed_prediction(gt: dict[str, np.ndarray], rng: np.random.Generator,
                         num_layers: int = 3, shift: float = 3.0, far: int = 3
                         ) -> dict[str, np.ndarray]:
    """A structure-module-like output near ``gt`` (numpy, float32).

    Returns ``traj [L, N, 7]``, ``angles_sin_cos`` / ``unnormalized_angles_sin_cos
    [L, N, 7, 2]``, ``frames_flat12 [L, N, 8, 12]``, ``frames [L, N, 8, 4, 4]``,
    ``atom_pos [L, N, 14, 3]`` and ``final_atom14_positions [N, 14, 3]``; in every layer
    ``far`` residues are moved 12-20 Å away (beyond the 10 Å FAPE clamp).
    """
    aatype = gt["aatype"]
    n = len(aatype)
    out = {k: [] for k in ("traj", "angles_sin_cos", "unnormalized_angles_sin_cos",
                           "frames_flat12", "atom_pos")}
    for layer in range(num_layers):
        scale = (num_layers - layer) / num_layers
        noise = np.concatenate([np.ones((n, 1)), rng.normal(0, 0.2 * scale, (n, 3))], -1)
        quat = _quat_mul(gt["backbone_affine_tensor"][:, :4], noise)
        quat /= np.linalg.norm(quat, axis=-1, keepdims=True)
        trans = gt["backbone_affine_tensor"][:, 4:] + rng.normal(0, shift * scale, (n, 3))
        moved = rng.choice(n, size=far, replace=False)
        direction = rng.normal(size=(far, 3))
        direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
        trans[moved] += direction * rng.uniform(12, 20, (far, 1))
        traj = np.concatenate([quat, trans], -1).astype(np.float32)

        angles = np.arctan2(gt["torsion_angles_sin_cos"][..., 0],
                            gt["torsion_angles_sin_cos"][..., 1])
        angles = angles + rng.normal(0, 0.6 * scale + 0.05, angles.shape)
        sin_cos = np.stack([np.sin(angles), np.cos(angles)], -1).astype(np.float32)
        unnormalized = sin_cos * rng.uniform(0.5, 1.5, sin_cos.shape[:-1] + (1,))

        frames, atoms = _ref_build_side_chains(aatype, traj, sin_cos)
        out["traj"].append(traj)
        out["angles_sin_cos"].append(sin_cos)
        out["unnormalized_angles_sin_cos"].append(unnormalized.astype(np.float32))
        out["frames_flat12"].append(np.asarray(frames))
        out["atom_pos"].append(np.asarray(atoms))
    pred = {k: np.stack(v).astype(np.float32) for k, v in out.items()}
    pred["frames"] = flat12_to_4x4(pred["frames_flat12"])
    pred["final_atom14_positions"] = pred["atom_pos"][-1]
    return pred


def to_torch(tree):
    """numpy (nested dicts) -> torch tensors; int32 becomes int64."""
    if isinstance(tree, dict):
        return {k: to_torch(v) for k, v in tree.items()}
    arr = np.asarray(tree)
    if arr.dtype == np.int32:
        arr = arr.astype(np.int64)
    return torch.from_numpy(np.array(arr, copy=True))


def our_outputs(pred: dict[str, np.ndarray], aatype: np.ndarray) -> dict:
    """The prediction in our model's output layout (``sm`` and ``final_*``)."""
    from uni_fold.geometry import all_atom

    sm = {k: to_torch(pred[k]) for k in ("traj", "angles_sin_cos",
                                         "unnormalized_angles_sin_cos", "atom_pos", "frames")}
    sm["affine"] = sm.pop("traj")
    final14 = sm["atom_pos"][-1]
    return {
        "sm": sm,
        "final_atom14_positions": final14,
        "final_atom_positions": all_atom.atom14_to_atom37(final14, to_torch(aatype)),
        "final_affines": sm["affine"][-1],
    }


# ----------------------------------------------------------------------------------------
# The reference's losses


def reference_config(name: str = "model_1_ptm"):
    cfg = af_config.model_config(name)
    cfg.model.global_config.bfloat16 = False
    return cfg


def _module_loss_fn(make_module):
    """A jitted ``(value, batch) -> make_module().loss(value, batch)`` (haiku, no params)."""
    def fn(value, batch):
        return make_module().loss(value, batch)
    transformed = hk.transform(fn)
    return jax.jit(lambda value, batch: transformed.apply({}, None, value, batch))


def reference_value(pred: dict[str, np.ndarray]) -> dict:
    """The prediction in AF2's structure-module ``value`` layout."""
    flat = pred["frames_flat12"]
    frames = r3.rigids_from_tensor_flat12(flat)
    atoms = r3.vecs_from_tensor(pred["atom_pos"])
    return {
        "traj": pred["traj"],
        "sidechains": {"frames": frames, "atom_pos": atoms,
                       "angles_sin_cos": pred["angles_sin_cos"],
                       "unnormalized_angles_sin_cos": pred["unnormalized_angles_sin_cos"]},
        "final_atom14_positions": pred["final_atom14_positions"],
    }


@functools.cache
def _structure_module_loss_fn(name: str):
    cfg = reference_config(name)
    sm_cfg, gc = cfg.model.heads.structure_module, cfg.model.global_config
    return _module_loss_fn(lambda: folding.StructureModule(sm_cfg, gc))


def reference_structure_module_loss(pred: dict, batch: dict, name: str = "model_1_ptm") -> dict:
    """AF2's ``StructureModule.loss`` (with its in-graph violation metrics) on ``pred``."""
    batch = {k: v for k, v in batch.items() if k != "torsion_angles_sin_cos"}
    return _np(_structure_module_loss_fn(name)(reference_value(pred), batch))


_HEADS = {
    "distogram": modules.DistogramHead,
    "masked_msa": modules.MaskedMsaHead,
    "predicted_lddt": modules.PredictedLDDTHead,
    "experimentally_resolved": modules.ExperimentallyResolvedHead,
    "predicted_aligned_error": modules.PredictedAlignedErrorHead,
}


@functools.cache
def _head_loss_fn(head: str, name: str):
    cfg = reference_config(name)
    head_cfg, gc = cfg.model.heads[head], cfg.model.global_config
    return _module_loss_fn(lambda: _HEADS[head](head_cfg, gc))


def reference_head_loss(head: str, value: dict, batch: dict, name: str = "model_1_ptm"
                        ) -> np.ndarray:
    """The loss of AF2 head ``head`` (``value`` in the layout that head's ``loss`` reads)."""
    return np.asarray(_head_loss_fn(head, name)(value, batch)["loss"])
