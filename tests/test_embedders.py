"""Embedders vs the AF2 reference: the geometry helpers against AF2's functions, and the
whole ``EmbeddingsAndEvoformer`` (input embedder with relative positions, recycling
embedder, templates with torsion-angle MSA rows, extra-MSA stack, Evoformer, single
projection) against AF2's haiku module on random parameters, fp32.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from alphafold.common import protein as af2_protein
from alphafold.model import modules as af2_modules
from reference_utils import reference_config, run_haiku
from shared import SHARED_DATA

from uni_fold.config import model_config
from uni_fold.model.embedders import (
    InputEmbedder,
    RecyclingEmbedder,
    create_extra_msa_feature,
    dgram_from_positions,
    pseudo_beta,
)
from uni_fold.model.embeddings_and_evoformer import (
    EmbeddingsAndEvoformer,
    embeddings_and_evoformer_rows,
)
from uni_fold.model.weights import load_af2_params

TOL = 1e-5


def rel_err(ours: torch.Tensor, ref: np.ndarray) -> float:
    ref = np.asarray(ref)
    return float(np.abs(ours.detach().numpy() - ref).max() / np.abs(ref).max())


def _protein(name: str, start: int, length: int) -> dict[str, np.ndarray]:
    prot = af2_protein.from_pdb_string((SHARED_DATA / "structures" / "pdb" / name).read_text())
    sl = slice(start, start + length)
    return {
        "aatype": prot.aatype[sl].astype(np.int32),
        "positions": prot.atom_positions[sl].astype(np.float32),
        "mask": prot.atom_mask[sl].astype(np.float32),
    }


@pytest.fixture(scope="module")
def villin() -> dict[str, np.ndarray]:
    """Villin headpiece (1VII, 36 residues, has glycines)."""
    return _protein("1vii.pdb", 0, 36)


def test_pseudo_beta_matches_reference(villin):
    mask = villin["mask"].copy()
    mask[3, 3] = 0.0  # a missing CB
    ref_pos, ref_mask = af2_modules.pseudo_beta_fn(villin["aatype"], villin["positions"], mask)
    pos, pb_mask = pseudo_beta(
        torch.from_numpy(villin["aatype"]), torch.from_numpy(villin["positions"]),
        torch.from_numpy(mask),
    )
    np.testing.assert_array_equal(pos.numpy(), np.asarray(ref_pos))
    np.testing.assert_array_equal(pb_mask.numpy(), np.asarray(ref_mask))
    assert (villin["aatype"] == 7).any() and pb_mask[3] == 0  # glycines present; CB missing


def test_dgram_matches_reference(villin):
    pos, _ = pseudo_beta(torch.from_numpy(villin["aatype"]), torch.from_numpy(villin["positions"]))
    for bins in ({"num_bins": 15, "min_bin": 3.25, "max_bin": 20.75},
                 {"num_bins": 39, "min_bin": 3.25, "max_bin": 50.75}):
        ref = np.asarray(af2_modules.dgram_from_positions(pos.numpy(), **bins))
        ours = dgram_from_positions(pos, **bins)
        np.testing.assert_array_equal(ours.numpy(), ref)
        # The diagonal (distance 0 < min_bin) is in no bin, every other pair in exactly one.
        assert torch.all(ours.sum(-1) == 1 - torch.eye(36))


def test_extra_msa_feature_matches_reference():
    rng = np.random.default_rng(0)
    batch = {
        "extra_msa": rng.integers(0, 23, (5, 9)).astype(np.int32),
        "extra_has_deletion": rng.integers(0, 2, (5, 9)).astype(np.float32),
        "extra_deletion_value": rng.random((5, 9)).astype(np.float32),
    }
    ref = np.asarray(af2_modules.create_extra_msa_feature(batch))
    ours = create_extra_msa_feature(*(torch.from_numpy(batch[k]) for k in batch))
    np.testing.assert_array_equal(ours.numpy(), ref)
    with pytest.raises(ValueError, match="extra_msa must hold integer"):
        create_extra_msa_feature(torch.rand(5, 9), torch.rand(5, 9), torch.rand(5, 9))


def test_relpos_clips_offsets():
    emb = InputEmbedder(c_m=4, c_z=3, max_relative_feature=2)
    with torch.no_grad():
        emb.pair_activiations.weight.copy_(torch.arange(15.0).reshape(3, 5))
        emb.pair_activiations.bias.zero_()
    z = emb.relpos(torch.tensor([0, 1, 10]))
    # offset i - j clipped to [-2, 2] selects bin offset + 2 (column of the weight).
    expected_bins = torch.tensor([[2, 1, 0], [3, 2, 0], [4, 4, 2]])
    torch.testing.assert_close(z[..., 0], expected_bins.float())


def test_recycling_embedder_switches():
    rec = RecyclingEmbedder(c_m=4, c_z=3, recycle_pos=False, recycle_features=True)
    assert rec.prev_pos_linear is None
    m, z = rec(torch.zeros(5, dtype=torch.long), torch.zeros(5, 37, 3), torch.randn(5, 4),
               torch.randn(5, 5, 3))
    assert m.shape == (5, 4) and z.shape == (5, 5, 3)
    rec = RecyclingEmbedder(c_m=4, c_z=3, recycle_pos=True, recycle_features=False)
    m, z = rec(torch.zeros(5, dtype=torch.long), torch.randn(5, 37, 3), torch.randn(5, 4),
               torch.randn(5, 5, 3))
    assert m is None and z.shape == (5, 5, 3)


# ----------------------------------------------------------------------------------------
# The whole embeddings + Evoformer module


N_RES, N_SEQ, N_EXTRA = 14, 5, 7


def _batch(villin: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One recycling slice of processed features: a real sequence and recycled structure
    (villin), two real templates (glucagon 1GCN, villin shifted), random MSA features."""
    rng = np.random.default_rng(3)
    aatype = villin["aatype"][:N_RES]
    seq_mask = np.ones(N_RES, np.float32)
    seq_mask[-1] = 0.0
    target_feat = np.zeros((N_RES, 22), np.float32)
    target_feat[np.arange(N_RES), aatype + 1] = 1.0  # AF2: bit 0 is "between segments"
    residue_index = np.arange(N_RES, dtype=np.int32)
    residue_index[8:] += 40  # a chain break beyond the relative-position clip
    templates = [_protein("1gcn.pdb", 2, N_RES), _protein("1vii.pdb", 5, N_RES)]
    templates[1]["mask"][6, 4:] = 0.0  # missing side chain
    t_aatype = np.stack([t["aatype"] for t in templates])
    t_pos = np.stack([t["positions"] for t in templates])
    t_mask = np.stack([t["mask"] for t in templates])
    pb, pb_mask = af2_modules.pseudo_beta_fn(t_aatype, t_pos, t_mask)
    msa_mask = (rng.random((N_SEQ, N_RES)) > 0.1).astype(np.float32)
    return {
        "aatype": aatype,
        "target_feat": target_feat,
        "msa_feat": rng.random((N_SEQ, N_RES, 49)).astype(np.float32),
        "msa_mask": msa_mask * seq_mask,
        "seq_mask": seq_mask,
        "residue_index": residue_index,
        "extra_msa": rng.integers(0, 23, (N_EXTRA, N_RES)).astype(np.int32),
        "extra_msa_mask": (rng.random((N_EXTRA, N_RES)) > 0.2).astype(np.float32) * seq_mask,
        "extra_has_deletion": rng.integers(0, 2, (N_EXTRA, N_RES)).astype(np.float32),
        "extra_deletion_value": rng.random((N_EXTRA, N_RES)).astype(np.float32),
        "template_aatype": t_aatype,
        "template_all_atom_positions": t_pos,
        "template_all_atom_masks": t_mask,
        "template_pseudo_beta": np.asarray(pb, np.float32),
        "template_pseudo_beta_mask": np.asarray(pb_mask, np.float32),
        "template_mask": np.ones(2, np.float32),
        "prev_pos": villin["positions"][10 : 10 + N_RES],
        "prev_msa_first_row": rng.standard_normal((N_RES, 256)).astype(np.float32),
        "prev_pair": rng.standard_normal((N_RES, N_RES, 128)).astype(np.float32),
    }


def test_embeddings_and_evoformer_match_reference(villin):
    cfg = reference_config("model_1_ptm")
    cfg.model.global_config.zero_init = True  # released AF2: undefined torsions kept raw
    e = cfg.model.embeddings_and_evoformer
    e.evoformer_num_block = 1
    e.extra_msa_stack_num_block = 1
    e.template.template_pair_stack.num_block = 1
    batch = _batch(villin)

    def build(batch):
        return af2_modules.EmbeddingsAndEvoformer(e, cfg.model.global_config)(batch, False)

    ref, params = run_haiku(build, batch)
    ours_cfg = model_config(
        "model_1_ptm", evoformer_num_block=1, extra_msa_stack_num_block=1,
        template_pair_stack_num_block=1,
    ).model.embeddings_and_evoformer
    ours = EmbeddingsAndEvoformer(ours_cfg).eval()
    load_af2_params(ours, params, embeddings_and_evoformer_rows("", ours_cfg, af2_path="evoformer"))
    t = {k: torch.tensor(v) for k, v in batch.items()}
    with torch.no_grad():
        out = ours(t, t)
    for key in ("single", "pair", "msa", "msa_first_row"):
        assert out[key].shape == ref[key].shape, key
        assert rel_err(out[key], ref[key]) < TOL, key
