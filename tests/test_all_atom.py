"""Tests for uni_fold.geometry.all_atom.

* parity with AlphaFold 2's ``alphafold.model.all_atom`` (JAX, run live on the same numpy
  inputs) on random and real inputs;
* on every real structure in ``tests/shared.py:STRUCTURE_FILES``: torsions from the deposited
  atoms -> ideal-geometry rebuild from the deposited backbone frames -> small all-atom RMSD,
  psi and chi1-4 reproduced, backbone frames reproduced, rebuild is idempotent;
* batching, fp32 under bf16 autocast, gradients, input errors.
"""
from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from alphafold.model import all_atom as af_all_atom
from alphafold.model import all_atom_multimer as af_all_atom_multimer
from alphafold.model import r3

from data_pipeline import protein
from data_pipeline import residue_constants as rc
from tests.shared import STRUCTURE_FILES
from uni_fold.geometry import Rigid
from uni_fold.geometry import all_atom as aa

ANGLE_TOL = 1e-5  # sin/cos and rotation entries
POS_TOL = 1e-4  # Angstrom
ROUND_TRIP_TOL = 1e-4  # rad, torsions of the rebuilt structure
UNK = rc.restype_num

# The reference functions, jit-compiled once per shape (op-by-op dispatch is several times
# slower on the CPU; XLA's CPU backend does not reassociate float math).
ref_torsion_angles = jax.jit(
    af_all_atom.atom37_to_torsion_angles, static_argnames="placeholder_for_undefined"
)
ref_atom37_to_frames = jax.jit(af_all_atom.atom37_to_frames)
ref_torsion_angles_to_frames = jax.jit(af_all_atom.torsion_angles_to_frames)
ref_atom14_positions = jax.jit(af_all_atom.frames_and_literature_positions_to_atom14_pos)


# ------------------------------------------------------------------------------------
# Real structures, read with data_pipeline.protein (first model, protein chains only)
# ------------------------------------------------------------------------------------


@functools.cache
def load_structure(path: Path) -> dict[str, np.ndarray]:
    """``aatype [N]``, ``all_atom_positions [N, 37, 3]``, ``all_atom_mask [N, 37]``,
    ``chain [N]`` and ``resnum [N]`` of all protein chains of ``path``."""
    prot = protein.from_file(path)
    return {
        "aatype": prot.aatype.astype(np.int64),
        "all_atom_positions": prot.atom_positions,
        "all_atom_mask": prot.atom_mask,
        "chain": prot.chain_index,
        "resnum": prot.residue_index,
    }


def _random_inputs(rng: np.random.Generator, shape=(2, 20)):
    aatype = rng.integers(0, UNK + 1, size=shape)
    aatype.flat[:UNK + 1] = np.arange(UNK + 1)  # every type at least once
    positions = (rng.normal(size=shape + (37, 3)) * 3.0).astype(np.float32)
    mask = (rng.random(shape + (37,)) < 0.8).astype(np.float32)
    return aatype, positions, mask


def _random_backbone(rng: np.random.Generator, n: int) -> Rigid:
    pts = torch.from_numpy((rng.normal(size=(3, n, 3)) * 5.0).astype(np.float32))
    return Rigid.from_3_points(pts[0], pts[1], pts[2])


def _random_sin_cos(rng: np.random.Generator, shape) -> torch.Tensor:
    angles = rng.uniform(-np.pi, np.pi, size=shape + (7,))
    return torch.from_numpy(np.stack([np.sin(angles), np.cos(angles)], -1).astype(np.float32))


def _max_diff(ours: torch.Tensor, ref) -> float:
    return float(np.abs(ours.detach().numpy() - np.asarray(ref)).max())


def _ref_rigids(r: Rigid) -> r3.Rigids:
    return r3.rigids_from_tensor_flat12(jnp.asarray(aa.rigid_to_flat12(r).numpy()))


def _angles(sin_cos: torch.Tensor) -> np.ndarray:
    return torch.atan2(sin_cos[..., 0], sin_cos[..., 1]).numpy()


def _angle_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    return np.abs(np.arctan2(np.sin(d), np.cos(d)))


# ------------------------------------------------------------------------------------
# Parity with the reference
# ------------------------------------------------------------------------------------


def test_make_atom14_masks_matches_reference():
    aatype = np.arange(UNK + 1)
    ours = aa.make_atom14_masks(torch.from_numpy(aatype))
    ref = {
        "atom14_atom_exists": af_all_atom_multimer.get_atom14_mask(aatype),
        "residx_atom14_to_atom37": af_all_atom_multimer.get_atom14_to_atom37_map(aatype),
        "residx_atom37_to_atom14": af_all_atom_multimer.get_atom37_to_atom14_map(aatype),
        "atom37_atom_exists": af_all_atom_multimer.get_atom37_mask(aatype),
    }
    assert set(ours) == set(ref)
    for key, value in ref.items():
        np.testing.assert_array_equal(ours[key].numpy(), np.asarray(value), err_msg=key)


@pytest.mark.parametrize("trailing", [(), (3,)])
def test_atom14_atom37_match_reference(trailing):
    rng = np.random.default_rng(1)
    aatype = rng.integers(0, UNK + 1, size=(2, 17))
    masks = aa.make_atom14_masks(torch.from_numpy(aatype))
    data14 = rng.normal(size=(2, 17, 14) + trailing).astype(np.float32)
    data37 = rng.normal(size=(2, 17, 37) + trailing).astype(np.float32)
    ours37 = aa.atom14_to_atom37(torch.from_numpy(data14), torch.from_numpy(aatype))
    ours14 = aa.atom37_to_atom14(torch.from_numpy(data37), torch.from_numpy(aatype))
    assert ours37.shape == (2, 17, 37) + trailing and ours14.shape == (2, 17, 14) + trailing
    for b in range(2):  # the reference takes one chain [N, ...] at a time
        batch = {k: jnp.asarray(v[b].numpy()) for k, v in masks.items()}
        ref37 = af_all_atom.atom14_to_atom37(jnp.asarray(data14[b]), batch)
        ref14 = af_all_atom.atom37_to_atom14(jnp.asarray(data37[b]), batch)
        np.testing.assert_array_equal(ours37[b].numpy(), np.asarray(ref37))
        np.testing.assert_array_equal(ours14[b].numpy(), np.asarray(ref14))
    # atom14 -> atom37 -> atom14 keeps every atom the residue type has.
    back = aa.atom37_to_atom14(ours37, torch.from_numpy(aatype))
    exists = masks["atom14_atom_exists"].reshape((2, 17, 14) + (1,) * len(trailing))
    np.testing.assert_array_equal(back.numpy(), data14 * exists.numpy())


def _torsion_parity(aatype, positions, mask, placeholder):
    ours = aa.atom37_to_torsion_angles(
        torch.from_numpy(aatype), torch.from_numpy(positions), torch.from_numpy(mask),
        placeholder_for_undefined=placeholder,
    )
    ref = ref_torsion_angles(
        jnp.asarray(aatype), jnp.asarray(positions), jnp.asarray(mask),
        placeholder_for_undefined=placeholder,
    )
    assert set(ours) == set(ref)
    # Residue 0 has no predecessor: both sides pad its "previous" CA and C with zeros at the
    # origin, so the masked omega/phi frame is built from nearly parallel vectors and its
    # value is float round-off. Everything else is compared, masked or not.
    compared = np.ones(aatype.shape + (7,), dtype=bool)
    if not placeholder:
        compared[..., 0, :2] = False
    for key in ref:
        assert ours[key].shape == ref[key].shape, key
        diff = np.abs(ours[key].numpy() - np.asarray(ref[key]))
        assert diff[compared].max() <= ANGLE_TOL, key


@pytest.mark.parametrize("placeholder", [False, True])
def test_torsion_angles_match_reference_random(placeholder):
    _torsion_parity(*_random_inputs(np.random.default_rng(2)), placeholder)


def _real_batch(name: str):
    s = load_structure(next(p for p in STRUCTURE_FILES if p.stem == name))
    return s["aatype"][None], s["all_atom_positions"][None], s["all_atom_mask"][None]


@pytest.mark.parametrize("placeholder", [False, True])
def test_torsion_angles_match_reference_real(placeholder):
    _torsion_parity(*_real_batch("1l2y"), placeholder)


@pytest.mark.parametrize("source", ["random", "real"])
def test_atom37_to_frames_matches_reference(source):
    if source == "random":
        aatype, positions, mask = _random_inputs(np.random.default_rng(3))
    else:
        aatype, positions, mask = _real_batch("1l2y")
    ours = aa.atom37_to_frames(
        torch.from_numpy(aatype), torch.from_numpy(positions), torch.from_numpy(mask)
    )
    ref = ref_atom37_to_frames(
        jnp.asarray(aatype), jnp.asarray(positions), jnp.asarray(mask)
    )
    assert set(ours) == set(ref)
    for key in ref:
        value = ours[key]
        if isinstance(value, Rigid):
            assert value.shape == aatype.shape + (8,)
            value = aa.rigid_to_flat12(value)
        assert value.shape == ref[key].shape, key
        assert _max_diff(value, ref[key]) <= ANGLE_TOL, key


@pytest.mark.parametrize("source", ["random", "real"])
def test_torsion_angles_to_frames_and_atom14_match_reference(source):
    rng = np.random.default_rng(4)
    if source == "random":
        aatype = rng.integers(0, UNK + 1, size=(2, 20))  # N as 1l2y's: one compile
        backbone = Rigid.stack([_random_backbone(rng, 20) for _ in range(2)], dim=0)
        sin_cos = _random_sin_cos(rng, (2, 20))
    else:
        aatype_np, positions, mask = _real_batch("1l2y")
        aatype = aatype_np
        backbone = aa.backbone_frames_from_atom37(torch.from_numpy(positions))
        sin_cos = aa.atom37_to_torsion_angles(
            torch.from_numpy(aatype), torch.from_numpy(positions), torch.from_numpy(mask),
            placeholder_for_undefined=True,
        )["torsion_angles_sin_cos"]
    frames = aa.torsion_angles_to_frames(torch.from_numpy(aatype), backbone, sin_cos)
    atom14 = aa.frames_to_atom14_positions(torch.from_numpy(aatype), frames)
    assert frames.shape == aatype.shape + (8,) and atom14.shape == aatype.shape + (14, 3)
    for b in range(aatype.shape[0]):
        ref_frames = ref_torsion_angles_to_frames(
            jnp.asarray(aatype[b]), _ref_rigids(backbone[b]), jnp.asarray(sin_cos[b].numpy())
        )
        ref_flat = r3.rigids_to_tensor_flat12(ref_frames)
        flat = aa.rigid_to_flat12(frames[b])
        assert _max_diff(flat[..., :9], ref_flat[..., :9]) <= ANGLE_TOL
        assert _max_diff(flat[..., 9:], ref_flat[..., 9:]) <= POS_TOL
        # Same frames in, so this compares frames_and_literature_positions_to_atom14_pos alone.
        ref_atom14 = ref_atom14_positions(
            jnp.asarray(aatype[b]), ref_frames
        )
        ours_atom14 = aa.frames_to_atom14_positions(
            torch.from_numpy(aatype[b]), aa.rigid_from_flat12(torch.from_numpy(np.array(ref_flat)))
        )
        assert _max_diff(ours_atom14, r3.vecs_to_tensor(ref_atom14)) <= POS_TOL
        assert _max_diff(atom14[b], r3.vecs_to_tensor(ref_atom14)) <= POS_TOL


# ------------------------------------------------------------------------------------
# Rebuild every real structure from its own torsions
# ------------------------------------------------------------------------------------


def rebuild_report(s: dict[str, np.ndarray]) -> dict[str, float]:
    """Rebuild ``s`` with ideal geometry and measure how it differs from the deposit."""
    aatype = torch.from_numpy(s["aatype"])
    positions = torch.from_numpy(s["all_atom_positions"])
    mask = torch.from_numpy(s["all_atom_mask"])
    rebuilt = aa.rebuild_from_torsions(aatype, positions, mask)
    placed = aa.rebuild_atom37_mask(aatype, mask)
    sq = ((rebuilt - positions) ** 2).sum(-1)
    rmsd = float(torch.sqrt((sq * placed).sum() / placed.sum()))

    standard = s["aatype"] < UNK  # the rebuild places no atoms for unknown residues
    exists = aa.make_atom14_masks(aatype)["atom37_atom_exists"]
    t_in = aa.atom37_to_torsion_angles(aatype, positions, mask)
    t_out = aa.atom37_to_torsion_angles(aatype, rebuilt, exists)
    err = _angle_error(
        _angles(t_in["torsion_angles_sin_cos"]), _angles(t_out["torsion_angles_sin_cos"])
    )
    defined = (t_in["torsion_angles_mask"].numpy() > 0) & standard[:, None]
    chi_err = err[:, 3:]
    pi_periodic = np.asarray(rc.chi_pi_periodic, dtype=bool)[s["aatype"]]
    chi_err = np.where(pi_periodic, np.minimum(chi_err, np.pi - chi_err), chi_err)

    # omega / phi only where the previous residue is the chain neighbour, peptide-bonded.
    pos = s["all_atom_positions"]
    c_n = np.linalg.norm(pos[1:, rc.atom_order["N"]] - pos[:-1, rc.atom_order["C"]], axis=-1)
    bonded = np.zeros(len(pos), bool)
    bonded[1:] = (s["chain"][1:] == s["chain"][:-1]) & (np.diff(s["resnum"]) == 1) & (c_n < 2.0)
    bonded &= standard & np.concatenate([[False], standard[:-1]])
    omega_err = err[:, 0][defined[:, 0] & bonded]
    phi_err = err[:, 1][defined[:, 1] & bonded]

    backbone_ok = (mask[:, :3].prod(-1) > 0).numpy() & standard
    f_in = aa.backbone_frames_from_atom37(positions)[torch.from_numpy(backbone_ok)]
    f_out = aa.backbone_frames_from_atom37(rebuilt)[torch.from_numpy(backbone_ok)]
    again = aa.rebuild_from_torsions(aatype, rebuilt, exists)
    again_err = ((again - rebuilt) ** 2).sum(-1).sqrt() * exists
    again_err = again_err * torch.from_numpy(backbone_ok)[:, None]
    return {
        "residues": int(len(s["aatype"])),
        "atoms": int(placed.sum()),
        "rmsd": rmsd,
        "max_atom_dev": float((sq * placed).max().sqrt()),
        "psi_err": float(err[:, 2][defined[:, 2]].max(initial=0.0)),
        "chi_err": float(chi_err[defined[:, 3:]].max(initial=0.0)),
        "chi_err_exact": float(err[:, 3:][defined[:, 3:]].max(initial=0.0)),
        "omega_median_deg": float(np.degrees(np.median(omega_err))) if omega_err.size else 0.0,
        "omega_max_deg": float(np.degrees(omega_err.max(initial=0.0))),
        "phi_median_deg": float(np.degrees(np.median(phi_err))) if phi_err.size else 0.0,
        "phi_max_deg": float(np.degrees(phi_err.max(initial=0.0))),
        "backbone_rot_err": float((f_in.rot - f_out.rot).abs().max()),
        "backbone_trans_err": float((f_in.trans - f_out.trans).abs().max()),
        "idempotence_err": float(again_err.max()),
    }


@pytest.mark.parametrize("path", STRUCTURE_FILES, ids=[p.stem for p in STRUCTURE_FILES])
def test_rebuild_real_structure(path):
    r = rebuild_report(load_structure(path))
    print(path.stem, r)
    assert r["atoms"] > 0
    # Ideal bond lengths and angles instead of the deposited ones; measured 0.03-0.42 A.
    assert r["rmsd"] < 0.5
    # psi and chi1-4 are what the rebuild places, so they come back (up to fp32 round-off).
    assert r["psi_err"] < ROUND_TRIP_TOL
    assert r["chi_err"] < ROUND_TRIP_TOL
    # The chi of a pi-periodic group is measured on the same atom name both times, so it
    # even comes back without the pi ambiguity.
    assert r["chi_err_exact"] < ROUND_TRIP_TOL
    # CA is kept, C stays on the CA->C ray and N in the N-CA-C half-plane: same frames.
    assert r["backbone_rot_err"] < 1e-4 and r["backbone_trans_err"] < 1e-3
    # omega and phi are NOT reproduced: N and the previous C move to ideal bond geometry
    # (N-CA-C angle, bond lengths), which turns the peptide plane by a few degrees.
    # A loose sanity bound on that drift (measured medians 0.2-4.7 deg, maxima <= 30 deg).
    assert r["omega_median_deg"] < 6.0 and r["omega_max_deg"] < 40.0
    assert r["phi_median_deg"] < 6.0 and r["phi_max_deg"] < 40.0
    # An ideal-geometry structure is its own rebuild.
    assert r["idempotence_err"] < 1e-3


def test_rebuild_mask_needs_every_torsion_a_group_hangs_on():
    s = load_structure(next(p for p in STRUCTURE_FILES if p.stem == "1l2y"))
    aatype = torch.from_numpy(s["aatype"])
    positions = torch.from_numpy(s["all_atom_positions"])
    mask = torch.from_numpy(s["all_atom_mask"]).clone()
    arg = int(np.flatnonzero(s["aatype"] == rc.restype_order["R"])[0])
    assert mask[arg].sum() == 11  # complete arginine
    mask[arg, rc.atom_order["CB"]] = 0.0  # chi1-3 lose an atom, chi4 (CG-CD-NE-CZ) does not
    torsion_mask = aa.atom37_to_torsion_angles(aatype, positions, mask)["torsion_angles_mask"]
    assert torsion_mask[arg, 3:].tolist() == [0.0, 0.0, 0.0, 1.0]
    placed = aa.rebuild_atom37_mask(aatype, mask)[arg]
    names = ("N", "CA", "C", "O", "CB", "CG", "CD", "NE", "CZ", "NH1", "NH2")
    expected = [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert [float(placed[rc.atom_order[n]]) for n in names] == expected
    # Those atoms really are off: chi1-3 fall back to the placeholder.
    rebuilt = aa.rebuild_from_torsions(aatype, positions, mask)[arg]
    dev = (rebuilt - positions[arg]).norm(dim=-1)
    assert dev[rc.atom_order["CZ"]] > 1.0 and dev[rc.atom_order["CA"]] < 1e-4


def _place(aatype: torch.Tensor, backbone: Rigid, sin_cos: torch.Tensor) -> torch.Tensor:
    frames = aa.torsion_angles_to_frames(aatype, backbone, sin_cos)
    return aa.frames_to_atom14_positions(aatype, frames)


def test_omega_and_phi_do_not_move_heavy_atoms():
    rng = np.random.default_rng(5)
    aatype = torch.from_numpy(rng.integers(0, UNK + 1, size=(11,)))
    backbone = _random_backbone(rng, 11)
    sin_cos = _random_sin_cos(rng, (11,))
    other = sin_cos.clone()
    other[:, :2] = _random_sin_cos(rng, (11,))[:, :2]
    a = _place(aatype, backbone, sin_cos)
    b = _place(aatype, backbone, other)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    changed = sin_cos.clone()
    changed[:, 2:] = _random_sin_cos(rng, (11,))[:, 2:]
    c = _place(aatype, backbone, changed)
    assert (a - c).abs().max() > 0.1  # psi / chi do move atoms


# ------------------------------------------------------------------------------------
# Batching, precision, gradients, errors
# ------------------------------------------------------------------------------------


def test_leading_dims_match_per_chain_results():
    inputs = _random_inputs(np.random.default_rng(6))
    aatype, positions, mask = (torch.from_numpy(x) for x in inputs)
    batched = aa.rebuild_from_torsions(aatype[None], positions[None], mask[None])[0]
    for b in range(aatype.shape[0]):
        single = aa.rebuild_from_torsions(aatype[b], positions[b], mask[b])
        torch.testing.assert_close(batched[b], single, rtol=0, atol=1e-5)


def test_bf16_autocast_still_fp32():
    aatype, positions, mask = (torch.from_numpy(x) for x in _real_batch("1l2y"))
    plain = aa.rebuild_from_torsions(aatype, positions, mask)
    plain_t = aa.atom37_to_torsion_angles(aatype, positions, mask)["torsion_angles_sin_cos"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = aa.rebuild_from_torsions(aatype, positions, mask)
        auto_t = aa.atom37_to_torsion_angles(aatype, positions, mask)["torsion_angles_sin_cos"]
        from_bf16 = aa.atom37_to_frames(aatype, positions.bfloat16(), mask)
    assert auto.dtype == auto_t.dtype == torch.float32
    assert from_bf16["rigidgroups_gt_frames"].dtype == torch.float32
    torch.testing.assert_close(auto, plain, rtol=0, atol=0)
    torch.testing.assert_close(auto_t, plain_t, rtol=0, atol=0)


def test_gradients_reach_angles_and_backbone():
    rng = np.random.default_rng(7)
    aatype = torch.from_numpy(rng.integers(0, UNK, size=(9,)))
    pts = torch.from_numpy((rng.normal(size=(3, 9, 3)) * 5.0).astype(np.float32)).requires_grad_()
    sin_cos = _random_sin_cos(rng, (9,)).requires_grad_()
    backbone = Rigid.from_3_points(pts[0], pts[1], pts[2])
    atom14 = _place(aatype, backbone, sin_cos)
    atom14.square().sum().backward()
    assert torch.isfinite(pts.grad).all() and pts.grad.abs().sum() > 0
    assert torch.isfinite(sin_cos.grad).all() and sin_cos.grad[:, 2:].abs().sum() > 0
    assert sin_cos.grad[:, :2].abs().max() == 0  # omega and phi place no heavy atom


def test_bad_inputs_raise_clear_errors():
    aatype = torch.zeros(5, dtype=torch.long)
    positions = torch.zeros(5, 37, 3)
    mask = torch.ones(5, 37)
    with pytest.raises(ValueError, match="aatype"):
        aa.atom37_to_torsion_angles(aatype.float(), positions, mask)
    with pytest.raises(ValueError, match="negative"):
        aa.make_atom14_masks(aatype - 1)
    with pytest.raises(ValueError, match="all_atom_positions"):
        aa.atom37_to_torsion_angles(aatype, positions[:, :14], mask)
    with pytest.raises(ValueError, match="all_atom_mask"):
        aa.atom37_to_frames(aatype, positions, mask[:4])
    with pytest.raises(ValueError, match="atom14_data"):
        aa.atom14_to_atom37(torch.zeros(5, 37, 3), aatype)
    with pytest.raises(ValueError, match="angles_sin_cos"):
        aa.torsion_angles_to_frames(aatype, Rigid.identity((5,)), torch.zeros(5, 8, 2))
    with pytest.raises(ValueError, match="backbone"):
        aa.torsion_angles_to_frames(aatype, Rigid.identity((4,)), torch.zeros(5, 7, 2))
    with pytest.raises(ValueError, match="frames"):
        aa.frames_to_atom14_positions(aatype, Rigid.identity((5, 7)))
    # Residue types above 20 (e.g. the HHblits gap 21) count as unknown, as in AF2.
    gap = aa.make_atom14_masks(torch.full((3,), 21))
    assert gap["atom37_atom_exists"].sum() == 0
